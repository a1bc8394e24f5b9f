/**
 * Migrating while other schemas come and go (other services, other test files): Kysely's
 * look at the tables reads every schema by name, and one dropped meanwhile must not fail
 * the migration.
 */
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { test } from 'node:test'
import { setTimeout as pause } from 'node:timers/promises'
import { sql } from 'kysely'
import { createDb, migrateToLatest } from '../../../src/platform/db/index.ts'
import { testConfig } from '../../helpers/infra.ts'

test('schemas dropped while migrations look at the tables do not fail them', async () => {
  const url = testConfig().DATABASE_URL
  const prefix = `t_churn_${randomBytes(3).toString('hex')}_`
  const churn = createDb({ url, max: 2 })
  const mine = Array.from({ length: 40 }, () => `t_${randomBytes(5).toString('hex')}`)
  let stop = false
  try {
    // Another lane: schemas with a table each, created and dropped 50 times a second (far
    // more often than test files or services drop theirs).
    const churning = (async () => {
      for (let i = 0; !stop; i++) {
        const name = `${prefix}${i % 4}`
        await sql`create schema if not exists ${sql.id(name)}`.execute(churn)
        await sql`create table if not exists ${sql.id(name)}.t (id int)`.execute(churn)
        await sql`drop schema ${sql.id(name)} cascade`.execute(churn)
        await pause(20)
      }
    })()
    let applied = 0
    for (const schema of mine) {
      const db = createDb({ url, schema, max: 1 })
      try {
        const names = await migrateToLatest(db, schema, { '0001_x': { up: async (d) => void (await sql`create table x (id int)`.execute(d)) } })
        applied += names.length
      } finally {
        await sql`drop schema if exists ${sql.id(schema)} cascade`.execute(db)
        await db.destroy()
      }
    }
    stop = true
    await churning
    assert.equal(applied, mine.length)
  } finally {
    stop = true
    for (let i = 0; i < 4; i++) await sql`drop schema if exists ${sql.id(`${prefix}${i}`)} cascade`.execute(churn)
    await churn.destroy()
  }
})
