/**
 * A local mail sink: a real SMTP server (smtp-server) that keeps every message it
 * receives in memory, parsed (mailparser), and shows them on a small web page and as
 * JSON. It stands in for a mail provider in tests and the demo, since no public SMTP test
 * service is reachable from here; it knows no domain.
 *
 * - SMTP: no login required (any login is accepted, so a URL with credentials works
 *   too), no STARTTLS (it would only offer smtp-server's built-in certificate, whose
 *   private key is public), a size limit (552 above it), the last `maxMessages` kept.
 * - HTTP: `/` lists the messages, newest first; `/messages/:id` shows one (headers, text
 *   part, the HTML part in a sandboxed frame); `/messages/:id/html` serves the HTML part
 *   under a Content-Security-Policy that forbids scripts, forms and plugins;
 *   `/messages/:id/raw` the message as received; `GET /messages` is the JSON list, and
 *   `DELETE /messages` clears it. Every value shown on a page is escaped: a message is
 *   outside input, and its HTML part is only ever rendered inside the sandbox.
 * - Faults, for tests: {@link MailSink.refuseNext} answers the next messages with a
 *   reply code of choice (451 transient, 550 permanent) at MAIL FROM, RCPT TO or after
 *   DATA; {@link MailSink.dropNext} cuts the connection of the next messages without a
 *   reply; {@link MailSink.close} takes the whole server down.
 */
import { createHash } from 'node:crypto'
import { EventEmitter } from 'node:events'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { type ParsedMail, simpleParser } from 'mailparser'
import { SMTPServer, type SMTPServerDataStream, type SMTPServerSession } from 'smtp-server'
import type { Logger } from '../logger.ts'

/** Options of {@link createMailSink}. */
export interface MailSinkOptions {
  /** Interface both servers listen on. @defaultValue 127.0.0.1 */
  host?: string
  /** SMTP port; 0 picks a free one. @defaultValue 1025 */
  smtpPort?: number
  /** HTTP port of the page and the JSON; 0 picks a free one, null serves none. @defaultValue 8025 */
  httpPort?: number | null
  /** Messages kept; the oldest goes when one more arrives. @defaultValue 1000 */
  maxMessages?: number
  /** Largest message accepted, in bytes; a larger one is refused with 552. @defaultValue 1048576 */
  maxMessageBytes?: number
  /** Logs each message received, at debug, and failures. @defaultValue no logging */
  log?: Logger
}

/** A message as the sink received it. */
export interface ReceivedMail {
  /** The sink's own id of the message (a number, as text), for `/messages/:id`. */
  id: string
  /** The Message-ID header, with its angle brackets, or null without one. */
  messageId: string | null
  /** The From header, decoded. */
  from: string
  /** The To header, decoded. */
  to: string
  /** The SMTP envelope: the MAIL FROM address and the RCPT TO addresses. */
  envelope: { from: string | null; to: string[] }
  /** The Subject header, decoded. */
  subject: string
  /** The Date header (ISO 8601), or null without a valid one. */
  date: string | null
  /** When the sink received the message (ISO 8601). */
  receivedAt: string
  /** The text part, or null without one. */
  text: string | null
  /** The HTML part, or null without one. */
  html: string | null
  /**
   * Every header by its lower-case name, as sent but unfolded (`list-unsubscribe`:
   * `<https://...>`); a header sent several times has its values joined by a newline.
   */
  headers: Record<string, string>
  /** Size of the message as received, in bytes. */
  size: number
}

/** What the sink has done so far. */
export interface MailSinkStats {
  /** Messages received and kept. */
  received: number
  /** Messages refused on purpose ({@link MailSink.refuseNext}) or for their size. */
  refused: number
  /** Messages whose connection was cut on purpose ({@link MailSink.dropNext}). */
  dropped: number
  /** Messages that could not be parsed (answered 451). */
  unparsed: number
  /** Messages held now. */
  stored: number
}

/** Where the SMTP server refuses a message. */
export type RefusalStage = 'mail' | 'rcpt' | 'data'

