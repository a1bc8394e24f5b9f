/** The environment is validated once, at start, and every bad variable is named. */
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import type { Redis } from 'ioredis'
import { ConfigError, kafkaBrokers, loadConfig } from '../../src/platform/config.ts'
import { closeTestRedis, openTestRedis, runCli, testEnv } from '../helpers/infra.ts'

/** The ConfigError thrown for an environment; fails the test when there is none. */
function configError(env: NodeJS.ProcessEnv): ConfigError {
  try {
    loadConfig(env)
  } catch (err) {
    assert.ok(err instanceof ConfigError, `expected a ConfigError, got ${String(err)}`)
    return err
  }
  assert.fail(`expected a ConfigError for ${JSON.stringify(env)}`)
}

describe('loadConfig', () => {
  it('has defaults for a local machine', () => {
    const config = loadConfig({})
    assert.equal(config.REDIS_URL, 'redis://127.0.0.1:6379/0')
    assert.equal(config.KAFKA_BROKERS, '127.0.0.1:9092')
    assert.equal(config.DATABASE_URL, 'postgres://postgres@127.0.0.1:5432/bourse')
    assert.equal(config.MARKET_TOPIC, 'main_topic')
    assert.equal(config.LOG_LEVEL, 'info')
    assert.equal(config.MARKET_TOPIC_PARTITIONS, 3)
    assert.equal(config.PERFORMANCE_COST_MS, 3000)
    assert.ok(Number.isInteger(config.PERFORMANCE_WORKERS) && config.PERFORMANCE_WORKERS >= 1)
    assert.deepEqual(kafkaBrokers(config), ['127.0.0.1:9092'])
  })

  it('points the eBay settings at the local simulation by default', () => {
    const config = loadConfig({})
    assert.equal(config.EBAY_BASE_URL, 'http://127.0.0.1:8200')
    assert.equal(config.EBAY_CLIENT_ID, 'bourse-sim')
    assert.equal(config.EBAY_CLIENT_SECRET, 'bourse-sim-secret')
    assert.equal(config.EBAY_MARKETPLACE_ID, 'EBAY_US')
    assert.equal(config.EBAY_TIMEOUT_MS, 10_000)
    assert.equal(config.BTC_CAP, '100')
    assert.equal(config.BTC_PRICE_MAX_AGE_MS, 60_000)
  })

  it('treats empty and blank values as unset', () => {
    const config = loadConfig({ REDIS_URL: '', MARKET_TOPIC: '   ' })
    assert.equal(config.REDIS_URL, 'redis://127.0.0.1:6379/0')
    assert.equal(config.MARKET_TOPIC, 'main_topic')
  })

  it('returns a frozen object', () => {
    const config = loadConfig({})
    assert.ok(Object.isFrozen(config))
    assert.throws(() => {
      ;(config as { MARKET_TOPIC: string }).MARKET_TOPIC = 'other'
    }, TypeError)
    assert.equal(config.MARKET_TOPIC, 'main_topic')
  })

  it('takes overrides, converting whole numbers', () => {
    const config = loadConfig({
      REDIS_URL: 'rediss://cache.example:6380/2',
      KAFKA_BROKERS: 'k1:9092,k2:19092',
      DATABASE_URL: 'postgresql://u:p@db:5433/x',
      LOG_LEVEL: 'debug',
      MARKET_TOPIC: 'prices.v2',
      PERFORMANCE_COST_MS: ' 0 ',
      PERFORMANCE_WORKERS: '7',
    })
    assert.equal(config.REDIS_URL, 'rediss://cache.example:6380/2')
    assert.deepEqual(kafkaBrokers(config), ['k1:9092', 'k2:19092'])
    assert.equal(config.DATABASE_URL, 'postgresql://u:p@db:5433/x')
    assert.equal(config.LOG_LEVEL, 'debug')
    assert.equal(config.MARKET_TOPIC, 'prices.v2')
    assert.equal(config.PERFORMANCE_COST_MS, 0)
    assert.equal(config.PERFORMANCE_WORKERS, 7)
  })

  const malformed: Array<[string, string]> = [
    ['REDIS_URL', 'http://x'],
    ['KAFKA_BROKERS', 'nohost'],
    ['KAFKA_BROKERS', 'a:1,,b:2'],
    ['DATABASE_URL', 'mysql://db/x'],
    ['PERFORMANCE_COST_MS', 'abc'],
    ['PERFORMANCE_WORKERS', '0'],
    ['PERFORMANCE_WORKERS', '2.9'],
    ['PERFORMANCE_WORKERS', 'true'],
    ['MARKET_TOPIC_PARTITIONS', '0x10'],
    ['LOG_LEVEL', 'loud'],
    ['MARKET_TOPIC', 'bad topic'],
    ['INSIGHT_DROP_PERCENT', '0'],
    ['INSIGHT_DROP_PERCENT', '0.00'],
    ['INSIGHT_DROP_PERCENT', '100.01'],
    ['INSIGHT_DROP_PERCENT', '101'],
    ['INSIGHT_DROP_PERCENT', '-5'],
    ['INSIGHT_DROP_PERCENT', '10%'],
    ['INSIGHT_DROP_PERCENT', '1e1'],
    ['INSIGHT_DROP_PERCENT', '.5'],
    ['INSIGHT_DROP_PERCENT', '05'],
    ['INSIGHT_WINDOW_MS', '0'],
    ['INSIGHT_FLAT_MS', '2 days'],
    ['INSIGHT_MIN_INTERVAL_MS', '-1'],
    ['EBAY_BASE_URL', 'api.ebay.com'],
    ['EBAY_MARKETPLACE_ID', 'US'],
    ['EBAY_MARKETPLACE_ID', 'ebay_us'],
    ['EBAY_TIMEOUT_MS', '50'],
    ['SMTP_URL', 'http://mail.example'],
    ['SMTP_TIMEOUT_MS', '0'],
    ['MAIL_FROM', 'alerts'],
    ['MAIL_FROM', 'Smith, Jo <jo@bourse.example>'],
    ['MAIL_FROM', 'a@bourse.example, b@bourse.example'],
    ['MAIL_FROM', 'Bourse <a@bourse.example>\r\nBcc: b@bourse.example'],
    ['PUBLIC_URL', 'ftp://bourse.example'],
    ['BTC_CAP', '-1'],
    ['BTC_CAP', '1e2'],
    ['BTC_CAP', '0.123456789'],
    ['BTC_PRICE_MAX_AGE_MS', '999'],
  ]
  for (const [variable, value] of malformed) {
    it(`refuses ${variable}=${JSON.stringify(value)}, naming the variable`, () => {
      const err = configError({ [variable]: value })
      assert.deepEqual(
        err.problems.map((p) => p.variable),
        [variable],
      )
      const quoted = JSON.stringify(value).replace(/[.*+?^${}()|[\]\\]/g, '\\$&')
      assert.match(err.message, new RegExp(`^  ${variable}: .*\\(got ${quoted}\\)$`, 'm'))
    })
  }

  it('has insight defaults of 10%, two days and one day, and takes decimal percentages', () => {
    const config = loadConfig({})
    assert.equal(config.INSIGHT_DROP_PERCENT, '10')
    assert.equal(config.INSIGHT_WINDOW_MS, 172_800_000)
    assert.equal(config.INSIGHT_FLAT_MS, 172_800_000)
    assert.equal(config.INSIGHT_MIN_INTERVAL_MS, 86_400_000)
    for (const percent of ['0.5', '0.01', '7.25', '99.999', '100', '100.0']) {
      assert.equal(loadConfig({ INSIGHT_DROP_PERCENT: percent }).INSIGHT_DROP_PERCENT, percent)
    }
    assert.equal(loadConfig({ INSIGHT_MIN_INTERVAL_MS: '0' }).INSIGHT_MIN_INTERVAL_MS, 0)
  })

  it('has mail settings for the local mail sink, and takes a sender with or without a name', () => {
    const config = loadConfig({})
    assert.equal(config.SMTP_URL, 'smtp://127.0.0.1:1025')
    assert.equal(config.MAIL_FROM, 'Bourse alerts <alerts@bourse.localhost>')
    assert.equal(config.SMTP_TIMEOUT_MS, 10000)
    assert.equal(config.PUBLIC_URL, 'http://127.0.0.1:8000')
    for (const from of ['alerts@bourse.example', 'Bourse <alerts@bourse.example>', '"Bourse, alerts" <alerts@bourse.example>']) {
      assert.equal(loadConfig({ MAIL_FROM: from }).MAIL_FROM, from)
    }
    const smtps = loadConfig({ SMTP_URL: 'smtps://user:p%40ss@smtp.example:465', PUBLIC_URL: 'https://bourse.example/api' })
    assert.equal(smtps.SMTP_URL, 'smtps://user:p%40ss@smtp.example:465')
    assert.equal(smtps.PUBLIC_URL, 'https://bourse.example/api')
  })

  it('says what a variable with a pattern expects, not the pattern', () => {
    const err = configError({ MAIL_FROM: 'alerts', SMTP_URL: 'http://mail.example' })
    assert.match(err.message, /^ {2}MAIL_FROM: must be an email address, or Name <address> .*\(got "alerts"\)$/m)
    assert.match(err.message, /^ {2}SMTP_URL: must be a URL \(smtp or smtps\) such as smtp:\/\/.*\(got "http:\/\/mail\.example"\)$/m)
    assert.doesNotMatch(err.message, /pattern/)
  })

  it('names every bad variable at once', () => {
    const err = configError({
      REDIS_URL: 'notaurl',
      LOG_LEVEL: 'loud',
      PERFORMANCE_WORKERS: '2.9',
      MARKET_TOPIC: 'bad topic',
      KAFKA_BROKERS: '127.0.0.1:9092',
    })
    const bad = ['REDIS_URL', 'LOG_LEVEL', 'PERFORMANCE_WORKERS', 'MARKET_TOPIC']
    assert.deepEqual(new Set(err.problems.map((p) => p.variable)), new Set(bad))
    for (const variable of bad) {
      assert.match(err.message, new RegExp(`^  ${variable}: `, 'm'))
    }
    assert.doesNotMatch(err.message, /KAFKA_BROKERS/)
  })
})

