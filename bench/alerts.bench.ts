/**
 * `npm run bench:alerts`: product alerts, run as the production processes (`bourse
 * alerts-worker`, with `bourse ebay-sim` standing in for eBay and `bourse mail-sink` for
 * the mail provider) on the real Redis and PostgreSQL, in a namespace of its own (a
 * `bench_<random>` schema, Redis database BENCH_REDIS_DB, a `bench-<random>` BullMQ key
 * prefix), all removed at the end, also on failure. The distributor (what `bourse
 * alerts-scheduler` runs at each tick) runs in this process, so that a round starts when
 * the bench says, not at the scheduler's next 2-minute tick.
 *
 * A. Due alerts processed end to end. Each round inserts BENCH_ALERTS new alerts due now
 *    (their phrases cycling over BENCH_PHRASES, so eBay answers vary as they would), runs
 *    one distributor tick (batches of ALERTS_BATCH_SIZE into the `alerts` queue), and
 *    ends when every run is `done` and every email of the round is `delivered` in the
 *    outbox: for each alert one search on the fake eBay (every answer after a fixed
 *    BENCH_LATENCY_MS), its 20 cheapest items stored and the email queued in one
 *    transaction, the email sent over SMTP to the sink. One worker process with
 *    `--concurrency BENCH_CONCURRENCY`. The round's time runs from just before the tick
 *    to the last `delivered_at`, both read on PostgreSQL's clock (polling every 50 ms
 *    only finds that the round is over). Rate: alerts / seconds.
 *    Baseline, the limit: the same work with nothing around it, in this process: a bare
 *    loop of BENCH_CONCURRENCY tasks, each taking the next alert, doing the same search
 *    (the worker's eBay client, against the same ebay-sim process, with as many
 *    connections) and the same send (the worker's mailer, with its pool of 5 SMTP
 *    connections, to the same sink) of the same rendered email (list email, unsubscribe
 *    link, headers); no queue, no database. After every round of either kind the sink
 *    must hold exactly one message per alert (it is cleared between rounds).
 *    One warm-up round of each first (the worker's first jobs also open its connections
 *    and compile its code), then BENCH_ROUNDS rounds of each, alternating, baseline first;
 *    compared by their medians. Target: end to end at least 0.5 of the bare loop. Also per
 *    round: the distributor's tick, the time to the last run stored, the emails' lag (last
 *    run stored to last email delivered), and the CPU time per alert of the worker, of the
 *    PostgreSQL backends serving it (its connections found in /proc and matched to
 *    `pg_stat_activity` by port), of the fake eBay, the sink and this process (Linux
 *    /proc): on a 2-core machine the rates are bound by CPU, and these say where it went.
 *    Their sums give a second ratio, bare CPU per alert over end-to-end CPU per alert: what
 *    the ratio of the rates would be if CPU were the only limit and each mode got the same
 *    share of it (Redis's share is left out: its server is shared with other work).
 *
 * B. The distributor on BENCH_DISTRIBUTOR_ALERTS alerts (100,000) due at one tick, once
 *    the worker is stopped: one `tick()` with batches of ALERTS_BATCH_SIZE (500) into the
 *    real queue; every alert must have exactly one run, marked enqueued, and the queue
 *    exactly that many waiting jobs. The alerts are inserted by one INSERT ... SELECT and
 *    the table analysed (as autovacuum would before long). Baseline: the same number of
 *    jobs of the same shape and options added to another queue with `addBulk` in batches
 *    of the same size, before and after the tick (the faster counts): what BullMQ alone
 *    costs. The queues are obliterated afterwards.
 *
 * Options (env): BENCH_ALERTS (2000 per round), BENCH_CONCURRENCY (20), BENCH_ROUNDS (3),
 * BENCH_LATENCY_MS (20), BENCH_PHRASES (50), BENCH_DISTRIBUTOR_ALERTS (100,000; 0 skips B),
 * BENCH_ROUND_TIMEOUT_S (300), BENCH_REDIS_DB (12, flushed before and after; the other
 * benchmarks use 9 to 11), BENCH_CPU_PROF (a directory: the worker, ebay-sim and mail-sink
 * write V8 CPU profiles there when they stop).
 *
 * This process's CPU in an end-to-end round is the distributor's tick and the polling; the
 * PostgreSQL backends serving this process (the tick's claims) are not counted.
 */
