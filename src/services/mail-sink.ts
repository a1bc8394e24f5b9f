/** `bourse mail-sink`: a local SMTP server keeping the mail it receives, with a page to read it. */
import { intOption } from '../platform/command.ts'
import { createMailSink } from '../platform/mail/mail-sink.ts'
import { defineService } from './shape.ts'

const spec = {
  name: 'mail-sink',
  usage: '[--port 1025] [--http 8025] [--host 127.0.0.1] [--max 1000] [--max-bytes 1048576]',
  description:
    'Receives mail over SMTP, as a mail provider would, and keeps the last --max messages in memory:\n' +
    'read them at the printed HTTP address (newest first, each with its HTML part sandboxed, its text part\n' +
    'and its headers), as JSON at GET /messages, and clear them with DELETE /messages. Point SMTP_URL at the\n' +
    'printed SMTP address (the default SMTP_URL is this default port). No login needed, no TLS: keep it on\n' +
    'a private interface.',
  options: {
    port: { type: 'string', default: '1025' },
    http: { type: 'string', default: '8025' },
    host: { type: 'string', default: '127.0.0.1' },
    max: { type: 'string', default: '1000' },
    'max-bytes': { type: 'string', default: '1048576' },
  },
  help: {
    port: 'SMTP port; 0 picks a free one',
    http: 'Port of the page and the JSON; 0 picks a free one',
    host: 'Interface both listen on',
    max: 'Messages kept; the oldest goes when one more arrives',
    'max-bytes': 'Largest message accepted, in bytes (larger ones are refused with 552)',
  },
} as const

export const { run } = defineService({
  spec,
  daemon: true,
  parse: ({ values }) => ({
    host: values.host,
    smtpPort: intOption('port', values.port, 0, 65535)!,
    httpPort: intOption('http', values.http, 0, 65535)!,
    maxMessages: intOption('max', values.max, 1, 1_000_000)!,
    maxMessageBytes: intOption('max-bytes', values['max-bytes'], 1024, 1024 * 1024 * 1024)!,
  }),
  async start({ log, lifecycle }, options) {
    const sink = createMailSink({ ...options, log })
    lifecycle.onClose('mail-sink', async () => {
      await sink.close()
      log.info({ ...sink.stats }, 'stopped')
    })
    const { smtpUrl, httpUrl } = await sink.listen()
    log.debug({ smtpUrl, httpUrl, ...options }, 'listening')
    process.stdout.write(`mail-sink SMTP on ${smtpUrl}, messages at ${httpUrl}/\n`)
    return { stats: sink.stats, gauges: ['stored'] }
  },
})
