/**
 * The admin page at /admin/events in a real headless Chromium (Debian's `chromium`
 * package, driven by playwright-core): the API is booted on a free port with its own
 * schema, events and errors are written straight into PostgreSQL, and the test uses the
 * page as an operator would: pastes an admin token, filters by session and by category,
 * pages with "Next", opens the errors and reads their reasons.
 *
 * The browser is `/usr/bin/chromium` (or CHROMIUM_PATH). Without it the test fails: it
 * is never skipped.
 */
import assert from 'node:assert/strict'
import { existsSync } from 'node:fs'
import { after, before, describe, it } from 'node:test'
import { type Browser, chromium, type Page } from 'playwright-core'
import { createApp } from '../../src/events/apps.repository.ts'
import { type EventRowSpec, insertEventErrorRows, insertEventRows, microsAfter } from '../helpers/event-rows.ts'
import { type EventsApi, openEventsApi } from '../helpers/events.ts'
import { uniqueName } from '../helpers/infra.ts'

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium'
const T0 = '2021-03-01T12:00:00.000Z'

let api: EventsApi
let baseUrl: string
let browser: Browser
let page: Page
let appB: { id: string; name: string }
/** Session A's 25 event ids, newest first. */
let sessionA: string[]
const pageErrors: string[] = []
const consoleErrors: string[] = []

const missingChromium =
  `no Chromium at ${CHROMIUM}: install Debian's package (apt-get install -y --no-install-recommends chromium) ` +
  'or set CHROMIUM_PATH'

before(async () => {
  api = await openEventsApi()
  baseUrl = await api.app.listen({ port: 0, host: '127.0.0.1' })
  const db = api.testDb.db
  appB = await createApp(db, uniqueName('blog'))
  const specs: EventRowSpec[] = []
  // Session A: 25 pageviews of the test's application, 1 µs apart.
  for (let i = 0; i < 25; i++) {
    specs.push({ appId: api.appId, sessionId: 'sess-A', at: microsAfter(T0, i), data: { host: 'shop', path: `/p/${i}` } })
  }
  // Session B: 5 form submits of the other application, later.
  for (let i = 0; i < 5; i++) {
    specs.push({
      appId: appB.id,
      sessionId: 'sess-B',
      category: 'form interaction',
      name: 'submit',
      at: microsAfter(T0, 1_000_000 + i),
      data: { host: 'blog', path: '/contact', form: { first_name: 'Ada', last_name: 'Lovelace' } },
    })
  }
  // Markup in the data must show as text, never run.
  specs.push({
    appId: api.appId,
    sessionId: 'sess-X',
    name: 'cta click',
    at: microsAfter(T0, 2_000_000),
    data: { host: '<img src=x onerror="window.__xss=1">', path: '<script>window.__xss=2</script>', element: 'button' },
  })
  const ids = await insertEventRows(db, specs)
  sessionA = ids.slice(0, 25).reverse()
  await insertEventErrorRows(db, [
    { appId: api.appId, sessionId: 'sess-A', storedAt: microsAfter(T0, 10), reasons: [{ field: '/data/host', message: 'is required' }] },
    {
      appId: api.appId,
      sessionId: 'sess-A',
      name: 'cta click',
      storedAt: microsAfter(T0, 20),
      reasons: [
        { field: '/data/element', message: 'is required' },
        { field: '/timestamp', message: 'is in the future' },
      ],
    },
    {
      appId: appB.id,
      sessionId: 'sess-B',
      category: 'form interaction',
      name: 'submit',
      storedAt: microsAfter(T0, 30),
      reasons: [{ field: '/data/form/last_name', message: 'must be string' }],
    },
  ])
})
after(async () => {
  await browser?.close()
  await api?.close()
})

/** Runs `action`, then waits for the page to have rendered the API's answer. */
async function loaded(action: () => Promise<unknown>): Promise<void> {
  const answered = page.waitForResponse((response) => new URL(response.url()).pathname.startsWith('/api/'))
  await action()
  await answered
  await page.locator('#status', { hasNotText: 'Loading...' }).waitFor()
}

const status = () => page.locator('#status').textContent()
const rows = () => page.locator('#results tbody tr')
async function rowIds(): Promise<string[]> {
  const all = await rows().all()
  return Promise.all(all.map(async (row) => (await row.getAttribute('data-id')) ?? ''))
}
/** The texts of column `n` (1-based) of every row. */
const column = (n: number) => page.locator(`#results tbody tr td:nth-child(${n})`).allTextContents()
const filter = (label: string) => page.getByLabel(label, { exact: true })

// A failing test of its own (not only cancelled ones) when the browser is missing.
it('finds Chromium', () => {
  assert.ok(existsSync(CHROMIUM), missingChromium)
})