import { availableParallelism } from 'node:os'
import { setTimeout as sleep } from 'node:timers/promises'
import type { JobsOptions, Queue } from 'bullmq'
import { sql } from 'kysely'
import { alertEmailId } from '../src/alerts/alerts.jobs.ts'
import { mailDomain } from '../src/alerts/alert-emails.sender.ts'
import { createDistributor, type RunJobData, runJobId } from '../src/alerts/distributor.ts'
import { createEbayClient } from '../src/alerts/ebay.client.ts'
import { renderListEmail } from '../src/alerts/emails/index.ts'
import { RUNS_QUEUE, runJobOptions } from '../src/alerts/queues.ts'
import { createUnsubscribeSigner, unsubscribeUrl } from '../src/alerts/unsubscribe.ts'
import { loadConfig } from '../src/platform/config.ts'
import { createDb } from '../src/platform/db/index.ts'
import type { Database } from '../src/database.ts'
import { createLogger } from '../src/platform/logger.ts'
import { createMailer } from '../src/platform/mail/mailer.ts'
import { openQueue } from '../src/platform/queues.ts'
import { createRedis } from '../src/platform/redis.ts'
import {
  type Child,
  connectionPorts,
  cpuMs,
  cpuProfileFlags,
  createFailure,
  createProcesses,
  intEnv,
  loadAverage1m,
  median,
  prepareNamespace,
  printTable,
  redisCleanup,
  redisDbUrl,
  round1,
  type Row,
  runCleanup,
  runSuffix,
  schemaCleanup,
  serviceEnvFor,
  stopChild,
  writeResult,
} from './lib.ts'

const ALERTS = intEnv('BENCH_ALERTS', 2000, 1)
const CONCURRENCY = intEnv('BENCH_CONCURRENCY', 20, 1)
const ROUNDS = intEnv('BENCH_ROUNDS', 3, 1)
const LATENCY_MS = intEnv('BENCH_LATENCY_MS', 20, 0)
const PHRASES = intEnv('BENCH_PHRASES', 50, 1)
const DISTRIBUTOR_ALERTS = intEnv('BENCH_DISTRIBUTOR_ALERTS', 100_000, 0)
const ROUND_TIMEOUT_S = intEnv('BENCH_ROUND_TIMEOUT_S', 300, 1)
const REDIS_DB = intEnv('BENCH_REDIS_DB', 12, 0)
const profileFlags = cpuProfileFlags(process.env.BENCH_CPU_PROF)
const RATIO_TARGET = 0.5
/** How often a round's progress is read. */
const POLL_MS = 50
/** The owner of every alert of the run. */
const USER = 'bench-alerts'
/** The frequency of the bench's alerts: none comes due again during a run. */
const FREQUENCY_MINUTES = 30
/** The queue of part B's baseline, beside the runs queue. */
const BARE_QUEUE = 'alerts-bench-bare'
/** What ebay-sim and mail-sink print once they listen; the URL(s) are the groups. */
const EBAY_LISTENING = /ebay-sim listening on (http:\/\/\S+)/
const SINK_LISTENING = /mail-sink SMTP on (smtp:\/\/\S+), messages at (http:\/\/\S+?)\/?\n/

const config = loadConfig()
const log = createLogger({ level: 'warn', pretty: false })
const suffix = runSuffix()
const schema = `bench_${suffix}`
const queuePrefix = `bench-${suffix}`
const redisUrl = redisDbUrl(config.REDIS_URL, REDIS_DB)
const databasePort = Number(new URL(config.DATABASE_URL).port || 5432)
const phrase = (n: number) => `bench item ${n % PHRASES}`

// Any child exiting on its own, or Ctrl-C, ends the run (then the cleanup runs).
const failure = createFailure()
const { guard } = failure
const processes = createProcesses(failure)

// ---------------------------------------------------------------------------------------
// Alerts and their progress.

/** The ids of the alerts one insert made: `first` to `last`, all of them. */
interface AlertRange {
  first: string
  last: string
}

/** Inserts `count` active alerts due at `dueAt`, in one statement; `tag` keeps their emails apart from other inserts'. */
async function insertAlerts(tag: string, count: number, dueAt: Date): Promise<AlertRange> {
  const { rows } = await sql<{ first: string; last: string; count: string }>`
    with inserted as (
      insert into alerts (user_id, email, phrase, phrase_key, frequency_minutes, next_run_at)
      select ${USER}, 'reader-' || ${tag}::text || '-' || n || '@example.com', 'bench item ' || (n % ${PHRASES}::int),
        'bench item ' || (n % ${PHRASES}::int), ${FREQUENCY_MINUTES}::int, ${dueAt}::timestamptz
      from generate_series(0, ${count}::int - 1) as n
      order by n
      returning id
    )
    select min(id)::text as first, max(id)::text as last, count(*)::text as count from inserted
  `.execute(db)
  const row = rows[0]!
  if (Number(row.count) !== count) throw new Error(`inserted ${row.count} alerts, not ${count}`)
  return { first: row.first, last: row.last }
}

