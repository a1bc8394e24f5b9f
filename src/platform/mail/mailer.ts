/**
 * Sending mail over SMTP, written once for every feature that sends any (nodemailer's
 * SMTP transport, pooled). The mailer knows no domain: it sends what it is given, from
 * the configured sender, and turns every failure into a {@link MailError} that says
 * whether sending the same message again can succeed.
 *
 * Transient or permanent, as an outbox needs it:
 * - a reply of the server decides by its class (RFC 5321): 4xx is transient, 5xx is
 *   permanent (a recipient refused with 550, a message refused after DATA), except 503
 *   ("bad sequence of commands"), which says the session was in the wrong state, not that
 *   the message is unwanted, so a new connection can succeed (nodemailer's rule too);
 * - no reply at all (connection refused or reset, a timeout, DNS) is transient;
 * - our own setup failing (the login refused, TLS that cannot be set up) is transient
 *   whatever the reply code: the message itself is fine, and marking every queued message
 *   failed because a password expired would lose them all, while retrying delivers them
 *   once an operator fixes the setting;
 * - a message the mailer cannot send as given (an invalid recipient, Message-ID or header)
 *   is permanent.
 *
 * The Message-ID is the caller's: a resend of the same outbox row carries the same
 * Message-ID, so a receiver can recognise the repeat.
 */
import { createTransport } from 'nodemailer'
import type { Logger } from '../logger.ts'
import { quote } from '../quote.ts'
import { isEmailAddress, isMailbox } from './address.ts'

/** One message to send. */
export interface OutgoingMail {
  /** The one recipient: a plain address (`someone@example.com`). */
  to: string
  /** The subject, one line. */
  subject: string
  /** The HTML part. */
  html: string
  /** The plain-text part, always sent beside the HTML part. */
  text: string
  /** The Message-ID header, `<id@host>`: the caller's, so a resend carries the same one. */
  messageId: string
  /** More headers (`List-Unsubscribe`, ...); the ones the mailer sets itself are refused. */
  headers?: Record<string, string>
  /** The Date header. @defaultValue now */
  date?: Date
}

/** What a send gives back. */
export interface SentMail {
  /** The server's final reply (`250 OK: queued as ...`). */
  response: string
  /** The recipients the server accepted. */
  accepted: string[]
}

/** What {@link MailError} is made of. */
export interface MailErrorDetails {
  /** Whether sending the same message again can succeed. */
  transient: boolean
  /** The SMTP reply code, when the server replied. @defaultValue null */
  responseCode?: number | null
  /** nodemailer's error code (`ECONNECTION`, `EENVELOPE`, ...) or the mailer's own (`EINVALID`, `ECLOSED`). @defaultValue null */
  code?: string | null
  /** Recipients the server refused. @defaultValue none */
  rejected?: readonly string[]
  /** The underlying error. */
  cause?: unknown
}

/** A message that could not be sent, and whether trying again can help. */
export class MailError extends Error {
  override name = 'MailError'
  /** True when the same message may be accepted later (4xx, no answer, our own setup); false when it never will (5xx, invalid). */
  readonly transient: boolean
  /** The SMTP reply code, or null when the server did not reply (connection failed, timeout). */
  readonly responseCode: number | null
  /** nodemailer's error code, or the mailer's own: `EINVALID` (a message that cannot be sent as given), `ECLOSED`. */
  readonly code: string | null
  /** Recipients the server refused. */
  readonly rejected: readonly string[]
  constructor(message: string, details: MailErrorDetails) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause })
    this.transient = details.transient
    this.responseCode = details.responseCode ?? null
    this.code = details.code ?? null
    this.rejected = details.rejected ?? []
  }
}