describe('the admin page in Chromium', () => {
  before(async () => {
    if (!existsSync(CHROMIUM)) throw new Error(missingChromium)
    // Root (CI, containers) needs --no-sandbox.
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] })
    page = await browser.newPage()
    page.setDefaultTimeout(15_000)
    page.on('pageerror', (err) => pageErrors.push(err.message))
    page.on('console', (message) => {
      if (message.type() === 'error') consoleErrors.push(message.text())
    })
  })

  it('is served with a strict policy and asks for a token', async () => {
    const response = await page.goto(`${baseUrl}/admin/events`)
    assert.equal(response?.status(), 200)
    assert.match(response?.headers()['content-security-policy'] ?? '', /script-src 'self'/)
    assert.match((await status()) ?? '', /Enter an admin token/)
    assert.equal(await rows().count(), 0)
  })

  it('shows every event, newest first, once an admin token is pasted; keeps the token in sessionStorage only', async () => {
    await filter('Admin token').fill(api.tokens.admin)
    await loaded(() => page.getByRole('button', { name: 'Use token' }).click())
    assert.match((await status()) ?? '', /^31 events on page 1, last page/)
    assert.equal(await rows().count(), 31)
    assert.deepEqual((await column(3)).slice(0, 2), ['sess-X', 'sess-B'])
    assert.equal(await filter('Admin token').inputValue(), '', 'the token field is emptied')
    assert.equal(await page.evaluate("sessionStorage.getItem('bourse.eye.adminToken')"), api.tokens.admin)
    assert.equal(await page.evaluate('localStorage.length'), 0)
    assert.ok(!page.url().includes(api.tokens.admin))
    // A reload in the same tab still has it.
    await loaded(() => page.reload())
    assert.equal(await rows().count(), 31)
  })

  it('shows markup in event data as text', async () => {
    const data = await column(6)
    assert.ok(data.some((text) => text.includes('<img src=x onerror=') && text.includes('<script>window.__xss=2</script>')), data.join('\n'))
    assert.equal(await page.evaluate('window.__xss'), undefined)
  })

  it('filters by session and pages with Next until the last page', async () => {
    await filter('Session').fill('sess-A')
    await page.getByLabel('Page size').selectOption('10')
    await loaded(() => page.getByRole('button', { name: 'Search' }).click())
    const seen: string[] = []
    const sizes: number[] = []
    for (let n = 1; ; n++) {
      assert.match((await status()) ?? '', new RegExp(`on page ${n}`))
      assert.deepEqual([...new Set(await column(3))], ['sess-A'])
      seen.push(...(await rowIds()))
      sizes.push(await rows().count())
      if (await page.getByRole('button', { name: 'Next' }).isDisabled()) break
      await loaded(() => page.getByRole('button', { name: 'Next' }).click())
      assert.ok(n < 10)
    }
    assert.deepEqual(sizes, [10, 10, 5])
    assert.deepEqual(seen, sessionA, 'each event once, newest first')
    assert.match((await status()) ?? '', /last page/)
    await loaded(() => page.getByRole('button', { name: 'First page' }).click())
    assert.deepEqual(await rowIds(), sessionA.slice(0, 10))
  })

  it('filters by category (and by a session clicked in the table)', async () => {
    await filter('Session').fill('')
    await filter('Category').fill('form interaction')
    await loaded(() => page.getByRole('button', { name: 'Search' }).click())
    assert.equal(await rows().count(), 5)
    assert.deepEqual([...new Set(await column(4))], ['form interaction'])
    assert.deepEqual([...new Set(await column(2))], [appB.name])
    await filter('Category').fill('')
    await loaded(() => page.getByRole('button', { name: 'Search' }).click())
    await loaded(() => page.getByRole('button', { name: 'sess-X' }).click())
    assert.equal(await filter('Session').inputValue(), 'sess-X')
    assert.deepEqual(await column(3), ['sess-X'])
  })

  it("opens the errors and shows each one's reasons, filtered by application", async () => {
    await loaded(() => page.getByRole('button', { name: 'Clear filters' }).click())
    await loaded(() => page.getByRole('button', { name: 'Errors' }).click())
    assert.equal(await page.getByRole('button', { name: 'Errors' }).getAttribute('aria-pressed'), 'true')
    assert.equal(await filter('Session').isVisible(), false, 'errors are not filtered by session')
    assert.match((await status()) ?? '', /^3 errors on page 1/)
    const headers = await page.locator('#results thead th').allTextContents()
    assert.ok(headers.includes('Reasons'), headers.join(','))
    const reasons = await Promise.all((await rows().all()).map((row) => row.locator('ul.reasons li').allTextContents()))
    assert.deepEqual(reasons, [
      ['/data/form/last_name must be string'],
      ['/data/element is required', '/timestamp is in the future'],
      ['/data/host is required'],
    ])
    await filter('App').fill(appB.name)
    await loaded(() => page.getByRole('button', { name: 'Search' }).click())
    assert.deepEqual(await column(2), [appB.name])
    await page.getByText('raw event', { exact: true }).click()
    assert.match((await page.locator('#results tbody details pre').textContent()) ?? '', /"session_id": "sess-B"/)
  })

  it("shows the API's refusals: a bad date naming its field, a user token", async () => {
    await filter('App').fill('')
    await filter('Stored from').fill('yesterday')
    await loaded(() => page.getByRole('button', { name: 'Search' }).click())
    assert.match((await status()) ?? '', /HTTP 400 validation_failed: .*querystring\.from/)
    assert.equal(await rows().count(), 0)
    await filter('Stored from').fill('')

    const user = api.tokens.user1
    await page.getByRole('button', { name: 'Forget token' }).click()
    assert.equal(await page.evaluate("sessionStorage.getItem('bourse.eye.adminToken')"), null)
    await filter('Admin token').fill(user)
    await loaded(() => page.getByRole('button', { name: 'Use token' }).click())
    assert.match((await status()) ?? '', /HTTP 403 forbidden/)
  })

  it('ran no inline script and broke no Content-Security-Policy rule', () => {
    assert.deepEqual(pageErrors, [])
    // Chromium logs each 4xx answer as a failed resource; anything else is a fault of the page.
    assert.deepEqual(consoleErrors.filter((text) => !/status of 40[03]/.test(text)), [])
  })
})
