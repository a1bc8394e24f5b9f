/**
 * PostgreSQL gone while a connection is checked out of the pool (a query running, or a
 * transaction between two statements): the caller's query fails and the process lives on.
 * pg-pool listens for errors on idle connections only, and a pg client emits `error` when
 * its connection ends unexpectedly; with no listener that was an uncaught exception, which
 * killed the API when PostgreSQL went away during one of its background queries.
 */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { sql } from 'kysely'
import { closeDb, createDb } from '../../../src/platform/db/index.ts'
import { testConfig } from '../../helpers/infra.ts'
import { startTcpProxy } from '../../helpers/tcp-proxy.ts'

test('a checked-out connection whose server goes away fails its query, and the pool serves again once it is back', async () => {
  const url = new URL(testConfig().DATABASE_URL)
  const proxy = await startTcpProxy({ host: url.hostname, port: Number(url.port || 5432) })
  url.port = String(proxy.port)
  const db = createDb({ url: url.href, max: 2, connectTimeoutMs: 1000 })
  try {
    await db.connection().execute(async (conn) => {
      assert.equal((await sql<{ x: number }>`select 1 as x`.execute(conn)).rows[0]!.x, 1)
      // The server goes away while this connection is out of the pool; the client emits
      // `error` whether the end arrives before this query or under it.
      await proxy.cut()
      await assert.rejects(sql`select 1`.execute(conn), /Connection terminated|not queryable|ECONNRESET|EPIPE/)
    })
    await proxy.restore()
    assert.equal((await sql<{ x: number }>`select 2 as x`.execute(db)).rows[0]!.x, 2)
  } finally {
    await closeDb(db)
    await proxy.close()
  }
})
