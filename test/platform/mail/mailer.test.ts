/** The mailer against a real SMTP server in this process (the mail sink), and servers that fail. */
import assert from 'node:assert/strict'
import { once } from 'node:events'
import { createServer, type Socket } from 'node:net'
import { networkInterfaces } from 'node:os'
import type { AddressInfo } from 'node:net'
import { after, describe, it } from 'node:test'
import { createMailSink, type MailSink, type MailSinkOptions } from '../../../src/platform/mail/mail-sink.ts'
import { createMailer, MailError, type Mailer, type MailerOptions, type OutgoingMail, parseSmtpUrl } from '../../../src/platform/mail/mailer.ts'

const closers: Array<() => Promise<unknown>> = []
after(async () => {
  for (const close of closers.reverse()) await close()
})

const FROM = 'Bourse alerts <alerts@bourse.localhost>'
/** An unsubscribe token as long as a signed one. */
const TOKEN = 'v1.AbCdEfGhIjKlMnOpQrStUvWxYz0123456789_-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789_-AbCdEfGh'

async function startSink(options: MailSinkOptions = {}): Promise<MailSink & { smtpUrl: string }> {
  const sink = createMailSink({ smtpPort: 0, httpPort: null, ...options })
  closers.push(() => sink.close())
  await sink.listen()
  return sink as MailSink & { smtpUrl: string }
}

function mailer(url: string, options: Partial<MailerOptions> = {}): Mailer {
  const m = createMailer({ url, from: FROM, timeoutMs: 2000, ...options })
  closers.push(() => m.close())
  return m
}

let sequence = 0
function mail(overrides: Partial<OutgoingMail> = {}): OutgoingMail {
  sequence++
  return {
    to: 'someone@example.com',
    subject: `Message ${sequence}`,
    html: `<p>Hello <b>number ${sequence}</b></p>`,
    text: `Hello number ${sequence}`,
    messageId: `<mail-${sequence}.${Date.now()}@bourse.localhost>`,
    ...overrides,
  }
}

/** The MailError a promise rejects with; fails the test when it fulfils or rejects with something else. */
async function mailError(promise: Promise<unknown>): Promise<MailError> {
  try {
    await promise
  } catch (err) {
    assert.ok(err instanceof MailError, `expected a MailError, got ${String(err)}`)
    return err
  }
  assert.fail('expected the send to fail')
}

describe('sending', () => {
  it('delivers both parts, the caller\'s Message-ID, the sender, the date and the List-Unsubscribe headers', async () => {
    const sink = await startSink()
    const m = mailer(sink.smtpUrl)
    const date = new Date('2026-03-04T05:06:07Z')
    const sent = await m.send(
      mail({
        to: 'drone.fan@example.com',
        subject: 'Bourse alert "drone": 20 items from 12.50 USD',
        html: '<table><tr><td>Drone X — 12.50 USD</td></tr></table>',
        text: 'Drone X — 12.50 USD',
        messageId: '<alert-42.1767225600@bourse.localhost>',
        date,
        headers: {
          'List-Unsubscribe': `<http://127.0.0.1:8000/alerts/unsubscribe/${TOKEN}>`,
          'List-Unsubscribe-Post': 'List-Unsubscribe=One-Click',
        },
      }),
    )
    assert.deepEqual(sent.accepted, ['drone.fan@example.com'])
    assert.match(sent.response, /^250 /)
    const received = await sink.waitFor((r) => r.messageId === '<alert-42.1767225600@bourse.localhost>')
    assert.equal(received.subject, 'Bourse alert "drone": 20 items from 12.50 USD')
    assert.equal(received.html, '<table><tr><td>Drone X — 12.50 USD</td></tr></table>')
    assert.equal(received.text, 'Drone X — 12.50 USD')
    assert.equal(received.from, '"Bourse alerts" <alerts@bourse.localhost>')
    assert.equal(received.to, 'drone.fan@example.com')
    assert.deepEqual(received.envelope, { from: 'alerts@bourse.localhost', to: ['drone.fan@example.com'] })
    assert.equal(received.date, date.toISOString())
    // A long URL arrives whole, not folded into pieces or encoded.
    assert.equal(received.headers['list-unsubscribe'], `<http://127.0.0.1:8000/alerts/unsubscribe/${TOKEN}>`)
    assert.equal(received.headers['list-unsubscribe-post'], 'List-Unsubscribe=One-Click')
    assert.equal(received.headers['message-id'], '<alert-42.1767225600@bourse.localhost>')
    assert.match(received.headers['content-type'] ?? '', /^multipart\/alternative/)
  })

  it('sends a resend with the same Message-ID, so the receiver can tell it is a repeat', async () => {
    const sink = await startSink()
    const m = mailer(sink.smtpUrl)
    const once = mail({ messageId: '<outbox-7@bourse.localhost>' })
    await m.send(once)
    await m.send(once)
    const copies = sink.messages().filter((r) => r.messageId === '<outbox-7@bourse.localhost>')
    assert.equal(copies.length, 2)
  })

  it('sends many messages at once over a few pooled connections', async () => {
    const sink = await startSink()
    const m = mailer(sink.smtpUrl, { maxConnections: 3 })
    const mails = Array.from({ length: 30 }, () => mail())
    await Promise.all(mails.map((x) => m.send(x)))
    const ids = new Set(sink.messages().map((r) => r.messageId))
    for (const x of mails) assert.ok(ids.has(x.messageId), `${x.messageId} arrived`)
  })

  it('logs in when the URL carries a login, without STARTTLS on loopback', async () => {
    const sink = await startSink()
    const url = sink.smtpUrl.replace('smtp://', 'smtp://bourse:p%40ss%20word@')
    const m = mailer(url, { pool: false })
    await m.verify()
    const sent = mail()
    await m.send(sent)
    await sink.waitFor((r) => r.messageId === sent.messageId)
  })
})

