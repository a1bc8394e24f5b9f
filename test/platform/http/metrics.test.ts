import assert from 'node:assert/strict'
import { after, before, describe, test } from 'node:test'
import type { Redis } from 'ioredis'
import { pino } from 'pino'
import { Registry } from 'prom-client'
import Type from 'typebox'
import { createHttpApp, type HttpApp, type RoutePlugin } from '../../../src/platform/http/app.ts'
import { closeTestRedis, openTestRedis, testConfig } from '../../helpers/infra.ts'
import { parseScrape, sampleValue } from '../../helpers/prometheus.ts'

let redis: Redis
const apps: HttpApp[] = []

before(async () => {
  redis = await openTestRedis()
})
after(async () => {
  for (const app of apps) await app.close()
  await closeTestRedis(redis)
})

const routes: RoutePlugin = async (app) => {
  app.get(
    '/items/:id',
    { schema: { params: Type.Object({ id: Type.Integer() }) } },
    async (request) => ({ id: request.params.id }),
  )
}

async function build(env: Record<string, string> = {}): Promise<{ app: HttpApp; registry: Registry }> {
  const registry = new Registry()
  const app = await createHttpApp(
    { config: testConfig({ RATE_LIMIT_MAX: '100000', ...env }), log: pino({ level: 'silent' }), redis },
    { title: 'Bourse test', version: '0.0.0', routes: [routes], metrics: registry },
  )
  apps.push(app)
  return { app, registry }
}

/** The request-duration count of one (method, route, status), from a scrape of /metrics. */
async function countOf(app: HttpApp, labels: { method: string; route: string; status_code: string }, headers = {}): Promise<number> {
  const res = await app.inject({ method: 'GET', url: '/metrics', headers })
  assert.equal(res.statusCode, 200, res.body)
  assert.match(String(res.headers['content-type']), /^text\/plain; version=0\.0\.4/)
  assert.match(res.body, /^# TYPE bourse_http_request_duration_seconds histogram$/m)
  return sampleValue(parseScrape(res.body), 'bourse_http_request_duration_seconds_count', labels)
}

describe('GET /metrics', () => {
  test('counts requests by method, route pattern and status in the given registry', async () => {
    const { app, registry } = await build()
    const ok = { method: 'GET', route: '/items/:id', status_code: '200' }
    const bad = { method: 'GET', route: '/items/:id', status_code: '400' }
    const before = await countOf(app, ok)
    for (const id of [1, 2, 3]) assert.equal((await app.inject({ method: 'GET', url: `/items/${id}` })).statusCode, 200)
    assert.equal((await app.inject({ method: 'GET', url: '/items/x' })).statusCode, 400)
    assert.equal((await app.inject({ method: 'GET', url: '/nowhere/at/all' })).statusCode, 404)
    assert.equal(await countOf(app, ok), before + 3)
    assert.equal(await countOf(app, bad), 1)
    assert.equal(await countOf(app, { method: 'GET', route: 'unmatched', status_code: '404' }), 1)
    const text = await registry.metrics()
    assert.doesNotMatch(text, /route="\/items\/1"/, 'raw URLs never become labels')
    assert.doesNotMatch(text, /nowhere/)
    // The histogram's sum is in seconds, and each request took well under a second here.
    const sum = sampleValue(parseScrape(text), 'bourse_http_request_duration_seconds_sum', ok)
    assert.ok(sum > 0 && sum < 3, String(sum))
  })

  test('is not served without a registry', async () => {
    const app = await createHttpApp(
      { config: testConfig(), log: pino({ level: 'silent' }), redis },
      { title: 'Bourse test', version: '0.0.0' },
    )
    apps.push(app)
    assert.equal((await app.inject({ method: 'GET', url: '/metrics' })).statusCode, 404)
  })

  test('with METRICS_TOKEN, needs that bearer token: 401 without it or with another one', async () => {
    const { app } = await build({ METRICS_TOKEN: 'scrape-me-0123456789' })
    const none = await app.inject({ method: 'GET', url: '/metrics' })
    assert.equal(none.statusCode, 401)
    assert.equal(none.json().error.code, 'unauthorized')
    assert.match(String(none.headers['www-authenticate']), /^Bearer/)
    for (const token of ['scrape-me-012345678', 'scrape-me-0123456789x', 'bourse_x']) {
      const wrong = await app.inject({ method: 'GET', url: '/metrics', headers: { authorization: `Bearer ${token}` } })
      assert.equal(wrong.statusCode, 401, token)
    }
    const route = { method: 'GET', route: '/metrics', status_code: '401' }
    assert.ok((await countOf(app, route, { authorization: 'Bearer scrape-me-0123456789' })) >= 4)
  })
})