/** Options of {@link createMailer}. */
export interface MailerOptions {
  /** The SMTP server: `smtp://` or `smtps://`, with `user:password@` for a login (`SMTP_URL`). */
  url: string
  /** The sender of every message: an address or `Name <address>` (`MAIL_FROM`). */
  from: string
  /** Longest wait to connect, for the greeting, and for any answer on an open connection, in ms (`SMTP_TIMEOUT_MS`). */
  timeoutMs: number
  /** Logs each message sent, at debug. @defaultValue no logging */
  log?: Logger
  /** Keep connections open and send over them in turn. @defaultValue true */
  pool?: boolean
  /** Most connections open at once, when pooled. @defaultValue 5 */
  maxConnections?: number
}

/** Sends mail through one SMTP server. */
export interface Mailer {
  /** Sends one message; rejects with {@link MailError}. */
  send(mail: OutgoingMail): Promise<SentMail>
  /** Connects and logs in (when the URL has a login), then disconnects; rejects with {@link MailError}. */
  verify(): Promise<void>
  /**
   * Refuses new messages, waits for those being sent (at most `timeoutMs`, then cuts their
   * connections), and closes the connections. Later calls return the same promise.
   */
  close(): Promise<void>
}

/** The server's settings read from an SMTP URL, or an error naming what is wrong with it. */
export interface SmtpServer {
  host: string
  /** Undefined for nodemailer's default: 465 with TLS from the start, else 587. */
  port: number | undefined
  /** TLS from the start (`smtps://`). */
  secure: boolean
  auth: { user: string; pass: string } | undefined
  /** The host is this machine (localhost, 127.0.0.0/8, ::1). */
  loopback: boolean
  /**
   * STARTTLS on a plain (`smtp://`) connection: `ignore` on loopback, where nothing
   * crosses a network and a local test server (the mail sink) offers none, or one with a
   * certificate nobody can check; `require` when a password would otherwise cross the
   * network in the clear (a server that does not offer it, or an attacker stripping the
   * offer, then fails the send instead); else `offered`: used whenever the server offers
   * it. Not used with `smtps://`, which is TLS from the start.
   */
  starttls: 'ignore' | 'require' | 'offered'
}

/** Reads an SMTP URL; throws a TypeError naming the problem (never quoting the password). */
export function parseSmtpUrl(text: string): SmtpServer {
  let url: URL
  try {
    url = new URL(text)
  } catch {
    throw new TypeError('the SMTP URL is not a URL (expected smtp://host:port or smtps://user:password@host:port)')
  }
  if (url.protocol !== 'smtp:' && url.protocol !== 'smtps:') {
    throw new TypeError(`the SMTP URL must start with smtp:// or smtps:// (got ${quote(url.protocol)})`)
  }
  if (url.hostname === '') throw new TypeError('the SMTP URL has no host')
  if (url.search !== '' || url.hash !== '' || (url.pathname !== '' && url.pathname !== '/')) {
    throw new TypeError('the SMTP URL takes no path, query or fragment: scheme, login, host and port only')
  }
  const host = url.hostname.replace(/^\[(.*)\]$/, '$1')
  const decode = (part: string, what: string) => {
    try {
      return decodeURIComponent(part)
    } catch {
      throw new TypeError(`the SMTP URL's ${what} is not valid percent-encoding`)
    }
  }
  const auth =
    url.username !== '' || url.password !== ''
      ? { user: decode(url.username, 'user name'), pass: decode(url.password, 'password') }
      : undefined
  const secure = url.protocol === 'smtps:'
  const loopback = host === 'localhost' || host.endsWith('.localhost') || /^127\.\d+\.\d+\.\d+$/.test(host) || host === '::1'
  return {
    host,
    port: url.port === '' ? undefined : Number(url.port),
    secure,
    auth,
    loopback,
    starttls: secure ? 'offered' : loopback ? 'ignore' : auth ? 'require' : 'offered',
  }
}

