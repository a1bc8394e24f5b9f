/**
 * Mails the alerts' email outbox (`alert_emails`) over SMTP, with the platform's outbox
 * sender: claimed under a lease, woken by the commit that queued the email, retried with
 * backoff while SMTP is down or answers 4xx, a dead letter after a permanent refusal (5xx)
 * or `ALERTS_EMAIL_RETRY_FOR_MS`.
 *
 * Exactly once, as far as SMTP allows: an email is marked delivered once the SMTP server
 * accepted it. A sender killed between the acceptance and the mark leaves the lease to run
 * out and the email is sent again, with the same Message-ID, so the receiving side can
 * recognise the repeat (the README says more).
 */
import type pg from 'pg'
import type { Db } from '../database.ts'
import { notifyChannel } from '../platform/db/index.ts'
import type { Logger } from '../platform/logger.ts'
import { MailError, type Mailer } from '../platform/mail/mailer.ts'
import type { OutboxTable } from '../platform/outbox/outbox.repository.ts'
import { createOutboxSender, type OutboxAttempt } from '../platform/outbox/outbox-sender.ts'
import type { AlertEmailRow } from './db/tables.ts'

/** The alerts' email outbox in `schema`. */
export function alertEmailOutbox(schema: string): OutboxTable {
  return { table: 'alert_emails', channel: notifyChannel('alert_emails', schema) }
}

/** The domain of a sender address (`Name <user@domain>` or `user@domain`), for Message-IDs. */
export function mailDomain(from: string): string {
  const match = /@([^>\s]+)>?\s*$/.exec(from)
  return match?.[1]?.toLowerCase() ?? 'localhost'
}

/** Dependencies of {@link createAlertEmailSender}. */
export interface AlertEmailSenderDeps {
  db: Db
  log: Logger
  /** Where the LISTEN connection goes (a `postgres://` URL or a client factory). */
  listen: string | (() => pg.Client)
  schema: string
  mailer: Pick<Mailer, 'send'>
}

/** Options of {@link createAlertEmailSender}. */
export interface AlertEmailSenderOptions {
  /** Emails in flight at once. */
  concurrency: number
  /** How long a claim holds before another sender may send the email; must exceed an SMTP exchange. @defaultValue 60000 */
  leaseMs?: number
  /** First retry delay, doubled per attempt with jitter, in ms. @defaultValue 5000 */
  retryBaseMs?: number
  /** Longest delay between two attempts, in ms. @defaultValue 600000 */
  retryMaxMs?: number
  /** Longest sleep between two looks at the table without a notification, in ms. @defaultValue 1000 */
  pollMs?: number
}

/** Creates the sender; nothing connects before its `run`. */
export function createAlertEmailSender(deps: AlertEmailSenderDeps, options: AlertEmailSenderOptions) {
  const { mailer } = deps
  async function deliver(row: AlertEmailRow): Promise<OutboxAttempt> {
    const { 'Message-ID': messageId, ...headers } = row.headers
    try {
      await mailer.send({
        to: row.recipient,
        subject: row.subject,
        html: row.html,
        text: row.text,
        messageId: messageId ?? `<${row.id}@localhost>`,
        headers,
        date: row.created_at,
      })
      return { ok: true, status: 250 }
    } catch (err) {
      if (err instanceof MailError) {
        return { ok: false, status: err.responseCode, error: err.message, permanent: !err.transient }
      }
      return { ok: false, status: null, error: err instanceof Error ? `${err.name}: ${err.message}` : String(err) }
    }
  }
  const outbox = alertEmailOutbox(deps.schema)
  const sender = createOutboxSender<AlertEmailRow>(
    { db: deps.db, log: deps.log, listen: deps.listen, outbox },
    {
      name: 'alert-email-sender',
      concurrency: options.concurrency,
      leaseMs: options.leaseMs ?? 60_000,
      retryBaseMs: options.retryBaseMs ?? 5000,
      retryMaxMs: options.retryMaxMs ?? 600_000,
      ...(options.pollMs !== undefined && { pollMs: options.pollMs }),
      deliver,
      logContext: (row) => ({ alertId: row.alert_id, kind: row.kind }),
    },
  )
  return { ...sender, stats: sender.stats, outbox }
}