/** Where a round's runs and emails are. */
interface Progress {
  done: number
  failed: number
  delivered: number
  dead: number
  emails: number
  /** The first error of a failed run or a dead email. */
  error: string | null
}

async function progress(range: AlertRange): Promise<Progress> {
  const { rows } = await sql<Record<keyof Progress, string | null>>`
    select
      (select count(*) from alert_runs where alert_id between ${range.first} and ${range.last} and status = 'done') as done,
      (select count(*) from alert_runs where alert_id between ${range.first} and ${range.last} and status in ('failed', 'skipped')) as failed,
      (select count(*) from alert_emails where alert_id between ${range.first} and ${range.last} and status = 'delivered') as delivered,
      (select count(*) from alert_emails where alert_id between ${range.first} and ${range.last} and status = 'dead') as dead,
      (select count(*) from alert_emails where alert_id between ${range.first} and ${range.last}) as emails,
      coalesce(
        (select error from alert_runs where alert_id between ${range.first} and ${range.last} and status in ('failed', 'skipped') limit 1),
        (select last_error from alert_emails where alert_id between ${range.first} and ${range.last} and status = 'dead' limit 1)
      ) as error
  `.execute(db)
  const row = rows[0]!
  return {
    done: Number(row.done),
    failed: Number(row.failed),
    delivered: Number(row.delivered),
    dead: Number(row.dead),
    emails: Number(row.emails),
    error: row.error,
  }
}

/** PostgreSQL's clock, in epoch ms: the one clock of a round's start and of the rows' timestamps. */
async function databaseNow(): Promise<number> {
  const { rows } = await sql<{ now: Date }>`select clock_timestamp() as now`.execute(db)
  return rows[0]!.now.getTime()
}

// ---------------------------------------------------------------------------------------
// The sink's count of messages, checked after every round.

/** Messages the sink holds now. */
async function sinkHeld(sinkHttpUrl: string): Promise<number> {
  const response = await fetch(`${sinkHttpUrl}/health`)
  if (!response.ok) throw new Error(`mail-sink /health answered ${response.status}`)
  return ((await response.json()) as { messages: number }).messages
}

/** Throws unless the sink holds exactly `expected` messages, then clears it for the next round. */
async function checkAndClearSink(sinkHttpUrl: string, expected: number, what: string): Promise<void> {
  const held = await sinkHeld(sinkHttpUrl)
  if (held !== expected) throw new Error(`${what}: the mail sink holds ${held} messages, not ${expected}`)
  const cleared = await fetch(`${sinkHttpUrl}/messages`, { method: 'DELETE' })
  if (cleared.status !== 204) throw new Error(`mail-sink DELETE /messages answered ${cleared.status}`)
}

// ---------------------------------------------------------------------------------------
// CPU time of the processes involved.

/** The processes whose CPU time a round measures. */
interface Measured {
  worker: Child
  ebay: Child
  sink: Child
}

/** CPU ms of each process so far (this one's from process.cpuUsage). */
function cpuNow(m: Measured): Record<'worker' | 'ebay' | 'sink' | 'bench', number | undefined> {
  const own = process.cpuUsage()
  return {
    worker: cpuMs(m.worker.process.pid),
    ebay: cpuMs(m.ebay.process.pid),
    sink: cpuMs(m.sink.process.pid),
    bench: (own.user + own.system) / 1000,
  }
}

/** CPU µs per alert of each process between two readings; null where /proc had none. */
type CpuPerAlert = Record<'worker' | 'ebay' | 'sink' | 'bench', number | null>

/**
 * CPU ms so far of each PostgreSQL backend serving process `pid` (its connections matched
 * to `pg_stat_activity` by their ports): the database's share of the work, which no
 * process of ours shows. Empty without /proc.
 */
async function backendCpu(pid: number | undefined): Promise<Map<number, number>> {
  const ports = connectionPorts(pid, databasePort)
  const cpu = new Map<number, number>()
  if (ports.length === 0) return cpu
  const { rows } = await sql<{ pid: number }>`select pid from pg_stat_activity where client_port = any(${ports}::int[])`.execute(db)
  for (const row of rows) {
    const ms = cpuMs(row.pid)
    if (ms !== undefined) cpu.set(row.pid, ms)
  }
  return cpu
}

/** CPU µs per alert of the backends between two readings (a backend opened meanwhile counts from 0); null without any. */
function backendCpuPerAlert(before: Map<number, number>, after: Map<number, number>, alerts: number): number | null {
  if (after.size === 0) return null
  let ms = 0
  for (const [pid, total] of after) ms += total - (before.get(pid) ?? 0)
  return Math.round((ms * 1000) / alerts)
}

