/**
 * Every query of the event query routes is backed by an index of migration 0002: on
 * tables of a few thousand rows (analyzed), EXPLAIN of each filter combination, first
 * page and next page, reads `events` and `event_errors` through an index, never a
 * sequential scan, and the keyset cursor bounds the index scan itself.
 *
 * Where two indexes fit (an application and a time range), the cheaper one depends on
 * the data, so either is accepted. BOURSE_SHOW_PLANS=1 prints every plan's index scans.
 */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { CompiledQuery, Kysely, PostgresDialect, sql } from 'kysely'
import pg from 'pg'
import type { Database, Db } from '../../src/database.ts'
import {
  type EventErrorFilter,
  type EventFilter,
  listEventErrors,
  listEvents,
  listSessionEvents,
} from '../../src/events/events.repository.ts'
import { openTestDb, type TestDb } from '../helpers/db.ts'
import { testConfig } from '../helpers/infra.ts'

interface PlanNode {
  'Node Type': string
  'Relation Name'?: string
  'Index Name'?: string
  'Index Cond'?: string
  Filter?: string
  Plans?: PlanNode[]
}

let testDb: TestDb
let pool: pg.Pool
/** A connection to the test schema that records each query it runs. */
let db: Db
const ran: CompiledQuery[] = []
let appIds: string[]

before(async () => {
  testDb = await openTestDb()
  pool = new pg.Pool({ connectionString: testConfig().DATABASE_URL, max: 2, options: `-c search_path=${testDb.schema}` })
  db = new Kysely<Database>({
    dialect: new PostgresDialect({ pool }),
    log: (event) => {
      if (event.level === 'query') ran.push(event.query)
    },
  })
  await sql`insert into apps (id, name, token_hash)
    select gen_random_uuid(), 'plan-app-' || i, 'hash-' || i from generate_series(1, 4) i`.execute(db)
  appIds = (await db.selectFrom('apps').select('id').orderBy('name').execute()).map((r) => r.id)
  // 6000 events: 4 applications, 600 sessions of 10, 2 categories, 5 names, over 100 minutes.
  await sql`insert into events (id, app_id, session_id, category, name, data, occurred_at, received_at)
    select gen_random_uuid(),
      (select array_agg(id order by name) from apps)[1 + i % 4],
      'session-' || (i % 600),
      case when i % 3 = 0 then 'form interaction' else 'page interaction' end,
      (array['pageview', 'cta click', 'submit', 'scroll', 'hover'])[1 + i % 5],
      '{"host": "www.consumeraffairs.com", "path": "/"}'::jsonb,
      timestamptz '2021-01-01 00:00:00Z' + i * interval '1 second' + (i % 7) * interval '1 microsecond',
      timestamptz '2021-01-02 00:00:00Z'
    from generate_series(1, 6000) i`.execute(db)
  // 4000 errors, stored over 4000 seconds.
  await sql`insert into event_errors (id, app_id, session_id, category, name, raw, reasons, received_at, stored_at)
    select gen_random_uuid(),
      (select array_agg(id order by name) from apps)[1 + i % 4],
      'session-' || (i % 600),
      case when i % 2 = 0 then 'form interaction' else 'page interaction' end,
      (array['pageview', 'cta click', 'submit'])[1 + i % 3],
      '{}'::jsonb,
      '[{"field": "/data/host", "message": "is required"}]'::jsonb,
      timestamptz '2021-01-02 00:00:00Z',
      timestamptz '2021-01-02 00:00:00Z' + i * interval '1 second' + (i % 5) * interval '1 microsecond'
    from generate_series(1, 4000) i`.execute(db)
  await sql`analyze apps`.execute(db)
  await sql`analyze events`.execute(db)
  await sql`analyze event_errors`.execute(db)
})
after(async () => {
  await db?.destroy()
  await testDb?.close()
})

/** The plan of the one query `run` makes. */
async function planOf(run: () => Promise<unknown>): Promise<PlanNode> {
  ran.length = 0
  await run()
  assert.equal(ran.length, 1, 'one query per page')
  const query = ran[0]!
  const result = await db.executeQuery<{ 'QUERY PLAN': Array<{ Plan: PlanNode }> }>(
    CompiledQuery.raw(`explain (format json) ${query.sql}`, [...query.parameters]),
  )
  return result.rows[0]!['QUERY PLAN'][0]!.Plan
}

function nodesOf(plan: PlanNode): PlanNode[] {
  return [plan, ...(plan.Plans ?? []).flatMap(nodesOf)]
}

const indexScans = new Set(['Index Scan', 'Index Only Scan', 'Bitmap Index Scan'])

/** Asserts the plan reads `table` only through indexes (one of `indexes` when given) and returns those nodes. */
function assertIndexed(plan: PlanNode, table: string, indexes: string[] | undefined, what: string): PlanNode[] {
  const nodes = nodesOf(plan)
  const text = JSON.stringify(plan, null, 1)
  const seq = nodes.filter((n) => n['Node Type'] === 'Seq Scan')
  assert.deepEqual(seq, [], `${what}: sequential scan\n${text}`)
  const used = nodes.filter((n) => indexScans.has(n['Node Type']) && n['Index Name'] !== undefined)
  assert.ok(used.length > 0, `${what}: no index scan\n${text}`)
  if (process.env.BOURSE_SHOW_PLANS) {
    const scans = used.map((n) => `${n['Node Type']} ${n['Index Name']} [${n['Index Cond'] ?? ''}] filter [${n.Filter ?? ''}]`)
    process.stdout.write(`# ${what}: ${scans.join(', ')}\n`)
  }
  for (const node of used) {
    const name = node['Index Name']!
    assert.ok(name.startsWith(table), `${what}: ${name} is not an index of ${table}\n${text}`)
    if (indexes) assert.ok(indexes.includes(name), `${what}: uses ${name}, expected ${indexes.join(' or ')}\n${text}`)
  }
  return used
}

