import assert from 'node:assert/strict'
import { describe, test } from 'node:test'
import { pino } from 'pino'
import { backoffDelay, FatalError, isPermanent, PermanentError, retry, RetryAbortedError } from '../../src/platform/retry.ts'

/** A logger that keeps each line's level and message. */
function recordingLog() {
  const lines: Array<{ level: number; msg: string; attempt?: number }> = []
  const log = pino({ level: 'debug' }, { write: (line: string) => void lines.push(JSON.parse(line) as (typeof lines)[number]) })
  return { log, lines }
}

describe('backoffDelay', () => {
  test('exponential ceiling, capped, fully jittered', () => {
    assert.deepEqual([0, 1, 2, 3, 4, 5].map((n) => backoffDelay(n, 100, 2000, () => 1)), [100, 200, 400, 800, 1600, 2000])
    assert.equal(backoffDelay(4, 100, 2000, () => 0), 0)
    assert.equal(backoffDelay(2, 100, 2000, () => 0.5), 200)
    assert.equal(backoffDelay(10_000, 100, 2000, () => 1), 2000, 'no overflow after many attempts')
    for (let i = 0; i < 100; i++) {
      const delay = backoffDelay(3, 100, 2000)
      assert.ok(delay >= 0 && delay <= 800)
    }
  })
})

describe('isPermanent', () => {
  test('PermanentError and PostgreSQL data refusals (SQLSTATE classes 22 and 23) are permanent; the rest is transient', () => {
    assert.equal(isPermanent(new PermanentError('bad input')), true)
    assert.equal(isPermanent(Object.assign(new Error('fk'), { code: '23503' })), true)
    assert.equal(isPermanent(Object.assign(new Error('nul'), { code: '22P05' })), true)
    assert.equal(isPermanent(Object.assign(new Error('down'), { code: '57P01' })), false)
    assert.equal(isPermanent(Object.assign(new Error('refused'), { code: 'ECONNREFUSED' })), false)
    assert.equal(isPermanent(new Error('plain')), false)
    assert.equal(isPermanent(null), false)
  })
})

describe('retry', () => {
  test('retries transient failures until the work succeeds, counting each retry', async () => {
    const retried: number[] = []
    let calls = 0
    const value = await retry(
      async (attempt) => {
        calls++
        if (attempt < 4) throw new Error(`failure ${attempt}`)
        return 'done'
      },
      { what: 'work', baseMs: 1, maxMs: 2, onRetry: (_err, attempt) => retried.push(attempt) },
    )
    assert.equal(value, 'done')
    assert.equal(calls, 4)
    assert.deepEqual(retried, [1, 2, 3])
  })

  test('a permanent failure is rethrown at once', async () => {
    let calls = 0
    const refused = new PermanentError('refused')
    await assert.rejects(
      retry(
        async () => {
          calls++
          throw refused
        },
        { what: 'work', baseMs: 1, isPermanent },
      ),
      (err) => err === refused,
    )
    assert.equal(calls, 1)
  })

  test('a FatalError is rethrown at once, without an isPermanent option', async () => {
    let calls = 0
    const lost = new FatalError('the store lost its data')
    await assert.rejects(
      retry(
        async () => {
          calls++
          throw lost
        },
        { what: 'work', baseMs: 1, maxAttempts: 3 },
      ),
      (err) => err === lost,
    )
    assert.equal(calls, 1)
  })

  test('maxAttempts rethrows the last failure', async () => {
    let calls = 0
    await assert.rejects(
      retry(
        async () => {
          calls++
          throw new Error(`failure ${calls}`)
        },
        { what: 'work', baseMs: 1, maxAttempts: 3 },
      ),
      /failure 3/,
    )
    assert.equal(calls, 3)
  })

  test('an abort during a delay ends it at once with a RetryAbortedError carrying the last failure', async () => {
    const controller = new AbortController()
    const started = Date.now()
    const failure = new Error('down')
    const running = retry(
      async () => {
        setImmediate(() => controller.abort())
        throw failure
      },
      { what: 'storing', signal: controller.signal, baseMs: 60_000, maxMs: 60_000, random: () => 1 },
    )
    await assert.rejects(running, (err) => {
      assert.ok(err instanceof RetryAbortedError)
      assert.equal(err.what, 'storing')
      assert.equal(err.cause, failure)
      assert.match(err.message, /storing: aborted while retrying/)
      return true
    })
    assert.ok(Date.now() - started < 5000, 'did not wait for the delay')
  })

  test('work in hand runs once even with an aborted signal; a failure then ends the retries', async () => {
    const controller = new AbortController()
    controller.abort()
    assert.equal(await retry(async () => 'ran', { what: 'work', signal: controller.signal }), 'ran')
    let calls = 0
    await assert.rejects(
      retry(
        async () => {
          calls++
          throw new Error('down')
        },
        { what: 'work', signal: controller.signal },
      ),
      RetryAbortedError,
    )
    assert.equal(calls, 1)
  })

  test('no delay ends after the deadline, and a failure asking for a longer wait gets it', async () => {
    const delays: number[] = []
    let now = 1000
    await retry(
      async (attempt) => {
        if (attempt === 1) throw new Error('down')
      },
      { what: 'work', baseMs: 10_000, maxMs: 10_000, random: () => 1, deadlineMs: 1005, now: () => now, onRetry: (_e, _a, d) => delays.push(d) },
    )
    now = 0
    await retry(
      async (attempt) => {
        if (attempt === 1) throw Object.assign(new Error('busy'), { retryAfter: 30 })
      },
      { what: 'work', baseMs: 1, maxMs: 1, random: () => 0, minDelayMs: (err) => (err as { retryAfter: number }).retryAfter, onRetry: (_e, _a, d) => delays.push(d) },
    )
    assert.deepEqual(delays, [5, 30])
  })

  test('logs the first failure and every tenth as warnings, the others at debug', async () => {
    const { log, lines } = recordingLog()
    await retry(
      async (attempt) => {
        if (attempt <= 20) throw new Error('down')
      },
      { what: 'storing', log, baseMs: 0, maxMs: 0 },
    )
    const warned = lines.filter((l) => l.level === 40).map((l) => l.attempt)
    const debug = lines.filter((l) => l.level === 20)
    assert.deepEqual(warned, [1, 10, 20])
    assert.equal(debug.length, 17)
    assert.equal(lines[0]!.msg, 'storing failed, retrying')
  })
})