describe('a service started with a bad environment', () => {
  let redis: Redis
  let dir: string
  let csv: string
  before(async () => {
    redis = await openTestRedis()
    dir = mkdtempSync(join(tmpdir(), 'bourse-config-'))
    csv = join(dir, 'x.csv')
    writeFileSync(csv, 'Time,Stock,Price\n090000,stock1,10\n')
  })
  after(async () => {
    await closeTestRedis(redis)
    rmSync(dir, { recursive: true, force: true })
  })

  it('exits 78 naming REDIS_URL, and writes nothing', async () => {
    assert.equal(await redis.dbsize(), 0)
    const result = await runCli(['update-prices', '--csv', csv], testEnv({ REDIS_URL: 'notaurl' }))
    assert.equal(result.code, 78, result.stderr)
    assert.match(result.stderr, /REDIS_URL/)
    assert.match(result.stderr, /notaurl/)
    assert.equal(await redis.dbsize(), 0)
  })

  it('checks the whole environment before connecting to a good Redis', async () => {
    // REDIS_URL points at the test database here: only the check can keep it empty.
    const result = await runCli(['update-prices', '--csv', csv], testEnv({ LOG_LEVEL: 'loud' }))
    assert.equal(result.code, 78, result.stderr)
    assert.match(result.stderr, /LOG_LEVEL/)
    assert.equal(await redis.dbsize(), 0)
  })
})