/** A running (or not yet started) mail sink. */
export interface MailSink {
  /** Starts both servers; resolves to their URLs (`smtp://host:port`, `http://host:port`). */
  listen(): Promise<{ smtpUrl: string; httpUrl: string | undefined }>
  /** The SMTP server's URL once listening, for `SMTP_URL`. */
  readonly smtpUrl: string | undefined
  /** The web page's URL once listening (undefined without one). */
  readonly httpUrl: string | undefined
  readonly stats: Readonly<MailSinkStats>
  /** The messages held, newest first. */
  messages(): ReceivedMail[]
  /** One message by its sink id. */
  message(id: string): ReceivedMail | undefined
  /**
   * Resolves with the newest message held that matches, or the first to arrive that does;
   * rejects after `timeoutMs` (naming the subjects received meanwhile).
   */
  waitFor(predicate: (mail: ReceivedMail) => boolean, timeoutMs?: number): Promise<ReceivedMail>
  /** Forgets every message held. */
  clear(): void
  /**
   * Refuses the next `count` messages with `code` (4xx: transient, 5xx: permanent) at
   * `stage`: MAIL FROM, RCPT TO (the recipients refused), or after DATA (the default).
   */
  refuseNext(count: number, code: number, options?: { stage?: RefusalStage; message?: string }): void
  /** Cuts the connection of the next `count` messages as they start (at MAIL FROM), without a reply. */
  dropNext(count: number): void
  /** Stops both servers, cutting open connections after a moment. Later calls return the same promise. */
  close(): Promise<void>
}

/** How long open SMTP connections may finish after close() before they are cut (ms). */
const CLOSE_GRACE_MS = 500

/** An SMTP reply the sink answers with. */
function smtpError(code: number, message: string): Error & { responseCode: number } {
  return Object.assign(new Error(message), { responseCode: code })
}

/** Text made safe to place in HTML, in element content or a quoted attribute. */
export function escapeHtml(text: string): string {
  return text
    .replaceAll('&', '&amp;')
    .replaceAll('<', '&lt;')
    .replaceAll('>', '&gt;')
    .replaceAll('"', '&quot;')
    .replaceAll("'", '&#39;')
}

/** A header line's value: after the colon, unfolded (RFC 5322 2.2.3), trimmed. */
function headerValue(line: string): string {
  const colon = line.indexOf(':')
  return line.slice(colon + 1).replace(/\r?\n(?=[ \t])/g, '').trim()
}

/** An address header as text (mailparser gives one object or a list). */
function addressText(value: ParsedMail['to']): string {
  if (value === undefined) return ''
  return (Array.isArray(value) ? value : [value]).map((a) => a.text).join(', ')
}

/** Turns a parsed message into what the sink keeps. */
function toReceived(id: number, parsed: ParsedMail, session: SMTPServerSession, size: number): ReceivedMail {
  const headers: Record<string, string> = {}
  for (const { key, line } of parsed.headerLines) {
    const value = headerValue(line)
    headers[key] = key in headers ? `${headers[key]}\n${value}` : value
  }
  const mailFrom = session.envelope.mailFrom
  return {
    id: String(id),
    messageId: parsed.messageId ?? null,
    from: addressText(parsed.from),
    to: addressText(parsed.to),
    envelope: { from: mailFrom ? mailFrom.address : null, to: session.envelope.rcptTo.map((r) => r.address) },
    subject: parsed.subject ?? '',
    date: parsed.date && Number.isFinite(parsed.date.getTime()) ? parsed.date.toISOString() : null,
    receivedAt: new Date().toISOString(),
    text: parsed.text ?? null,
    html: typeof parsed.html === 'string' ? parsed.html : null,
    headers,
    size,
  }
}

/** The one style sheet of the pages, allowed by its hash so the pages' policy stays without 'unsafe-inline'. */
const PAGE_STYLE = [
  'body{font:14px/1.4 system-ui,sans-serif;margin:1.5rem;color:#1f2328}',
  'table{border-collapse:collapse;width:100%}',
  'th,td{border-bottom:1px solid #d0d7de;padding:.35rem .5rem;text-align:left;vertical-align:top}',
  'th{background:#f6f8fa}',
  'pre{white-space:pre-wrap;word-break:break-word;background:#f6f8fa;padding:.75rem}',
  'iframe{width:100%;height:70vh;border:1px solid #d0d7de}',
  '.muted{color:#656d76}',
].join('\n')
const PAGE_STYLE_HASH = createHash('sha256').update(PAGE_STYLE).digest('base64')
/** The pages' policy: no script at all, only the style sheet above, frames only from the sink. */
const PAGE_CSP = [
  "default-src 'none'",
  `style-src 'sha256-${PAGE_STYLE_HASH}'`,
  "frame-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ')
/**
 * The HTML part's policy: a sandbox (no scripts, forms, plugins or same-origin access,
 * links may open a new tab), inline styles and remote images as a mail reader shows them,
 * nothing else; only the sink's own page may frame it.
 */
const HTML_PART_CSP = [
  'sandbox allow-popups allow-popups-to-escape-sandbox',
  "default-src 'none'",
  "style-src 'unsafe-inline'",
  'img-src http: https: data:',
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'self'",
].join('; ')
const COMMON_HEADERS = { 'x-content-type-options': 'nosniff', 'referrer-policy': 'no-referrer', 'cache-control': 'no-store' }

function send(res: ServerResponse, status: number, type: string, body: string | Buffer, headers: Record<string, string> = {}): void {
  res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(body), ...COMMON_HEADERS, ...headers })
  res.end(body)
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  send(res, status, 'application/json', JSON.stringify(body))
}

