/**
 * Email addresses as Bourse accepts them, written once for the configuration (`MAIL_FROM`)
 * and the mailer (each recipient). Deliberately narrower than RFC 5322: `local@domain`
 * without spaces, quotes, brackets, commas or semicolons, so that one value is always
 * exactly one address and can never be read as a list or carry a header line.
 */

/** The pattern of one address, unanchored (for composing patterns). */
export const EMAIL_ADDRESS_PATTERN = String.raw`[^\s@<>()[\],;:"\\]+@[^\s@<>()[\],;:"\\.]+(\.[^\s@<>()[\],;:"\\.]+)*`

/**
 * The pattern of a mailbox for a From header, anchored: an address, or a display name and
 * the address in angle brackets. A name with a comma, colon or semicolon must be quoted,
 * since unquoted they would split it into several addresses.
 */
export const MAILBOX_PATTERN = String.raw`^(${EMAIL_ADDRESS_PATTERN}|("[^"\\\x00-\x1f]*"|[^<>"\\,;:@\x00-\x1f]*[^<>"\\,;:@\s]) <${EMAIL_ADDRESS_PATTERN}>)$`

const address = new RegExp(`^${EMAIL_ADDRESS_PATTERN}$`, 'u')
const mailbox = new RegExp(MAILBOX_PATTERN, 'u')

/** True when `text` is one address as Bourse accepts it (see the module comment). */
export function isEmailAddress(text: string): boolean {
  return text.length <= 254 && address.test(text)
}

/** True when `text` is an address or `Name <address>`. */
export function isMailbox(text: string): boolean {
  return mailbox.test(text)
}
