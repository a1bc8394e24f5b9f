/**
 * The pages of the alerts in a real headless Chromium (Debian's `chromium`, driven by
 * playwright-core), each under its Content-Security-Policy with no violation:
 * - the queue board, as an operator uses it: opens /admin/queues, is sent to the sign-in
 *   page, types the admin token, lands on the board, which draws the alerts' queues and a
 *   delayed job; signs out and is sent back;
 * - an email's unsubscribe link: the page asks, its button unsubscribes.
 *
 * The browser is `/usr/bin/chromium` (or CHROMIUM_PATH). Without it the test fails: it
 * is never skipped.
 */
import assert from 'node:assert/strict'
import { existsSync } from 'node:fs'
import { after, before, describe, it } from 'node:test'
import { type Browser, chromium, type Page } from 'playwright-core'
import { createUnsubscribeSigner, RUNS_QUEUE, TICKS_QUEUE, unsubscribeUrl } from '../../src/alerts/index.ts'
import { createLogger } from '../../src/platform/logger.ts'
import { openQueue, type OpenQueue } from '../../src/platform/queues.ts'
import { openAlertsApi } from '../helpers/alerts-api.ts'
import { testRedisUrl } from '../helpers/infra.ts'
import type { TradingApi } from '../helpers/trading.ts'

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium'
const missingChromium =
  `no Chromium at ${CHROMIUM}: install Debian's package (apt-get install -y --no-install-recommends chromium) ` +
  'or set CHROMIUM_PATH'

let api: TradingApi
let baseUrl: string
let runs: OpenQueue<unknown>
let browser: Browser
let page: Page
const pageErrors: string[] = []
const policyErrors: string[] = []

before(async () => {
  api = await openAlertsApi()
  baseUrl = await api.app.listen({ port: 0, host: '127.0.0.1' })
  runs = openQueue(RUNS_QUEUE, { url: testRedisUrl, prefix: api.config.QUEUE_PREFIX, log: createLogger({ level: 'silent', pretty: false }) })
  await runs.queue.add('run', { alertId: '7' }, { jobId: 'alert-7-0', delay: 3_600_000 })
})
after(async () => {
  await browser?.close()
  await runs?.close()
  await api?.close()
})

it('finds Chromium', () => {
  assert.ok(existsSync(CHROMIUM), missingChromium)
})

describe('the queue board in Chromium', () => {
  before(async () => {
    if (!existsSync(CHROMIUM)) throw new Error(missingChromium)
    // Root (CI, containers) needs --no-sandbox.
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] })
    page = await browser.newPage()
    page.setDefaultTimeout(15_000)
    page.on('pageerror', (err) => pageErrors.push(err.message))
    page.on('console', (message) => {
      if (message.type() === 'error' && /Content Security Policy/i.test(message.text())) policyErrors.push(message.text())
    })
  })

  it('sends an operator to the sign-in page, then to the board, which shows the queues', async () => {
    await page.goto(`${baseUrl}/admin/queues`)
    assert.equal(new URL(page.url()).pathname, '/admin/login')
    await page.getByLabel('Admin token').fill(api.tokens.user1)
    await page.getByRole('button', { name: 'Sign in' }).click()
    await page.getByText('This is not an admin token.').waitFor()

    await page.getByLabel('Admin token').fill(api.tokens.admin)
    await page.getByRole('button', { name: 'Sign in' }).click()
    await page.waitForURL(`${baseUrl}/admin/queues`)
    await page.getByText(TICKS_QUEUE, { exact: true }).first().waitFor()
    await page.getByText(RUNS_QUEUE, { exact: true }).first().waitFor()
    const cookies = await page.context().cookies()
    const session = cookies.find((c) => c.name === 'bourse_admin')
    assert.ok(session)
    assert.equal(session.httpOnly, true)
    assert.equal(session.sameSite, 'Strict')
    assert.equal(session.path, '/admin')
    assert.deepEqual(pageErrors, [])
    assert.deepEqual(policyErrors, [])
  })

  it("opens a queue's delayed jobs", async () => {
    await page.goto(`${baseUrl}/admin/queues/queue/${RUNS_QUEUE}?status=delayed`)
    await page.getByText('alert-7-0').first().waitFor()
    assert.deepEqual(pageErrors, [])
    assert.deepEqual(policyErrors, [])
  })

  it('signs out, back to the sign-in page', async () => {
    await page.goto(`${baseUrl}/admin/logout`)
    assert.equal(new URL(page.url()).pathname, '/admin/login')
    await page.goto(`${baseUrl}/admin/queues`)
    assert.equal(new URL(page.url()).pathname, '/admin/login')
  })
})

describe('an unsubscribe link in Chromium', () => {
  it('asks first, then unsubscribes with the button', async () => {
    const created = await api.app.inject({
      method: 'POST',
      url: '/api/alerts',
      headers: api.auth(api.tokens.user1),
      payload: { email: 'ada@example.com', phrase: 'fountain <pen>', frequency_minutes: 10 },
    })
    const alert = created.json() as { id: string }
    const link = unsubscribeUrl(baseUrl, await createUnsubscribeSigner(api.testDb.db).tokenFor(alert.id))
    const status = async () => {
      const res = await api.app.inject({ method: 'GET', url: `/api/alerts/${alert.id}`, headers: api.auth(api.tokens.user1) })
      return (res.json() as { status: string }).status
    }
    await page.goto(link)
    await page.getByText('Stop the emails for the search “fountain <pen>”?').waitFor()
    assert.equal(await status(), 'active')
    // The inline style sheet applies: its hash is in the page's policy.
    assert.equal(await page.evaluate("getComputedStyle(document.querySelector('main')).maxWidth"), '512px')
    await page.getByRole('button', { name: 'Unsubscribe' }).click()
    await page.getByRole('heading', { name: 'Unsubscribed' }).waitFor()
    assert.equal(new URL(page.url()).pathname, new URL(link).pathname)
    assert.equal(await status(), 'paused')
    assert.deepEqual(pageErrors, [])
    assert.deepEqual(policyErrors, [])
  })
})
