/**
 * Alerts fixtures: a user owning the alerts, alerts inserted straight into the table, and
 * a BullMQ key prefix of the test's own on the test Redis.
 */
import { randomBytes } from 'node:crypto'
import { sql } from 'kysely'
import type { Db } from '../../src/database.ts'
import { createLogger } from '../../src/platform/logger.ts'
import type { QueueConnection } from '../../src/platform/queues.ts'
import { testRedisUrl } from './infra.ts'

/** The user the fixtures' alerts belong to. */
export const ALERTS_USER = 'alerts-user'

/** Creates the fixtures' user (and `others`) in the test schema. */
export async function createAlertUsers(db: Db, ...others: string[]): Promise<void> {
  await db
    .insertInto('users')
    .values([ALERTS_USER, ...others].map((id) => ({ id, credit: '0', webhook_secret: `whsec_${randomBytes(24).toString('base64')}` })))
    .execute()
}

/** An alert to insert with {@link insertAlerts}. */
export interface AlertFixture {
  frequency: 2 | 10 | 30
  nextRunAt: Date
  phrase?: string
  email?: string
  maxPrice?: string | null
  currency?: string | null
  status?: 'active' | 'paused'
}

/** Inserts alerts of {@link ALERTS_USER} in batches; resolves to their ids in the order given. */
export async function insertAlerts(db: Db, alerts: readonly AlertFixture[]): Promise<string[]> {
  const ids: string[] = []
  // Unique per call, so that calls never make the same (email, phrase, frequency) twice.
  const call = randomBytes(3).toString('hex')
  for (let at = 0; at < alerts.length; at += 1000) {
    const rows = alerts.slice(at, at + 1000).map((a, i) => {
      const phrase = a.phrase ?? `item ${call} ${at + i}`
      return {
        user_id: ALERTS_USER,
        email: a.email ?? `user${at + i}@example.com`,
        phrase,
        phrase_key: phrase.toLowerCase(),
        frequency_minutes: a.frequency,
        max_price: a.maxPrice ?? null,
        currency: a.currency ?? null,
        status: a.status ?? 'active',
        next_run_at: a.nextRunAt,
      }
    })
    const inserted = await db.insertInto('alerts').values(rows).returning('id').execute()
    ids.push(...inserted.map((r) => String(r.id)))
  }
  return ids
}

/** Every run recorded, as `alertId@dueMs` strings. */
export async function recordedRuns(db: Db): Promise<string[]> {
  const { rows } = await sql<{ key: string }>`
    select alert_id::text || '@' || (extract(epoch from due_at) * 1000)::bigint::text as key from alert_runs
  `.execute(db)
  return rows.map((r) => r.key)
}

/** A queue connection to the test Redis with a key prefix of its own (delete its keys with the prefix). */
export function testQueueConnection(): QueueConnection {
  return { url: testRedisUrl, prefix: `t${randomBytes(4).toString('hex')}`, log: createLogger({ level: 'silent', pretty: false }) }
}