function cpuPerAlert(before: ReturnType<typeof cpuNow>, after: ReturnType<typeof cpuNow>, alerts: number): CpuPerAlert {
  const per = (k: keyof CpuPerAlert) => {
    const b = before[k]
    const a = after[k]
    return a === undefined || b === undefined ? null : Math.round(((a - b) * 1000) / alerts)
  }
  return { worker: per('worker'), ebay: per('ebay'), sink: per('sink'), bench: per('bench') }
}

// ---------------------------------------------------------------------------------------
// A. Rounds.

/** One round of either kind. */
interface Round {
  alertsPerSecond: number
  seconds: number
  /** CPU µs per alert of each process during the round. */
  cpuUsPerAlert: CpuPerAlert
  /** The machine's 1-minute load average at the round's end. */
  loadAverage1m: number
}

/** An end-to-end round, with its phases. */
interface EndToEndRound extends Round {
  /** The distributor's tick (claim, enqueue, mark) for the round's alerts. */
  tickMs: number
  /** From the start to the last run stored. */
  lastRunStoredSeconds: number
  /** From the last run stored to the last email delivered. */
  emailLagMs: number
  /** Emails delivered after the last run was stored: the outbox's backlog at that moment. */
  emailsAfterLastRun: number
  /** CPU µs per alert of the PostgreSQL backends serving the worker; null without /proc. */
  postgresCpuUsPerAlert: number | null
}

/** A round with whole rates, for the JSON. */
const rounded = <R extends Round>(r: R): R => ({ ...r, alertsPerSecond: Math.round(r.alertsPerSecond), seconds: Number(r.seconds.toFixed(3)) })

/** The run's fixed parts, set up once. */
interface Rig {
  measured: Measured
  sinkHttpUrl: string
  distributor: ReturnType<typeof createDistributor>
  ebay: ReturnType<typeof createEbayClient>
  mailer: ReturnType<typeof createMailer>
  signer: ReturnType<typeof createUnsubscribeSigner>
  /** Where the unsubscribe links point (PUBLIC_URL). */
  publicUrl: string
  /** The domain of the Message-IDs (the sender address's). */
  messageIdDomain: string
}

let roundsRun = 0

/** One end-to-end round: BENCH_ALERTS alerts due now, one tick, until every email is delivered. */
async function endToEndRound(rig: Rig): Promise<EndToEndRound> {
  const tag = `e${++roundsRun}`
  const due = new Date(await databaseNow())
  const range = await insertAlerts(tag, ALERTS, due)
  const cpuBefore = cpuNow(rig.measured)
  const postgresBefore = await backendCpu(rig.measured.worker.process.pid)
  const startedAt = await databaseNow()
  const tickStarted = performance.now()
  const tick = await rig.distributor.tick(new Date(startedAt))
  const tickMs = performance.now() - tickStarted
  if (tick.claimed !== ALERTS) throw new Error(`the tick claimed ${tick.claimed} runs, not ${ALERTS}`)
  for (const deadline = Date.now() + ROUND_TIMEOUT_S * 1000; ; await guard(sleep(POLL_MS))) {
    const p = await guard(progress(range))
    if (p.failed > 0 || p.dead > 0) throw new Error(`${p.failed} runs failed or skipped, ${p.dead} emails dead: ${p.error}`)
    if (p.done === ALERTS && p.delivered === p.emails && p.emails >= ALERTS) {
      if (p.emails !== ALERTS) throw new Error(`the round queued ${p.emails} emails for ${ALERTS} alerts (insight emails?)`)
      break
    }
    if (Date.now() > deadline) {
      throw new Error(`after ${ROUND_TIMEOUT_S} s: ${p.done} of ${ALERTS} runs stored, ${p.delivered} of ${p.emails} emails delivered`)
    }
  }
  const cpuAfter = cpuNow(rig.measured)
  const postgresAfter = await backendCpu(rig.measured.worker.process.pid)
  const { rows } = await sql<{ last_run: Date; last_email: Date; after: string }>`
    with runs as (select max(finished_at) as last_run from alert_runs where alert_id between ${range.first} and ${range.last})
    select runs.last_run, max(e.delivered_at) as last_email, count(*) filter (where e.delivered_at > runs.last_run)::text as after
    from runs, alert_emails e where e.alert_id between ${range.first} and ${range.last}
    group by runs.last_run
  `.execute(db)
  const lastRun = rows[0]!.last_run.getTime()
  const lastEmail = rows[0]!.last_email.getTime()
  await checkAndClearSink(rig.sinkHttpUrl, ALERTS, `end-to-end round ${tag}`)
  const seconds = (lastEmail - startedAt) / 1000
  return {
    alertsPerSecond: ALERTS / seconds,
    seconds,
    tickMs: Math.round(tickMs),
    lastRunStoredSeconds: Number(((lastRun - startedAt) / 1000).toFixed(3)),
    emailLagMs: lastEmail - lastRun,
    emailsAfterLastRun: Number(rows[0]!.after),
    cpuUsPerAlert: cpuPerAlert(cpuBefore, cpuAfter, ALERTS),
    postgresCpuUsPerAlert: backendCpuPerAlert(postgresBefore, postgresAfter, ALERTS),
    loadAverage1m: round1(loadAverage1m()),
  }
}

