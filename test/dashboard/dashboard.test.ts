/**
 * The dashboard in a real headless Chromium (Debian's `chromium`, driven by
 * playwright-core) over real services: `api`, `price-updater`, `verifier` and `verify-sim`
 * as processes on the test's Redis database, PostgreSQL schema and Kafka topics. The test
 * signs in through the link the demo prints, then:
 * - the charts draw the stocks, and a tick produced during the test reaches its chart;
 * - an order placed through the API shows as filled once the verifier has filled it;
 * - a service SIGKILLed turns red within its heartbeat's TTL;
 * - the page is usable at 1280x800 and at a phone's 390x844 (no sideways scrolling).
 * Screenshots go to test-results/ (kept by CI, ignored by git). Without Chromium the
 * test fails: it is never skipped.
 */
import assert from 'node:assert/strict'
import { existsSync, mkdirSync } from 'node:fs'
import { join } from 'node:path'
import { after, before, test } from 'node:test'
import type { Redis } from 'ioredis'
import { type Browser, chromium, type Page } from 'playwright-core'
import { createApiToken } from '../../src/auth/index.ts'
import { createAccounts, projectUser } from '../../src/trading/index.ts'
import { openTestDb, type TestDb } from '../helpers/db.ts'
import { closeTestRedis, createTestTopic, openTestRedis, repoRoot, testEnv, uniqueName, waitFor } from '../helpers/infra.ts'
import { produceTicks } from '../helpers/market.ts'
import { type ServiceProcess, startService } from '../helpers/processes.ts'

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium'
const SHOTS = join(repoRoot, 'test-results')
/** Heartbeats of the services under test: a beat every 2 s, so a TTL of 6 s (the page reads the status every 2 s). */
const HEARTBEAT_MS = 2000

let testDb: TestDb
let redis: Redis
let browser: Browser
let page: Page
let apiUrl = ''
let adminToken = ''
let userToken = ''
const market = uniqueName('dash-market')
const orders = uniqueName('dash-orders')
const events = uniqueName('dash-events')
const services: ServiceProcess[] = []
const cleanups: Array<() => Promise<unknown>> = []
const pageErrors: string[] = []

/** hhmmss of now, UTC (the tick times the charts place on today). */
const nowTime = (offsetSeconds = 0) => new Date(Date.now() + offsetSeconds * 1000).toISOString().slice(11, 19).replaceAll(':', '')

before(async () => {
  assert.ok(existsSync(CHROMIUM), `no Chromium at ${CHROMIUM}: apt-get install -y --no-install-recommends chromium, or set CHROMIUM_PATH`)
  mkdirSync(SHOTS, { recursive: true })
  testDb = await openTestDb()
  redis = await openTestRedis()
  for (const topic of [market, orders, events]) cleanups.push(await createTestTopic(topic, 1))
  const [user] = await createAccounts(testDb.db, [{ id: 'user1', credit: 1_000_000 }])
  await projectUser(redis, user!)
  adminToken = (await createApiToken(testDb.db, { admin: true })).token
  userToken = (await createApiToken(testDb.db, { userId: 'user1' })).token
  const env = testEnv({
    ...testDb.env,
    MARKET_TOPIC: market,
    ORDERS_TOPIC: orders,
    EVENTS_TOPIC: events,
    HEARTBEAT_INTERVAL_MS: String(HEARTBEAT_MS),
    VERIFY_TIMEOUT_MS: '2000',
    // The dashboard polls about 50 times a minute; the test's own calls come on top.
    RATE_LIMIT_MAX: '1000',
  })
  const start = (args: string[]) => {
    const service = startService(args, env)
    services.push(service)
    return service
  }
  const sim = start(['verify-sim', '--port', '0', '--time-scale', '0.002'])
  const [, verifyUrl] = await sim.waitForOutput(/listening on (http:\/\/\S+)/, 60_000)
  env.VERIFY_URL = `${verifyUrl}`
  start(['price-updater', '--topic', market, '--group', uniqueName('dash-g')])
  start(['verifier', '--group', uniqueName('dash-v')])
  const api = start(['api', '--port', '0'])
  const [, url] = await api.waitForOutput(/api listening on (http:\/\/\S+?) /, 60_000)
  apiUrl = url!
  // Two stocks with a few ticks before the page opens.
  const t = Date.now() / 1000
  const earlier = (s: number) => new Date((t - s) * 1000).toISOString().slice(11, 19).replaceAll(':', '')
  await produceTicks(market, [
    { time: earlier(180), stock: 'stock1', price: 100 },
    { time: earlier(120), stock: 'stock1', price: 104 },
    { time: earlier(60), stock: 'stock1', price: 101 },
    { time: earlier(170), stock: 'stock2', price: 50 },
    { time: earlier(50), stock: 'stock2', price: 52 },
  ])
  await waitFor(async () => {
    const res = await fetch(`${apiUrl}/api/stocks`, { headers: { authorization: `Bearer ${adminToken}` } })
    const body = (await res.json()) as { items?: Array<{ stock: string; ticks: number }> }
    return body.items?.length === 2 && body.items.every((s) => s.ticks >= 2) ? true : undefined
  }, { what: 'the first ticks applied', timeoutMs: 60_000 })

  browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] })
  page = await browser.newPage({ viewport: { width: 1280, height: 800 } })
  page.on('pageerror', (err) => pageErrors.push(err.message))
  page.on('console', (message) => {
    if (message.type() === 'error') pageErrors.push(message.text())
  })
})

