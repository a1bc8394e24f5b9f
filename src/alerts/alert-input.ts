/**
 * What an alert is made of, checked and put in its one stored form: the email address,
 * the search phrase (and its key for duplicates) and the price ceiling. Each function
 * answers the value to store or a message saying what is wrong, so the routes can name
 * every bad field at once.
 */
import { isIPv4, isIPv6 } from 'node:net'
import { domainToASCII, domainToUnicode } from 'node:url'

/** A checked value, or why it was refused. */
export type Checked<T> = { ok: true; value: T } | { ok: false; message: string }

const ok = <T>(value: T): Checked<T> => ({ ok: true, value })
const refused = (message: string): Checked<never> => ({ ok: false, message })

/** Longest address (RFC 5321: a 256-octet path, less its angle brackets). */
export const MAX_EMAIL_OCTETS = 254
/** Longest local part (before the @), in octets (RFC 5321). */
const MAX_LOCAL_OCTETS = 64
/** Longest phrase, in characters, once its spaces are collapsed. */
export const MAX_PHRASE_CHARS = 200
/** Largest max_price: `numeric(14, 2)` keeps 12 digits before the point. */
const MAX_PRICE_WHOLE_DIGITS = 12

/**
 * A dot-atom local part (RFC 5322): runs of the ASCII `atext` characters, or letters,
 * marks and digits of any script (RFC 6531 addresses), separated by single dots. Quoted
 * local parts (`"john doe"@...`) are refused: legal, but no mailbox worth alerting needs
 * one, and they would bring spaces and quotes into headers.
 */
const LOCAL_PART = /^[\p{L}\p{M}\p{N}!#$%&'*+/=?^_`{|}~-]+(\.[\p{L}\p{M}\p{N}!#$%&'*+/=?^_`{|}~-]+)*$/u
/** A host name label once in ASCII (IDNA): letters, digits, inner hyphens, 1 to 63 of them. */
const ASCII_LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/

const EMAIL_HINT = 'must be an email address such as name@example.com'

/**
 * The domain of an address in its stored form: a dotted host name, lower-cased and with
 * its internationalized labels normalized (IDNA: `BÜCHER.de` and `xn--bcher-kva.de` are
 * both `bücher.de`), or an address literal in brackets (`[192.0.2.1]`, `[IPv6:2001:db8::1]`).
 */
function emailDomain(domain: string): Checked<string> {
  if (domain.startsWith('[')) {
    const literal = /^\[(?:(IPv6:)(.+)|(.+))\]$/i.exec(domain)
    const v6 = literal?.[2]
    const v4 = literal?.[3]
    if (v6 !== undefined && isIPv6(v6)) return ok(`[IPv6:${v6.toLowerCase()}]`)
    if (v4 !== undefined && isIPv4(v4)) return ok(`[${v4}]`)
    return refused('has an address literal that is not an IP address: write [192.0.2.1] or [IPv6:2001:db8::1]')
  }
  const ascii = domainToASCII(domain)
  if (ascii === '') return refused(`${EMAIL_HINT} (the domain is not a valid host name)`)
  const labels = ascii.split('.')
  if (labels.length < 2) return refused(`${EMAIL_HINT} (the domain must have a dot, as in example.com)`)
  if (ascii.length > 253 || !labels.every((label) => ASCII_LABEL.test(label))) {
    return refused(`${EMAIL_HINT} (the domain is not a valid host name)`)
  }
  if (/^\d+$/.test(labels.at(-1) ?? '')) {
    return refused('has an IP address as its domain: write it in brackets, as in name@[192.0.2.1]')
  }
  return ok(domainToUnicode(ascii))
}

/**
 * An email address as stored: exactly one @, no spaces, a dot-atom local part (kept as
 * written: only its owner's server may fold its case), and a domain as {@link emailDomain}
 * gives it; at most 254 octets in all.
 */
export function normalizeEmail(text: string): Checked<string> {
  if (/\s/u.test(text)) return refused(`${EMAIL_HINT} (without spaces)`)
  const parts = text.split('@')
  if (parts.length !== 2) return refused(`${EMAIL_HINT} (with exactly one @)`)
  const [local = '', domain = ''] = parts
  if (local === '') return refused(`${EMAIL_HINT} (nothing before the @)`)
  if (domain === '') return refused(`${EMAIL_HINT} (nothing after the @)`)
  if (Buffer.byteLength(local) > MAX_LOCAL_OCTETS) return refused(`has more than ${MAX_LOCAL_OCTETS} octets before the @`)
  if (!LOCAL_PART.test(local)) {
    return refused(`${EMAIL_HINT} (before the @: letters, digits and ${"!#$%&'*+/=?^_`{|}~-"}, dots only between them)`)
  }
  const normalized = emailDomain(domain)
  if (!normalized.ok) return normalized
  const address = `${local}@${normalized.value}`
  if (Buffer.byteLength(address) > MAX_EMAIL_OCTETS) return refused(`must be at most ${MAX_EMAIL_OCTETS} octets`)
  return ok(address)
}

/**
 * A search phrase as stored and shown: trimmed, every run of whitespace (tabs, newlines,
 * no-break spaces...) one space, 1 to 200 characters (code points) then. Other control
 * characters are refused: the phrase goes into email subjects.
 */
export function normalizePhrase(text: string): Checked<string> {
  const phrase = text.replace(/\s+/gu, ' ').trim()
  if (phrase === '') return refused('must not be empty (or only spaces)')
  if (/\p{Cc}/u.test(phrase)) return refused('must not contain control characters')
  const length = [...phrase].length
  if (length > MAX_PHRASE_CHARS) {
    return refused(`must be at most ${MAX_PHRASE_CHARS} characters once spaces are collapsed (it has ${length})`)
  }
  return ok(phrase)
}

/** The key two phrases are the same search by: {@link normalizePhrase}'s phrase, lower-cased. */
export function phraseKey(phrase: string): string {
  return phrase.toLowerCase()
}

/**
 * A price ceiling as exact decimal text (`"19.9"`, for `numeric(14, 2)`): greater than 0,
 * at most 2 decimals (zeros after them do not count: `1.50` is `1.5`), at most 12 digits
 * before the point, written plainly (no sign, no exponent). The text is the number's as
 * sent: a JSON number reaches this as its source digits (see `jsonBodyParser`), never as
 * a float.
 */
export function parseMaxPrice(text: string): Checked<string> {
  if (/^[+-]?(\d+(\.\d*)?|\.\d+)[eE][+-]?\d+$/.test(text)) return refused('must be written without an exponent (1000, not 1e3)')
  if (/^-(\d+(\.\d*)?|\.\d+)$/.test(text)) return refused('must be greater than 0')
  const match = /^(\d+)(?:\.(\d+))?$/.exec(text)
  if (!match) return refused('must be a decimal number greater than 0 with at most 2 decimals, such as 19.99')
  const whole = (match[1] ?? '').replace(/^0+(?=\d)/, '')
  const fraction = (match[2] ?? '').replace(/0+$/, '')
  if (fraction.length > 2) return refused('must have at most 2 decimals')
  if (whole.length > MAX_PRICE_WHOLE_DIGITS) return refused(`must be less than 1${'0'.repeat(MAX_PRICE_WHOLE_DIGITS)}`)
  if (whole === '0' && fraction === '') return refused('must be greater than 0')
  return ok(fraction === '' ? whole : `${whole}.${fraction}`)
}