describe('failures: transient or permanent', () => {
  it('451 after DATA is transient, 550 after DATA is permanent, both with the reply code', async () => {
    const sink = await startSink()
    const m = mailer(sink.smtpUrl)
    sink.refuseNext(1, 451)
    const later = await mailError(m.send(mail()))
    assert.equal(later.transient, true)
    assert.equal(later.responseCode, 451)
    sink.refuseNext(1, 550)
    const never = await mailError(m.send(mail()))
    assert.equal(never.transient, false)
    assert.equal(never.responseCode, 550)
    assert.match(never.message, /550/)
    // The refusals are used up: the next message goes through.
    await m.send(mail())
    assert.equal(sink.stats.refused, 2)
    assert.equal(sink.stats.received, 1)
  })

  it('a recipient refused with 550 is a permanent error naming it; with 451 it is transient', async () => {
    const sink = await startSink()
    const m = mailer(sink.smtpUrl)
    sink.refuseNext(1, 550, { stage: 'rcpt', message: 'no such mailbox' })
    const gone = await mailError(m.send(mail({ to: 'gone@example.com' })))
    assert.equal(gone.transient, false)
    assert.equal(gone.responseCode, 550)
    assert.deepEqual(gone.rejected, ['gone@example.com'])
    assert.match(gone.message, /gone@example\.com/)
    assert.match(gone.message, /no such mailbox/)
    sink.refuseNext(1, 451, { stage: 'rcpt', message: 'greylisted' })
    const greylisted = await mailError(m.send(mail({ to: 'new@example.com' })))
    assert.equal(greylisted.transient, true)
    assert.equal(greylisted.responseCode, 451)
    assert.deepEqual(greylisted.rejected, ['new@example.com'])
    assert.equal(sink.stats.received, 0)
  })

  it('a sender refused at MAIL FROM with 5xx is permanent, but 503 (a session in the wrong state) is transient', async () => {
    const sink = await startSink()
    const m = mailer(sink.smtpUrl)
    sink.refuseNext(1, 553, { stage: 'mail' })
    assert.equal((await mailError(m.send(mail()))).transient, false)
    sink.refuseNext(1, 503, { stage: 'mail' })
    const wrongState = await mailError(m.send(mail()))
    assert.equal(wrongState.transient, true)
    assert.equal(wrongState.responseCode, 503)
  })

  it('a server that is down is transient, without a reply code', async () => {
    const sink = await startSink()
    const url = sink.smtpUrl
    await sink.close()
    const m = mailer(url)
    const down = await mailError(m.send(mail()))
    assert.equal(down.transient, true)
    assert.equal(down.responseCode, null)
    assert.match(down.message, /ECONNREFUSED/)
    const verify = await mailError(m.verify())
    assert.equal(verify.transient, true)
  })

  it('a connection cut without a reply is transient', async () => {
    const sink = await startSink()
    const m = mailer(sink.smtpUrl, { pool: false })
    sink.dropNext(1)
    const cut = await mailError(m.send(mail()))
    assert.equal(cut.transient, true)
    assert.equal(cut.responseCode, null)
    assert.equal(sink.stats.dropped, 1)
    await m.send(mail())
    assert.equal(sink.stats.received, 1)
  })

  it('a server that never greets is a transient timeout after SMTP_TIMEOUT_MS', async () => {
    const sockets = new Set<Socket>()
    const silent = createServer((socket) => {
      sockets.add(socket)
      socket.on('error', () => {})
    })
    silent.listen(0, '127.0.0.1')
    await once(silent, 'listening')
    closers.push(async () => {
      for (const socket of sockets) socket.destroy()
      await new Promise((resolve) => silent.close(resolve))
    })
    const m = mailer(`smtp://127.0.0.1:${(silent.address() as AddressInfo).port}`, { timeoutMs: 300, pool: false })
    const started = performance.now()
    const hung = await mailError(m.send(mail()))
    const waited = performance.now() - started
    assert.equal(hung.transient, true)
    assert.equal(hung.code, 'ETIMEDOUT')
    assert.equal(hung.responseCode, null)
    assert.ok(waited >= 290 && waited < 5000, `gave up after ${waited} ms`)
  })

  it('refuses a message it cannot send as given, permanently, before connecting', async () => {
    const sink = await startSink()
    const m = mailer(sink.smtpUrl)
    const invalid: Array<[string, Partial<OutgoingMail>, RegExp]> = [
      ['two recipients', { to: 'a@example.com, b@example.com' }, /recipient/],
      ['a name as recipient', { to: 'A <a@example.com>' }, /recipient/],
      ['a recipient with a line break', { to: 'a@example.com\r\nBcc: b@example.com' }, /recipient/],
      ['a subject of two lines', { subject: 'one\r\nBcc: b@example.com' }, /subject/],
      ['a Message-ID without brackets', { messageId: 'abc@bourse.localhost' }, /Message-ID/],
      ['a header value with a line break', { headers: { 'List-Unsubscribe': '<http://x>\r\nBcc: b@example.com' } }, /List-Unsubscribe/],
      ['a header name with a colon', { headers: { 'X-A:B': 'c' } }, /header name/],
      ['a header the mailer sets', { headers: { Bcc: 'b@example.com' } }, /set by the mailer/],
      ['an invalid date', { date: new Date(Number.NaN) }, /date/],
    ]
    for (const [what, overrides, reason] of invalid) {
      const err = await mailError(m.send(mail(overrides)))
      assert.equal(err.transient, false, what)
      assert.equal(err.code, 'EINVALID', what)
      assert.match(err.message, reason, what)
    }
    assert.equal(sink.stats.received, 0)
  })
})