/** The cursor of the page after the first of `run`, to plan the query of a later page. */
async function secondPageCursor(run: (cursor: string | undefined) => Promise<{ next_cursor: string | null }>): Promise<string> {
  const first = await run(undefined)
  assert.ok(first.next_cursor, 'a first page with a next page')
  return first.next_cursor
}

describe('query plans on a few thousand rows', () => {
  const from = '2021-01-01T00:30:00Z'
  const to = '2021-01-01T01:00:00Z'
  const eventCases = (): Array<[string, EventFilter, string[] | undefined]> => [
    ['no filter', {}, ['events_time']],
    ['app', { appId: appIds[1] }, ['events_app_time']],
    ['session', { sessionId: 'session-17' }, ['events_session']],
    ['category and name', { category: 'page interaction', name: 'cta click' }, ['events_type_time']],
    ['category', { category: 'form interaction' }, undefined],
    ['name', { name: 'scroll' }, undefined],
    ['from and to', { from, to }, ['events_time']],
    // Two indexes fit; which is cheaper depends on how selective the application is.
    ['app, from and to', { appId: appIds[2], from, to }, ['events_app_time', 'events_time']],
    ['session and app', { sessionId: 'session-17', appId: appIds[1] }, ['events_session', 'events_app_time']],
    ['category, name, from and to', { category: 'page interaction', name: 'pageview', from, to }, ['events_type_time', 'events_time']],
    ['app and category', { appId: appIds[0], category: 'form interaction' }, undefined],
  ]

  it('GET /api/events: each filter, first and next page, through an index; the cursor is an index bound', async () => {
    for (const [what, filter, indexes] of eventCases()) {
      const limit = filter.sessionId === undefined ? 50 : 3
      assertIndexed(await planOf(() => listEvents(db, filter, { limit })), 'events', indexes, what)
      const cursor = await secondPageCursor((c) => listEvents(db, filter, { cursor: c, limit }))
      const used = assertIndexed(await planOf(() => listEvents(db, filter, { cursor, limit })), 'events', indexes, `${what}, next page`)
      if (indexes) {
        assert.ok(
          used.some((n) => /ROW\(occurred_at, id\) </.test(n['Index Cond'] ?? '')),
          `${what}: the cursor is not an index bound\n${JSON.stringify(used, null, 1)}`,
        )
      }
    }
  })

  it("GET /api/sessions/{id}/events: a session's events in order through events_session, also for an application", async () => {
    for (const filter of [{}, { appId: appIds[1] }]) {
      const run = (cursor: string | undefined) => listSessionEvents(db, 'session-17', filter, { cursor, limit: 3 })
      assertIndexed(await planOf(() => run(undefined)), 'events', ['events_session'], 'session')
      const cursor = await secondPageCursor(run)
      const used = assertIndexed(await planOf(() => run(cursor)), 'events', ['events_session'], 'session, next page')
      assert.ok(used.some((n) => /ROW\(occurred_at, id\) >/.test(n['Index Cond'] ?? '')), JSON.stringify(used, null, 1))
    }
  })

  it('GET /api/event-errors: each filter, first and next page, through an index', async () => {
    const cases: Array<[string, EventErrorFilter, string[] | undefined]> = [
      ['no filter', {}, ['event_errors_time']],
      ['app', { appId: appIds[3] }, ['event_errors_app_time']],
      ['from and to', { from: '2021-01-02T00:10:00Z', to: '2021-01-02T00:40:00Z' }, ['event_errors_time']],
      [
        'app, from and to',
        { appId: appIds[3], from: '2021-01-02T00:10:00Z', to: '2021-01-02T00:40:00Z' },
        ['event_errors_app_time', 'event_errors_time'],
      ],
      ['category', { category: 'form interaction' }, undefined],
      ['category and name', { category: 'form interaction', name: 'submit' }, undefined],
      ['session', { sessionId: 'session-17' }, ['event_errors_session_time']],
      ['session and app', { sessionId: 'session-17', appId: appIds[1] }, ['event_errors_session_time', 'event_errors_app_time']],
    ]
    for (const [what, filter, indexes] of cases) {
      const limit = filter.sessionId === undefined ? 50 : 3
      assertIndexed(await planOf(() => listEventErrors(db, filter, { limit })), 'event_errors', indexes, what)
      const cursor = await secondPageCursor((c) => listEventErrors(db, filter, { cursor: c, limit }))
      const used = assertIndexed(
        await planOf(() => listEventErrors(db, filter, { cursor, limit })),
        'event_errors',
        indexes,
        `${what}, next page`,
      )
      if (indexes) assert.ok(used.some((n) => /ROW\(stored_at, id\) </.test(n['Index Cond'] ?? '')), JSON.stringify(used, null, 1))
    }
  })
})