/** A header name (RFC 5322: printable ASCII but the colon). */
const HEADER_NAME = /^[!-9;-~]+$/
/** Headers the mailer writes itself: a caller's copy would duplicate or contradict them. */
const OWN_HEADERS = new Set([
  'from', 'to', 'cc', 'bcc', 'subject', 'date', 'message-id', 'sender', 'mime-version',
  'content-type', 'content-transfer-encoding',
])
/** A Message-ID as RFC 5322 writes one: `<left@right>`. */
const MESSAGE_ID = /^<[^<>\s@]+@[^<>\s@]+>$/
/** Line breaks and NUL: in a header value they would start a header of their own. */
const LINE_BREAK = /[\r\n\0]/

/** Why `mail` cannot be sent as given, or undefined when it can. */
function invalidReason(mail: OutgoingMail): string | undefined {
  if (typeof mail.to !== 'string' || !isEmailAddress(mail.to)) return `the recipient ${quote(mail.to)} is not one email address`
  if (typeof mail.subject !== 'string' || LINE_BREAK.test(mail.subject)) return 'the subject must be one line of text'
  if (typeof mail.html !== 'string' || typeof mail.text !== 'string') return 'both an HTML and a text part are needed'
  if (typeof mail.messageId !== 'string' || mail.messageId.length > 250 || !MESSAGE_ID.test(mail.messageId)) {
    return `the Message-ID ${quote(mail.messageId)} must look like <id@host>`
  }
  if (mail.date !== undefined && !(mail.date instanceof Date && Number.isFinite(mail.date.getTime()))) return 'the date is not a valid Date'
  for (const [name, value] of Object.entries(mail.headers ?? {})) {
    if (!HEADER_NAME.test(name)) return `the header name ${quote(name)} is not a header name`
    if (OWN_HEADERS.has(name.toLowerCase())) return `the header ${name} is set by the mailer`
    if (typeof value !== 'string' || LINE_BREAK.test(value)) return `the header ${name} must be one line of text`
  }
  return undefined
}

/** nodemailer's error, as far as the mailer reads it. */
interface SmtpFailure {
  message?: unknown
  code?: unknown
  responseCode?: unknown
  rejected?: unknown
  rejectedErrors?: unknown
}

/** Error codes of our own setup (login, TLS, configuration): transient whatever the reply, see the module comment. */
const SETUP_CODES = new Set(['EAUTH', 'ENOAUTH', 'EOAUTH2', 'ETLS', 'EREQUIRETLS', 'ECONFIG', 'EPROXY'])
/** Error codes of a message that cannot be sent as it is, without a reply saying so. */
const MESSAGE_CODES = new Set(['EENVELOPE', 'EMESSAGE', 'EMAXRECIPIENTS', 'EFILEACCESS', 'EURLACCESS'])

/** True for a reply refusing for good: 5xx but 503 (a session in the wrong state, see the module comment). */
function isPermanentReply(responseCode: number): boolean {
  return responseCode >= 500 && responseCode < 600 && responseCode !== 503
}

/** Turns whatever nodemailer failed with into a {@link MailError}. */
function toMailError(err: unknown): MailError {
  if (err instanceof MailError) return err
  const failure = (typeof err === 'object' && err !== null ? err : {}) as SmtpFailure
  const code = typeof failure.code === 'string' ? failure.code : null
  const responseCode = typeof failure.responseCode === 'number' ? failure.responseCode : null
  const rejected = Array.isArray(failure.rejected) ? failure.rejected.map(String) : []
  const transient =
    code !== null && SETUP_CODES.has(code)
      ? true
      : responseCode !== null
        ? !isPermanentReply(responseCode)
        : !(code !== null && MESSAGE_CODES.has(code))
  const reason = typeof failure.message === 'string' ? failure.message : String(err)
  const message =
    rejected.length > 0
      ? `the SMTP server refused the recipient ${rejected.join(', ')}: ${reason}`
      : `sending mail failed: ${reason}`
  return new MailError(message, { transient, responseCode, code, rejected, cause: err })
}