after(async () => {
  await browser?.close()
  for (const service of services) await service.kill()
  for (const cleanup of cleanups.reverse()) await cleanup().catch((err: unknown) => console.warn('cleanup failed', err))
  await closeTestRedis(redis)
  await testDb.close()
})

test('the dashboard signs in from the demo link and charts the stocks; a tick produced now reaches its chart', async () => {
  await page.goto(`${apiUrl}/dashboard#token=${adminToken}`)
  // The token left the address bar at once (it stays in this tab's sessionStorage).
  assert.equal(new URL(page.url()).hash, '')
  await page.locator('.chart[data-stock="stock1"] canvas').first().waitFor({ timeout: 30_000 })
  await page.locator('.chart[data-stock="stock2"] canvas').first().waitFor({ timeout: 30_000 })
  await page.locator('#stocks tbody tr[data-stock="stock1"]').waitFor({ timeout: 30_000 })
  assert.equal(await page.locator('#live').textContent({ timeout: 30_000 }), 'live')

  const time = nowTime()
  await produceTicks(market, [{ time, stock: 'stock1', price: 123.45 }])
  const chart = page.locator('.chart[data-stock="stock1"]')
  await page.locator(`.chart[data-stock="stock1"][data-last-time="${time}"]`).waitFor({ timeout: 30_000 })
  assert.equal(await chart.getAttribute('data-last-price'), '123.45')
  // The table's row follows the stream too, and the library's attribution is on the page.
  assert.equal(await page.locator('#stocks tbody tr[data-stock="stock1"] td').nth(1).textContent(), '123.45')
  assert.equal(await page.locator('footer a[href="https://www.tradingview.com/"]').count(), 1)
  await page.screenshot({ path: join(SHOTS, 'dashboard-1280x800.png'), fullPage: true })
})

test('an order placed through the API appears, then shows as filled', async () => {
  const res = await fetch(`${apiUrl}/api/orders`, {
    method: 'POST',
    headers: { authorization: `Bearer ${userToken}`, 'content-type': 'application/json' },
    body: JSON.stringify({ user: 'user1', stockname: 'stock1', quantity: 3, side: 'buy' }),
  })
  assert.equal(res.status, 202, await res.clone().text())
  const { order_id: id } = (await res.json()) as { order_id: string }
  await page.locator(`#order-table tr[data-order="${id}"][data-status="filled"]`).waitFor({ timeout: 60_000 })
  const filled = await page.locator('#order-flow li[data-state="filled"] strong').textContent()
  assert.ok(Number(filled) >= 1, `filled count ${filled}`)
})