/**
 * One bare round: BENCH_CONCURRENCY tasks, each taking the next alert, searching, and
 * sending its list email, exactly as the worker would write it.
 */
async function bareRound(rig: Rig): Promise<Round> {
  const tag = `b${++roundsRun}`
  const dueAt = new Date()
  let next = 0
  const task = async () => {
    for (let i = next++; i < ALERTS; i = next++) {
      // Ids beyond any alert of the run: the bare loop has no rows, only the same work.
      const alertId = String(1_000_000_000 + roundsRun * ALERTS + i)
      const found = await rig.ebay.search(phrase(i))
      const unsubscribe = unsubscribeUrl(rig.publicUrl, await rig.signer.tokenFor(alertId))
      const email = renderListEmail({
        alert: { id: alertId, phrase: phrase(i), frequency_minutes: FREQUENCY_MINUTES, email: `reader-${tag}-${i}@example.com` },
        dueAt,
        items: found.items,
        unsubscribeUrl: unsubscribe,
      })
      await rig.mailer.send({
        to: `reader-${tag}-${i}@example.com`,
        ...email,
        messageId: `<${alertEmailId('list', alertId, dueAt)}@${rig.messageIdDomain}>`,
        headers: { 'List-Unsubscribe': `<${unsubscribe}>`, 'List-Unsubscribe-Post': 'List-Unsubscribe=One-Click' },
        date: new Date(),
      })
    }
  }
  const cpuBefore = cpuNow(rig.measured)
  const started = performance.now()
  await guard(Promise.all(Array.from({ length: CONCURRENCY }, task)))
  const seconds = (performance.now() - started) / 1000
  const cpuAfter = cpuNow(rig.measured)
  await checkAndClearSink(rig.sinkHttpUrl, ALERTS, `bare round ${tag}`)
  return {
    alertsPerSecond: ALERTS / seconds,
    seconds,
    cpuUsPerAlert: cpuPerAlert(cpuBefore, cpuAfter, ALERTS),
    loadAverage1m: round1(loadAverage1m()),
  }
}

/** A round's CPU per alert, as a progress line shows it. */
/** CPU µs per alert of every process measured in a round (null when one has no figure). */
function totalCpu(r: Round & { postgresCpuUsPerAlert?: number | null }): number | null {
  const parts = [...Object.values(r.cpuUsPerAlert), ...(r.postgresCpuUsPerAlert === undefined ? [] : [r.postgresCpuUsPerAlert])]
  return parts.some((p) => p === null) ? null : parts.reduce((sum: number, p) => sum + p!, 0)
}

const cpuText = (c: CpuPerAlert) => `CPU/alert µs: worker ${c.worker ?? '?'}, ebay ${c.ebay ?? '?'}, sink ${c.sink ?? '?'}, bench ${c.bench ?? '?'}`

// ---------------------------------------------------------------------------------------
// B. The distributor.

/** Adds `count` run-shaped jobs to `queue` in batches of `batchSize`; resolves to the seconds it took. */
async function bareAddBulk(queue: Queue, count: number, batchSize: number, jobOptions: JobsOptions): Promise<number> {
  const dueAt = new Date().toISOString()
  const started = performance.now()
  for (let at = 0; at < count; at += batchSize) {
    const jobs = []
    for (let i = at; i < Math.min(count, at + batchSize); i++) {
      const runId = String(1_000_000_000 + i)
      const data: RunJobData = { runId, alertId: runId, dueAt }
      jobs.push({ name: 'run', data, opts: { ...jobOptions, jobId: runJobId(runId) } })
    }
    await guard(queue.addBulk(jobs))
  }
  return (performance.now() - started) / 1000
}

// ---------------------------------------------------------------------------------------
// The run.

const serviceEnv = serviceEnvFor(process.env, { schema, redisUrl }, { QUEUE_PREFIX: queuePrefix })
// Other work on the machine moves every number here; the load average says how much there was.
const loadAtStart = loadAverage1m()
const db = createDb<Database>({ url: config.DATABASE_URL, schema, max: 4, log })
const redis = createRedis(redisUrl, log, 'bench')
const connection = { url: redisUrl, prefix: queuePrefix, log }
const runs = openQueue<RunJobData>(RUNS_QUEUE, connection)
const bareQueue = openQueue(BARE_QUEUE, connection)
const closers: Array<() => Promise<unknown>> = []

