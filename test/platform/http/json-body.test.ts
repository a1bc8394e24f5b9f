/**
 * The API's JSON body parser answers every body as Fastify's own parser does (the same
 * values, the same refusals of `__proto__` and `constructor.prototype` keys, spelled out
 * or escaped), whichever of its two paths a body takes.
 */
import assert from 'node:assert/strict'
import { after, before, test } from 'node:test'
import Fastify, { type FastifyInstance } from 'fastify'
import { jsonBodyParser } from '../../../src/platform/http/json-body.ts'

let ours: FastifyInstance
let fastifys: FastifyInstance
before(async () => {
  ours = Fastify()
  ours.removeContentTypeParser('application/json')
  ours.addContentTypeParser('application/json', { parseAs: 'string' }, jsonBodyParser(ours))
  fastifys = Fastify({ onProtoPoisoning: 'error', onConstructorPoisoning: 'error' })
  for (const app of [ours, fastifys]) app.post('/', async (request) => ({ body: request.body, proto: Object.getPrototypeOf(request.body ?? {}) === Object.prototype }))
  await Promise.all([ours.ready(), fastifys.ready()])
})
after(async () => {
  await Promise.all([ours.close(), fastifys.close()])
})

const BODIES = [
  '{"a":1,"b":[1,2,{"c":"d"}],"e":null}',
  '[1,2,3]',
  '"text"',
  '{"note":"a prototype of the constructor"}',
  '{"__proto__":{"admin":true}}',
  '{"\\u005f_proto__":{"admin":true}}',
  '{"_\\u005fproto__":{"admin":true}}',
  '{"constructor":{"prototype":{"admin":true}}}',
  '{"\\u0063onstructor":{"prototype":{"admin":true}}}',
  '{"constructor":1}',
  '{"é":"\\u00e9"}',
  '\ufeff{"bom":true}',
  '',
  '{"a":',
  '{"a":1} trailing',
]

test('every body gets the answer Fastify’s own parser gives it, refusals included', async () => {
  for (const payload of BODIES) {
    const [mine, theirs] = await Promise.all(
      [ours, fastifys].map((app) => app.inject({ method: 'POST', url: '/', headers: { 'content-type': 'application/json' }, payload })),
    )
    assert.equal(mine!.statusCode, theirs!.statusCode, `${payload}: ${mine!.body} against ${theirs!.body}`)
    if (theirs!.statusCode === 200) assert.deepEqual(mine!.json(), theirs!.json(), payload)
    else assert.equal(mine!.json().code, theirs!.json().code, payload)
  }
})