test('a SIGKILLed service turns red within its heartbeat TTL', async () => {
  const victim = startService(['mail-sink', '--port', '0', '--http', '0', '--instance-id', 'dash-victim'], testEnv({ HEARTBEAT_INTERVAL_MS: String(HEARTBEAT_MS) }))
  services.push(victim)
  await page.locator('#instances tr[data-instance="dash-victim"][data-state="live"]').waitFor({ timeout: 30_000 })
  victim.child.kill('SIGKILL')
  const killedAt = Date.now()
  // Stale (the beats stopped) or gone from the heartbeats (the key expired).
  await page.waitForFunction(
    () => {
      // Runs in the page (the tests' types have no DOM).
      const tr = (globalThis as unknown as { document: { querySelector(s: string): { getAttribute(n: string): string | null } | null } }).document.querySelector(
        '#instances tr[data-instance="dash-victim"]',
      )
      return !tr || tr.getAttribute('data-state') !== 'live'
    },
    undefined,
    { timeout: 30_000, polling: 100 },
  )
  const redAfterMs = Date.now() - killedAt
  const ttlMs = HEARTBEAT_MS * 3
  // One look at the table: the page refreshes it every second, and the victim's row goes
  // once its heartbeat key expires (between two separate looks it could be there, then gone).
  const seen = await page.evaluate(() => {
    // Runs in the page (the tests' types have no DOM).
    type Row = { getAttribute(n: string): string | null; querySelector(s: string): unknown }
    const doc = (globalThis as unknown as { document: { querySelector(s: string): Row | null; querySelectorAll(s: string): { length: number } } }).document
    const view = globalThis as unknown as { getComputedStyle(e: unknown): { color: string } }
    const victim = doc.querySelector('#instances tr[data-instance="dash-victim"]')
    const cell = victim?.querySelector('td')
    return {
      stale: doc.querySelectorAll('#instances tr[data-state="stale"]').length,
      victim: victim ? { class: victim.getAttribute('class'), color: cell ? view.getComputedStyle(cell).color : null } : null,
    }
  })
  // Only the victim is red: the other services, beating, stayed live all along.
  assert.equal(seen.stale, seen.victim ? 1 : 0)
  // Red at the TTL after the last beat (the page works the age out every second).
  assert.ok(redAfterMs <= ttlMs + 1500, `red ${redAfterMs} ms after the kill (TTL ${ttlMs} ms)`)
  if (seen.victim) {
    assert.equal(seen.victim.class, 'stale')
    assert.equal(seen.victim.color, 'rgb(176, 0, 32)')
  }
  await page.screenshot({ path: join(SHOTS, 'dashboard-service-down.png'), fullPage: true })
})

test('usable on a phone-sized viewport: nothing wider than the screen, the charts and tables still there', async () => {
  await page.setViewportSize({ width: 390, height: 844 })
  // The charts follow their boxes (autoSize) once the layout has changed.
  await waitFor(async () => {
    const box = await page.locator('.chart[data-stock="stock1"]').boundingBox()
    return box && box.width <= 390 ? true : undefined
  }, { what: 'the layout at 390 px', timeoutMs: 10_000 })
  const overflow = await page.evaluate<number>('document.documentElement.scrollWidth - document.documentElement.clientWidth')
  assert.ok(overflow <= 0, `the page scrolls sideways by ${overflow}px`)
  const chartBox = await page.locator('.chart[data-stock="stock1"]').boundingBox()
  assert.ok(chartBox && chartBox.width > 200 && chartBox.width <= 390, `chart width ${chartBox?.width}`)
  assert.ok(await page.locator('#instances').isVisible())
  await page.screenshot({ path: join(SHOTS, 'dashboard-390x844.png'), fullPage: true })
  assert.deepEqual(pageErrors, [])
})
