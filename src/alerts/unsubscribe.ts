/**
 * One-click unsubscribe links (RFC 8058) of the alerts' emails: `PUBLIC_URL/api/alerts/
 * unsubscribe/<token>`, where the token is the alert's id and an HMAC-SHA256 of it under a
 * key of this database. The link needs no login (a mail client posts to it on its own), so
 * the token is the only proof: it cannot be made without the key, names one alert, and is
 * signed for this purpose only (the same key signing anything else later cannot turn into
 * an unsubscribe).
 *
 * The key is made once per database, on first use, in table `alert_signing_keys`: every
 * service (the API verifying, the workers writing emails) reads the same one, with no
 * secret to configure. Whoever reads that table can make links, which is no more than
 * whoever can already change the alerts themselves.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto'
import type { Db } from '../database.ts'

/** The row of `alert_signing_keys` holding the key. */
export const UNSUBSCRIBE_KEY_NAME = 'unsubscribe'
/** Bytes of the key. */
const KEY_BYTES = 32
/** What a token's MAC is for: signed along with the id, so a MAC made for another purpose never verifies here. */
const PURPOSE = 'bourse/alerts/unsubscribe/v1'
/** `<alert id>.<base64url of the 32-byte MAC>`; ids are positive bigints. */
const TOKEN = /^([1-9][0-9]{0,18})\.([A-Za-z0-9_-]{43})$/
const MAX_BIGINT = 2n ** 63n - 1n

/** Makes and checks unsubscribe tokens. */
export interface UnsubscribeSigner {
  /** The token of alert `alertId` (a decimal id); the same every time for the same alert. */
  tokenFor(alertId: string): Promise<string>
  /** The alert id a token was made for, or undefined when it is malformed or not ours (forged, altered). */
  verify(token: string): Promise<string | undefined>
}

/** Reads the key, making it first when this database has none (concurrent first uses agree on one). */
async function loadKey(db: Db): Promise<Buffer> {
  await db
    .insertInto('alert_signing_keys')
    .values({ name: UNSUBSCRIBE_KEY_NAME, secret: randomBytes(KEY_BYTES).toString('base64url') })
    .onConflict((oc) => oc.column('name').doNothing())
    .execute()
  const row = await db.selectFrom('alert_signing_keys').select('secret').where('name', '=', UNSUBSCRIBE_KEY_NAME).executeTakeFirstOrThrow()
  const key = Buffer.from(row.secret, 'base64url')
  if (key.length < KEY_BYTES) throw new Error(`the ${UNSUBSCRIBE_KEY_NAME} signing key holds ${key.length} bytes, fewer than ${KEY_BYTES}`)
  return key
}

function isAlertId(text: string): boolean {
  return /^[1-9][0-9]{0,18}$/.test(text) && BigInt(text) <= MAX_BIGINT
}

/** The signer of `db`'s unsubscribe links; the key is read once and kept. */
export function createUnsubscribeSigner(db: Db): UnsubscribeSigner {
  let key: Promise<Buffer> | undefined
  const keyOnce = () =>
    (key ??= loadKey(db).catch((err: unknown) => {
      // Not kept: the next call tries again (the database may have been down).
      key = undefined
      throw err
    }))
  const mac = async (alertId: string) => createHmac('sha256', await keyOnce()).update(`${PURPOSE}\n${alertId}`).digest('base64url')
  return {
    async tokenFor(alertId) {
      if (!isAlertId(alertId)) throw new RangeError(`not an alert id: ${JSON.stringify(alertId.slice(0, 40))}`)
      return `${alertId}.${await mac(alertId)}`
    },
    async verify(token) {
      const match = TOKEN.exec(token)
      const alertId = match?.[1]
      const given = match?.[2]
      if (alertId === undefined || given === undefined || !isAlertId(alertId)) return undefined
      // The texts are compared, not the decoded bytes: 43 base64url characters carry 2
      // spare bits, so four texts decode to one MAC, and only ours is accepted.
      const expected = Buffer.from(await mac(alertId))
      const actual = Buffer.from(given)
      return expected.length === actual.length && timingSafeEqual(expected, actual) ? alertId : undefined
    },
  }
}

/** The unsubscribe link of a token: `${publicUrl}/api/alerts/unsubscribe/${token}` (`PUBLIC_URL`, trailing slashes ignored). */
export function unsubscribeUrl(publicUrl: string, token: string): string {
  return `${publicUrl.replace(/\/+$/, '')}/api/alerts/unsubscribe/${encodeURIComponent(token)}`
}