function sendPage(res: ServerResponse, status: number, title: string, body: string): void {
  const html = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${escapeHtml(title)}</title><style>${PAGE_STYLE}</style></head>
<body>${body}</body></html>
`
  send(res, status, 'text/html; charset=utf-8', html, { 'content-security-policy': PAGE_CSP, 'x-frame-options': 'DENY' })
}

function listPage(mails: readonly ReceivedMail[]): string {
  const rows = mails.map(
    (m) =>
      `<tr><td>${escapeHtml(m.date ?? m.receivedAt)}</td><td>${escapeHtml(m.from)}</td><td>${escapeHtml(m.to)}</td>` +
      `<td><a href="/messages/${m.id}">${escapeHtml(m.subject || '(no subject)')}</a></td></tr>`,
  )
  return `<h1>Mail sink</h1>
<p class="muted">${mails.length} message${mails.length === 1 ? '' : 's'}, newest first. JSON at <a href="/messages">/messages</a>; clear with <code>curl -X DELETE …/messages</code>.</p>
<table><thead><tr><th>Date</th><th>From</th><th>To</th><th>Subject</th></tr></thead>
<tbody>${rows.join('\n') || '<tr><td colspan="4">No messages yet.</td></tr>'}</tbody></table>`
}

function messagePage(m: ReceivedMail): string {
  const headers = Object.entries(m.headers)
    .map(([name, value]) => `<tr><th>${escapeHtml(name)}</th><td>${escapeHtml(value)}</td></tr>`)
    .join('\n')
  const html =
    m.html === null
      ? '<p class="muted">No HTML part.</p>'
      : `<iframe sandbox="allow-popups allow-popups-to-escape-sandbox" referrerpolicy="no-referrer" title="HTML part" src="/messages/${m.id}/html"></iframe>`
  const text = m.text === null ? '<p class="muted">No text part.</p>' : `<pre>${escapeHtml(m.text)}</pre>`
  return `<p><a href="/">All messages</a> · <a href="/messages/${m.id}/raw">Source</a></p>
<h1>${escapeHtml(m.subject || '(no subject)')}</h1>
<table><tbody>
<tr><th>From</th><td>${escapeHtml(m.from)}</td></tr>
<tr><th>To</th><td>${escapeHtml(m.to)}</td></tr>
<tr><th>Date</th><td>${escapeHtml(m.date ?? '')}</td></tr>
<tr><th>Envelope</th><td>${escapeHtml(`${m.envelope.from ?? '<>'} → ${m.envelope.to.join(', ')}`)}</td></tr>
</tbody></table>
<h2>HTML part</h2>
${html}
<h2>Text part</h2>
${text}
<h2>Headers</h2>
<table><tbody>${headers}</tbody></table>`
}

/** Opens links of the HTML part in a new tab: a mail's links lead to sites that refuse to be framed. */
function withNewTabLinks(html: string): string {
  const head = /<head(\s[^>]*)?>/i.exec(html)
  if (!head) return `<base target="_blank">${html}`
  const at = head.index + head[0].length
  return `${html.slice(0, at)}<base target="_blank">${html.slice(at)}`
}

/** Creates the sink; call {@link MailSink.listen} to start it. */
export function createMailSink(options: MailSinkOptions = {}): MailSink {
  const host = options.host ?? '127.0.0.1'
  const smtpPort = options.smtpPort ?? 1025
  const httpPort = options.httpPort === undefined ? 8025 : options.httpPort
  const maxMessages = options.maxMessages ?? 1000
  const maxMessageBytes = options.maxMessageBytes ?? 1024 * 1024
  const log = options.log
  if (!Number.isInteger(maxMessages) || maxMessages < 1) throw new RangeError('maxMessages must be a positive whole number')
  if (!Number.isInteger(maxMessageBytes) || maxMessageBytes < 1024) throw new RangeError('maxMessageBytes must be a whole number of at least 1024')

  const stats: MailSinkStats = { received: 0, refused: 0, dropped: 0, unparsed: 0, stored: 0 }
  /** Newest last (cheap to append; the views reverse it), each with its source as received. */
  let held: Array<{ mail: ReceivedMail; raw: Buffer }> = []
  const arrivals = new EventEmitter()
  arrivals.setMaxListeners(0)
  let nextId = 1
  let refusals: { remaining: number; code: number; stage: RefusalStage; message: string } | undefined
  let drops = 0
  /** The refusal a transaction took at MAIL FROM, applied at its stage: by session id and transaction number. */
  const refusing = new Map<string, { code: number; stage: RefusalStage; message: string }>()
  const transactionKey = (session: SMTPServerSession) => `${session.id}:${session.transaction}`
  let smtpUrl: string | undefined
  let httpUrl: string | undefined
  let closing: Promise<void> | undefined

  const store = (mail: ReceivedMail, raw: Buffer) => {
    held.push({ mail, raw })
    if (held.length > maxMessages) held = held.slice(held.length - maxMessages)
    stats.received++
    stats.stored = held.length
    log?.debug({ id: mail.id, messageId: mail.messageId, size: mail.size }, 'mail received')
    arrivals.emit('mail', mail)
  }

  const smtp = new SMTPServer({
    name: 'bourse-mail-sink',
    banner: 'Bourse mail sink',
    authOptional: true,
    allowInsecureAuth: true,
    disabledCommands: ['STARTTLS'],
    hideSTARTTLS: true,
    size: maxMessageBytes,
    rejectOversized: true,
    disableReverseLookup: true,
    closeTimeout: CLOSE_GRACE_MS,
    logger: false,
    onAuth(auth, _session, callback) {
      callback(null, { user: auth.username ?? 'anonymous' })
    },
    onMailFrom(_address, session, callback) {
      refusing.delete(transactionKey(session))
      if (drops > 0) {
        drops--
        stats.dropped++
        // No callback: the connection ends without a reply, as a crashed server's would.
        for (const connection of smtp.connections) if (connection.id === session.id) connection.close()
        return
      }
      if (refusals && refusals.remaining > 0) {
        refusals.remaining--
        stats.refused++
        const refusal = { code: refusals.code, stage: refusals.stage, message: refusals.message }
        if (refusal.stage === 'mail') return callback(smtpError(refusal.code, refusal.message))
        refusing.set(transactionKey(session), refusal)
      }
      callback()
    },
    onRcptTo(_address, session, callback) {
      const refusal = refusing.get(transactionKey(session))
      if (refusal?.stage === 'rcpt') return callback(smtpError(refusal.code, refusal.message))
      callback()
    },
    onClose(session) {
      // A client gone before its DATA leaves the refusal it took behind.
      for (const key of refusing.keys()) if (key.startsWith(`${session.id}:`)) refusing.delete(key)
    },
    onData(stream: SMTPServerDataStream, session, callback) {
      const chunks: Buffer[] = []
      stream.on('data', (chunk: Buffer) => {
        // Past the limit the server answers 552 itself; keep nothing more of it.
        if (!stream.sizeExceeded) chunks.push(chunk)
      })
      stream.once('error', (err: Error) => callback(err))
      stream.once('end', () => {
        const key = transactionKey(session)
        const refusal = refusing.get(key)
        refusing.delete(key)
        if (stream.sizeExceeded) {
          stats.refused++
          return callback(smtpError(552, `message exceeds ${maxMessageBytes} bytes`))
        }
        if (refusal?.stage === 'data') return callback(smtpError(refusal.code, refusal.message))
        const raw = Buffer.concat(chunks)
        const id = nextId++
        simpleParser(raw, { skipImageLinks: true, skipTextToHtml: true, skipTextLinks: true }).then(
          (parsed) => {
            store(toReceived(id, parsed, session, raw.length), raw)
            callback(null, `queued as ${id}`)
          },
          (err: unknown) => {
            stats.unparsed++
            log?.warn({ err }, 'a received message could not be parsed')
            callback(smtpError(451, 'message could not be parsed'))
          },
        )
      })
    },
  })
  smtp.on('error', (err: Error) => log?.warn({ err }, 'mail sink SMTP error'))

  const messages = () => held.map((h) => h.mail).reverse()
  const find = (id: string) => held.find((h) => h.mail.id === id)
  const message = (id: string) => find(id)?.mail

  const route = (req: IncomingMessage, res: ServerResponse) => {
    const path = (req.url ?? '/').split('?')[0] ?? '/'
    const method = req.method ?? 'GET'
    const read = method === 'GET' || method === 'HEAD'
    if (path === '/' && read) return sendPage(res, 200, 'Mail sink', listPage(messages()))
    if (path === '/health' && read) return sendJson(res, 200, { status: 'ok', messages: held.length })
    if (path === '/messages') {
      if (read) return sendJson(res, 200, messages())
      if (method === 'DELETE') {
        clear()
        res.writeHead(204, COMMON_HEADERS).end()
        return
      }
      return sendJson(res, 405, { error: { code: 'method_not_allowed', message: 'use GET or DELETE' } })
    }
    const match = /^\/messages\/(\d{1,15})(\/html|\/raw)?$/.exec(path)
    if (match && read) {
      const found = find(match[1]!)
      if (!found) return sendPage(res, 404, 'Not found', '<p>No such message (it may have been cleared). <a href="/">All messages</a></p>')
      const mail = found.mail
      if (match[2] === '/raw') return send(res, 200, 'text/plain; charset=utf-8', found.raw)
      if (match[2] === '/html') {
        return send(res, 200, 'text/html; charset=utf-8', withNewTabLinks(mail.html ?? ''), {
          'content-security-policy': HTML_PART_CSP,
          'cross-origin-resource-policy': 'same-origin',
        })
      }
      return sendPage(res, 200, mail.subject || '(no subject)', messagePage(mail))
    }
    return sendPage(res, 404, 'Not found', '<p>Nothing here. <a href="/">All messages</a></p>')
  }
  const http: Server | undefined = httpPort === null ? undefined : createServer(route)

  const clear = () => {
    held = []
    stats.stored = 0
  }

  /** `host:port` a listening server is reachable at (an IPv6 address in brackets). */
  const where = (server: Server | SMTPServer['server']) => {
    const address = server.address() as AddressInfo
    return `${address.address.includes(':') ? `[${address.address}]` : address.address}:${address.port}`
  }

  return {
    stats,
    get smtpUrl() {
      return smtpUrl
    },
    get httpUrl() {
      return httpUrl
    },
    messages,
    message,
    clear,
    async listen() {
      await new Promise<void>((resolve, reject) => {
        smtp.server.once('error', reject)
        smtp.listen(smtpPort, host, () => {
          smtp.server.off('error', reject)
          resolve()
        })
      })
      smtpUrl = `smtp://${where(smtp.server)}`
      if (http) {
        await new Promise<void>((resolve, reject) => {
          http.once('error', reject)
          http.listen(httpPort ?? 0, host, () => {
            http.off('error', reject)
            resolve()
          })
        })
        httpUrl = `http://${where(http)}`
      }
      return { smtpUrl, httpUrl }
    },
    waitFor(predicate, timeoutMs = 10_000) {
      const found = held.findLast((h) => predicate(h.mail))
      if (found) return Promise.resolve(found.mail)
      return new Promise((resolve, reject) => {
        const seen: string[] = []
        const onMail = (mail: ReceivedMail) => {
          if (!predicate(mail)) {
            seen.push(mail.subject)
            return
          }
          clearTimeout(timer)
          arrivals.off('mail', onMail)
          resolve(mail)
        }
        const timer = setTimeout(() => {
          arrivals.off('mail', onMail)
          const received = seen.length === 0 ? 'none arrived' : `${seen.length} arrived: ${seen.map((s) => JSON.stringify(s)).join(', ')}`
          reject(new Error(`no matching message within ${timeoutMs} ms (${received})`))
        }, timeoutMs)
        arrivals.on('mail', onMail)
      })
    },
    refuseNext(count, code, refusalOptions = {}) {
      if (!Number.isInteger(count) || count < 0) throw new RangeError('count must be a whole number')
      if (!Number.isInteger(code) || code < 400 || code > 599) throw new RangeError('code must be an SMTP failure code, 400 to 599')
      refusals = {
        remaining: count,
        code,
        stage: refusalOptions.stage ?? 'data',
        message: refusalOptions.message ?? (code < 500 ? 'try again later (mail sink refusal)' : 'refused (mail sink refusal)'),
      }
    },
    dropNext(count) {
      if (!Number.isInteger(count) || count < 0) throw new RangeError('count must be a whole number')
      drops = count
    },
    close() {
      closing ??= (async () => {
        const steps: Array<Promise<void>> = []
        if (smtp.server.listening) steps.push(new Promise<void>((resolve) => smtp.close(() => resolve())))
        if (http?.listening) {
          steps.push(new Promise<void>((resolve) => http.close(() => resolve())))
          http.closeAllConnections()
        }
        await Promise.all(steps)
      })()
      return closing
    },
  }
}