try {
  await prepareNamespace(db, redis, schema)
  await db.insertInto('users').values({ id: USER, credit: '0', webhook_secret: `whsec_bench${suffix}` }).execute()

  const ebaySim = processes.start(
    'bourse ebay-sim',
    ['src/cli.ts', 'ebay-sim', '--port', '0', '--latency-ms', String(LATENCY_MS)],
    serviceEnv,
    profileFlags,
  )
  // Room for a round's messages twice over: a round sending one twice shows in the count.
  const sink = processes.start(
    'bourse mail-sink',
    ['src/cli.ts', 'mail-sink', '--port', '0', '--http', '0', '--max', String(2 * ALERTS + 10)],
    serviceEnv,
    profileFlags,
  )
  const ebayUrl = await processes.waitForUrl(ebaySim, EBAY_LISTENING)
  const smtpUrl = await processes.waitForUrl(sink, SINK_LISTENING)
  const sinkHttpUrl = SINK_LISTENING.exec(sink.stdout)![2]!
  const workerEnv = { ...serviceEnv, EBAY_BASE_URL: ebayUrl, SMTP_URL: smtpUrl }
  const serviceConfig = loadConfig(workerEnv)
  const worker = processes.start(
    'bourse alerts-worker',
    ['src/cli.ts', 'alerts-worker', '--concurrency', String(CONCURRENCY)],
    workerEnv,
    profileFlags,
  )

  // The worker's own clients, as `bourse alerts-worker` makes them.
  const ebay = createEbayClient({
    baseUrl: ebayUrl,
    clientId: serviceConfig.EBAY_CLIENT_ID,
    clientSecret: serviceConfig.EBAY_CLIENT_SECRET,
    marketplaceId: serviceConfig.EBAY_MARKETPLACE_ID,
    timeoutMs: serviceConfig.EBAY_TIMEOUT_MS,
    connections: CONCURRENCY,
    log,
  })
  closers.push(() => ebay.close())
  const mailer = createMailer({ url: smtpUrl, from: serviceConfig.MAIL_FROM, timeoutMs: serviceConfig.SMTP_TIMEOUT_MS, log })
  closers.push(() => mailer.close())
  const jobOptions = runJobOptions(serviceConfig)
  const rig: Rig = {
    measured: { worker, ebay: ebaySim, sink },
    sinkHttpUrl,
    distributor: createDistributor({ db, runs: runs.queue, log }, { batchSize: serviceConfig.ALERTS_BATCH_SIZE, jobOptions }),
    ebay,
    mailer,
    signer: createUnsubscribeSigner(db),
    publicUrl: serviceConfig.PUBLIC_URL,
    messageIdDomain: mailDomain(serviceConfig.MAIL_FROM),
  }

  process.stdout.write(
    `A. ${ALERTS} due alerts per round, eBay answering in ${LATENCY_MS} ms, concurrency ${CONCURRENCY}: ` +
      `bare loop vs bourse alerts-worker, a warm-up round of each then ${ROUNDS} rounds of each, alternating\n`,
  )
  const warmup = { bare: await bareRound(rig), endToEnd: await endToEndRound(rig) }
  process.stdout.write(
    `warm-up: bare ${warmup.bare.alertsPerSecond.toFixed(0)} alerts/s, end to end ${warmup.endToEnd.alertsPerSecond.toFixed(0)} alerts/s\n`,
  )
  const bareRounds: Round[] = []
  const e2eRounds: EndToEndRound[] = []
  for (let round = 1; round <= ROUNDS; round++) {
    const b = await bareRound(rig)
    const e = await endToEndRound(rig)
    bareRounds.push(b)
    e2eRounds.push(e)
    process.stdout.write(
      `round ${round}: bare ${b.alertsPerSecond.toFixed(0)} alerts/s (${cpuText(b.cpuUsPerAlert)}), end to end ` +
        `${e.alertsPerSecond.toFixed(0)} alerts/s (tick ${e.tickMs} ms, last run stored at ${e.lastRunStoredSeconds.toFixed(2)} s, ` +
        `email lag ${e.emailLagMs} ms for ${e.emailsAfterLastRun} emails; ${cpuText(e.cpuUsPerAlert)}, postgres ${e.postgresCpuUsPerAlert ?? '?'}), ratio ${(e.alertsPerSecond / b.alertsPerSecond).toFixed(2)}, ` +
        `load ${e.loadAverage1m}\n`,
    )
  }
  await stopChild(worker)
  await stopChild(sink)
  await stopChild(ebaySim)

  const bareMedian = median(bareRounds.map((r) => r.alertsPerSecond))
  const e2eMedian = median(e2eRounds.map((r) => r.alertsPerSecond))
  const ratio = e2eMedian / bareMedian
  const roundRatios = e2eRounds.map((r, i) => r.alertsPerSecond / bareRounds[i]!.alertsPerSecond)
  const medianCpu = (rounds: Round[], k: keyof CpuPerAlert) =>
    rounds.some((r) => r.cpuUsPerAlert[k] === null) ? null : median(rounds.map((r) => r.cpuUsPerAlert[k]!))
  const medianTotal = (rounds: Round[]) => (rounds.some((r) => totalCpu(r) === null) ? null : median(rounds.map((r) => totalCpu(r)!)))
  const bareCpu = medianTotal(bareRounds)
  const e2eCpu = medianTotal(e2eRounds)
  const cpuRatio = bareCpu === null || e2eCpu === null ? null : bareCpu / e2eCpu
  const postgresMedian = e2eRounds.some((r) => r.postgresCpuUsPerAlert === null)
    ? null
    : median(e2eRounds.map((r) => r.postgresCpuUsPerAlert!))

  // B. The distributor on one big tick.
  let distributorResult: Record<string, unknown> | null = null
  const distributorRows: Row[] = []
  if (DISTRIBUTOR_ALERTS > 0) {
    const batchSize = serviceConfig.ALERTS_BATCH_SIZE
    process.stdout.write(`\nB. the distributor: ${DISTRIBUTOR_ALERTS} alerts due at one tick, batches of ${batchSize}\n`)
    const due = new Date(await databaseNow())
    const insertStarted = performance.now()
    const range = await insertAlerts('d', DISTRIBUTOR_ALERTS, due)
    await sql`analyze alerts`.execute(db)
    const insertSeconds = (performance.now() - insertStarted) / 1000
    const bareBefore = await bareAddBulk(bareQueue.queue, DISTRIBUTOR_ALERTS, batchSize, jobOptions)
    await bareQueue.queue.obliterate({ force: true })
    const tickStarted = performance.now()
    const tick = await guard(rig.distributor.tick(new Date(due.getTime())))
    const tickSeconds = (performance.now() - tickStarted) / 1000
    const { rows } = await sql<{ runs: string; alerts: string; enqueued: string }>`
      select count(*)::text as runs, count(distinct alert_id)::text as alerts, count(enqueued_at)::text as enqueued
      from alert_runs where alert_id between ${range.first} and ${range.last}
    `.execute(db)
    const counts = rows[0]!
    const waiting = await runs.queue.getWaitingCount()
    if (
      tick.claimed !== DISTRIBUTOR_ALERTS ||
      Number(counts.runs) !== DISTRIBUTOR_ALERTS ||
      Number(counts.alerts) !== DISTRIBUTOR_ALERTS ||
      Number(counts.enqueued) !== DISTRIBUTOR_ALERTS ||
      waiting !== DISTRIBUTOR_ALERTS
    ) {
      throw new Error(
        `the tick claimed ${tick.claimed}; ${counts.runs} runs for ${counts.alerts} alerts, ${counts.enqueued} enqueued; ` +
          `${waiting} jobs waiting; expected ${DISTRIBUTOR_ALERTS} of each`,
      )
    }
    await runs.queue.obliterate({ force: true })
    const bareAfter = await bareAddBulk(bareQueue.queue, DISTRIBUTOR_ALERTS, batchSize, jobOptions)
    await bareQueue.queue.obliterate({ force: true })
    const bareSeconds = Math.min(bareBefore, bareAfter)
    process.stdout.write(
      `tick ${tickSeconds.toFixed(2)} s (${tick.batches} batches); bare addBulk ${bareBefore.toFixed(2)} s before, ${bareAfter.toFixed(2)} s after\n`,
    )
    distributorRows.push(
      ['distributor: alerts due at one tick / batch size', `${DISTRIBUTOR_ALERTS} / ${batchSize}`],
      ['distributor tick (s)', tickSeconds.toFixed(2)],
      ['distributor (alerts/s)', String(Math.round(DISTRIBUTOR_ALERTS / tickSeconds))],
      ['bare addBulk of as many jobs, before / after (s)', `${bareBefore.toFixed(2)} / ${bareAfter.toFixed(2)}`],
      ['bare addBulk / distributor time', (bareSeconds / tickSeconds).toFixed(2)],
    )
    distributorResult = {
      alerts: DISTRIBUTOR_ALERTS,
      batchSize,
      batches: tick.batches,
      insertAndAnalyzeSeconds: round1(insertSeconds),
      tickSeconds: Number(tickSeconds.toFixed(3)),
      alertsPerSecond: Math.round(DISTRIBUTOR_ALERTS / tickSeconds),
      bareAddBulkSecondsBefore: Number(bareBefore.toFixed(3)),
      bareAddBulkSecondsAfter: Number(bareAfter.toFixed(3)),
      ratioBareToTick: Number((bareSeconds / tickSeconds).toFixed(3)),
      checked: { runs: Number(counts.runs), alertsWithARun: Number(counts.alerts), enqueued: Number(counts.enqueued), jobsWaiting: waiting },
    }
  }

  const rows: Row[] = [
    ['alerts per round / concurrency / eBay latency', `${ALERTS} / ${CONCURRENCY} / ${LATENCY_MS} ms`],
    ['rounds of each (after a warm-up of each)', String(ROUNDS)],
    ['bare loop, baseline, median (alerts/s)', String(Math.round(bareMedian))],
    ['end to end, median (alerts/s)', String(Math.round(e2eMedian))],
    [`end to end / bare (target >= ${RATIO_TARGET})`, `${ratio.toFixed(2)} ${ratio >= RATIO_TARGET ? '(met)' : '(NOT met)'}`],
    ['each round', roundRatios.map((r) => r.toFixed(2)).join(' ')],
    ['distributor tick per round, median (ms)', String(median(e2eRounds.map((r) => r.tickMs)))],
    ['last run stored, median (s)', median(e2eRounds.map((r) => r.lastRunStoredSeconds)).toFixed(2)],
    ['email lag after the last run, median (ms)', String(median(e2eRounds.map((r) => r.emailLagMs)))],
    ['emails delivered after the last run, median', String(median(e2eRounds.map((r) => r.emailsAfterLastRun)))],
    [
      'CPU per alert, end to end: worker / its postgres backends / ebay-sim / mail-sink (µs)',
      `${medianCpu(e2eRounds, 'worker') ?? '?'} / ${postgresMedian ?? '?'} / ${medianCpu(e2eRounds, 'ebay') ?? '?'} / ${medianCpu(e2eRounds, 'sink') ?? '?'}`,
    ],
    [
      'CPU per alert, bare: bench / ebay-sim / mail-sink (µs)',
      `${medianCpu(bareRounds, 'bench') ?? '?'} / ${medianCpu(bareRounds, 'ebay') ?? '?'} / ${medianCpu(bareRounds, 'sink') ?? '?'}`,
    ],
    ['CPU per alert, every process measured: bare / end to end (µs)', `${bareCpu ?? '?'} / ${e2eCpu ?? '?'}`],
    ['bare / end-to-end CPU per alert (the ratio if CPU were the only limit)', cpuRatio === null ? '?' : cpuRatio.toFixed(2)],
    ['load average (1 min) at start / end', `${round1(loadAtStart)} / ${round1(loadAverage1m())}`],
    ...distributorRows,
  ]
  printTable(rows)
  await writeResult('alerts', {
    benchmark: 'alerts',
    date: new Date().toISOString(),
    node: process.version,
    cpus: availableParallelism(),
    loadAverage1m: { atStart: round1(loadAtStart), atEnd: round1(loadAverage1m()) },
    alertsPerRound: ALERTS,
    concurrency: CONCURRENCY,
    ebayLatencyMs: LATENCY_MS,
    phrases: PHRASES,
    rounds: ROUNDS,
    batchSize: serviceConfig.ALERTS_BATCH_SIZE,
    endToEnd: {
      warmup: { bare: rounded(warmup.bare), endToEnd: rounded(warmup.endToEnd) },
      bareRounds: bareRounds.map(rounded),
      endToEndRounds: e2eRounds.map(rounded),
      roundRatios: roundRatios.map((r) => Number(r.toFixed(3))),
      bareAlertsPerSecond: Math.round(bareMedian),
      endToEndAlertsPerSecond: Math.round(e2eMedian),
      ratio: Number(ratio.toFixed(3)),
      ratioTarget: RATIO_TARGET,
      targetMet: ratio >= RATIO_TARGET,
      cpuUsPerAlert: { bare: bareCpu, endToEnd: e2eCpu },
      cpuRatio: cpuRatio === null ? null : Number(cpuRatio.toFixed(3)),
    },
    distributor: distributorResult,
  })
} catch (err) {
  process.exitCode = 1
  throw err
} finally {
  await runCleanup([
    ['processes', () => processes.stopAll()],
    ...closers.map((close, i): [string, () => Promise<unknown>] => [`client ${i + 1}`, close]),
    ['runs queue', () => runs.close()],
    ['bare queue', () => bareQueue.close()],
    ...schemaCleanup(db, schema),
    ...redisCleanup(redis),
  ])
}