describe('setup and close', () => {
  it('refuses a bad URL or sender when created, naming the problem and never the password', () => {
    const cases: Array<[Partial<MailerOptions>, RegExp]> = [
      [{ url: 'http://mail.example' }, /smtp:\/\/ or smtps:\/\//],
      [{ url: 'smtp://mail.example:25/path' }, /no path, query or fragment/],
      [{ url: 'smtp://mail.example?tls=false' }, /no path, query or fragment/],
      [{ url: 'not a url' }, /not a URL/],
      [{ url: 'smtp://user:s3cret%zz@mail.example' }, /password is not valid percent-encoding/],
      [{ from: 'Smith, Jo <jo@example.com>' }, /sender/],
    ]
    for (const [options, message] of cases) {
      assert.throws(
        () => createMailer({ url: 'smtp://127.0.0.1:1025', from: FROM, timeoutMs: 1000, ...options }),
        (err: Error) => message.test(err.message) && !err.message.includes('s3cret'),
      )
    }
  })

  it('reads the server from the URL: TLS from the start, a decoded login, and when STARTTLS is used', () => {
    assert.deepEqual(parseSmtpUrl('smtps://us%40er:p%3Ass@smtp.example:465'), {
      host: 'smtp.example',
      port: 465,
      secure: true,
      auth: { user: 'us@er', pass: 'p:ss' },
      loopback: false,
      starttls: 'offered',
    })
    assert.deepEqual(parseSmtpUrl('smtp://127.0.0.1:1025'), {
      host: '127.0.0.1',
      port: 1025,
      secure: false,
      auth: undefined,
      loopback: true,
      starttls: 'ignore',
    })
    assert.equal(parseSmtpUrl('smtp://user:pass@localhost:1025').starttls, 'ignore')
    assert.equal(parseSmtpUrl('smtp://[::1]:1025').starttls, 'ignore')
    assert.equal(parseSmtpUrl('smtp://mail-sink.localhost').starttls, 'ignore')
    // A password never crosses a network in the clear; without one, TLS when offered.
    assert.equal(parseSmtpUrl('smtp://user:pass@smtp.example:587').starttls, 'require')
    assert.equal(parseSmtpUrl('smtp://mail-sink:1025').starttls, 'offered')
    assert.equal(parseSmtpUrl('smtp://mail.example').port, undefined)
  })

  it('will not send a password in the clear to a server across a network', async (t) => {
    const external = Object.values(networkInterfaces())
      .flat()
      .find((i) => i !== undefined && i.family === 'IPv4' && !i.internal)
    if (!external) return t.skip('this machine has no network interface besides loopback')
    const sink = await startSink({ host: external.address })
    const m = mailer(sink.smtpUrl.replace('smtp://', 'smtp://bourse:secret@'), { pool: false })
    const refused = await mailError(m.send(mail()))
    // Our own setup, not the message: transient, so the message waits for a fixed setting.
    assert.equal(refused.transient, true)
    assert.match(refused.code ?? '', /^E(TLS|REQUIRETLS)$/)
    assert.equal(sink.stats.received, 0)
  })

  it('close waits for the messages being sent, then refuses new ones as transient; a second close is the same', async () => {
    const sink = await startSink()
    const m = mailer(sink.smtpUrl)
    const sending = [m.send(mail()), m.send(mail()), m.send(mail())]
    const closed = m.close()
    assert.equal(m.close(), closed)
    await closed
    const results = await Promise.allSettled(sending)
    assert.deepEqual(results.map((r) => r.status), ['fulfilled', 'fulfilled', 'fulfilled'])
    assert.equal(sink.stats.received, 3)
    const late = await mailError(m.send(mail()))
    assert.equal(late.transient, true)
    assert.equal(late.code, 'ECLOSED')
  })
})