/** Creates a mailer sending through the server of `options.url`. Throws a TypeError for a bad URL or sender. */
export function createMailer(options: MailerOptions): Mailer {
  const server = parseSmtpUrl(options.url)
  if (!isMailbox(options.from)) throw new TypeError(`the sender ${quote(options.from)} must be an email address, or Name <address>`)
  if (!Number.isInteger(options.timeoutMs) || options.timeoutMs < 1) throw new RangeError('timeoutMs must be a positive whole number')
  const maxConnections = options.maxConnections ?? 5
  if (!Number.isInteger(maxConnections) || maxConnections < 1) throw new RangeError('maxConnections must be a positive whole number')
  const log = options.log
  const transporter = createTransport({
    pool: options.pool ?? true,
    maxConnections,
    host: server.host,
    ...(server.port !== undefined && { port: server.port }),
    secure: server.secure,
    ...(server.auth && { auth: server.auth }),
    ignoreTLS: server.starttls === 'ignore',
    requireTLS: server.starttls === 'require',
    connectionTimeout: options.timeoutMs,
    greetingTimeout: options.timeoutMs,
    socketTimeout: options.timeoutMs,
    dnsTimeout: options.timeoutMs,
    // The message is built from strings only: no part may make nodemailer read a file or fetch a URL.
    disableFileAccess: true,
    disableUrlAccess: true,
    logger: false,
  })
  const inFlight = new Set<Promise<unknown>>()
  let closing: Promise<void> | undefined

  const send = async (mail: OutgoingMail): Promise<SentMail> => {
    if (closing) throw new MailError('the mailer is closed', { transient: true, code: 'ECLOSED' })
    const invalid = invalidReason(mail)
    if (invalid !== undefined) throw new MailError(`cannot send this mail: ${invalid}`, { transient: false, code: 'EINVALID' })
    const sending = transporter.sendMail({
      from: options.from,
      to: mail.to,
      subject: mail.subject,
      text: mail.text,
      html: mail.html,
      messageId: mail.messageId,
      ...(mail.date && { date: mail.date }),
      ...(mail.headers && { headers: { ...mail.headers } }),
    })
    inFlight.add(sending)
    let info: Awaited<typeof sending>
    try {
      info = await sending
    } catch (err) {
      throw toMailError(err)
    } finally {
      inFlight.delete(sending)
    }
    if (info.rejected.length > 0) {
      // One recipient per message: refused, the message failed, even if the server took the data.
      const replyCode = firstReplyCode(info)
      throw new MailError(`the SMTP server refused the recipient ${info.rejected.join(', ')}: ${info.response}`, {
        transient: replyCode !== null && !isPermanentReply(replyCode),
        responseCode: replyCode,
        code: 'EENVELOPE',
        rejected: info.rejected.map(String),
      })
    }
    log?.debug({ messageId: mail.messageId, response: info.response }, 'mail sent')
    return { response: info.response, accepted: info.accepted.map(String) }
  }

  return {
    send,
    async verify() {
      if (closing) throw new MailError('the mailer is closed', { transient: true, code: 'ECLOSED' })
      try {
        await transporter.verify()
      } catch (err) {
        throw toMailError(err)
      }
    },
    close() {
      closing ??= (async () => {
        // Sends already handed over finish first; a server that stalls one gets timeoutMs
        // more, then its connection is cut and that send fails as transient.
        let timer: NodeJS.Timeout | undefined
        const late = new Promise<'late'>((resolve) => {
          timer = setTimeout(resolve, options.timeoutMs, 'late')
        })
        const finished = Promise.allSettled([...inFlight]).then(() => 'finished' as const)
        const outcome = await Promise.race([finished, late])
        clearTimeout(timer)
        transporter.close(outcome === 'late' ? { force: true } : undefined)
      })()
      return closing
    },
  }
}

/** The reply code of the first refused recipient of a partly refused message, if nodemailer kept it. */
function firstReplyCode(info: object): number | null {
  const errors = (info as { rejectedErrors?: unknown }).rejectedErrors
  const first = Array.isArray(errors) ? (errors[0] as SmtpFailure | undefined) : undefined
  return typeof first?.responseCode === 'number' ? first.responseCode : null
}
