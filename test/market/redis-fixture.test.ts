/** Redis fixtures (`SET key 'json'` lines): stocks and users, or errors naming the line. */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { parseRedisFixture, readRedisFixture } from '../../src/market/redis-fixture.ts'
import { originalFixtures } from '../helpers/market.ts'

describe('parseRedisFixture', () => {
  it("reads the seed's redis_data.txt: 3 stocks and 2 users", async () => {
    const fixture = await readRedisFixture(originalFixtures.redis)
    assert.deepEqual(fixture.errors, [])
    assert.deepEqual(fixture.entries.map(({ kind, key, value }) => ({ kind, key, value })), [
      { kind: 'stock', key: 'stock1', value: { id: 1, price: [1000, ''], time: ['09:00', '09:01'], performance: 0 } },
      { kind: 'stock', key: 'stock2', value: { id: 2, price: [450, ''], time: ['09:00', '09:01'], performance: 0 } },
      { kind: 'stock', key: 'stock3', value: { id: 3, price: [1682, ''], time: ['09:00', '09:01'], performance: 0 } },
      { kind: 'user', key: 'user1', value: { id: 1, credit: 150000000 } },
      { kind: 'user', key: 'user2', value: { id: 2, credit: 6000000000 } },
    ])
    // What is written: a stock's text as the file has it, a user's credit as decimal text.
    assert.deepEqual(
      fixture.entries.map((e) => (e.kind === 'stock' ? e.json : e.credit)),
      [
        '{"id": 1, "price": [1000, ""], "time": ["09:00", "09:01"], "performance": 0}',
        '{"id": 2, "price": [450, ""], "time": ["09:00", "09:01"], "performance": 0}',
        '{"id": 3, "price": [1682, ""], "time": ["09:00", "09:01"], "performance": 0}',
        '150000000',
        '6000000000',
      ],
    )
  })

  it('skips blank lines and comments, handles CRLF, and keeps file order', () => {
    const fixture = parseRedisFixture(
      `# users first\r\n\r\nSET user7 '{"id": 7, "credit": 0}'\r\n  \r\nset stockB '{"time": [], "price": []}'  \r\n`,
    )
    assert.deepEqual(fixture.errors, [])
    assert.deepEqual(
      fixture.entries.map((e) => [e.kind, e.key]),
      [
        ['user', 'user7'],
        ['stock', 'stockB'],
      ],
    )
  })

  const bad: Array<[string, string, RegExp]> = [
    ['a line that is not SET', `GET stock1`, /^line 3: expected SET key 'json'$/],
    ['a SET without quotes', `SET stock1 {"time": [], "price": []}`, /^line 3: expected SET key 'json'$/],
    ['invalid JSON', `SET stock1 '{"time": [}'`, /^line 3: stock1: invalid JSON/],
    ['a JSON array', `SET stock1 '[1, 2]'`, /^line 3: stock1: value must be a JSON object$/],
    ['time and price of different lengths', `SET stock1 '{"time": ["0900", "0901"], "price": [1]}'`, /^line 3: stock1: time has 2 entries but price has 1$/],
    ['duplicate times', `SET stock1 '{"time": ["0900", "0900"], "price": [1, 2]}'`, /^line 3: stock1: time has duplicate entries$/],
    ['a price that is text', `SET stock1 '{"time": ["0900"], "price": ["1"]}'`, /^line 3: stock1: price must be a list/],
    ['a time that is a number', `SET stock1 '{"time": [900], "price": [1]}'`, /^line 3: stock1: time must be a list of strings without commas, quotes or backslashes$/],
    ['a time with a comma', `SET stock1 '{"time": ["09,00"], "price": [1]}'`, /^line 3: stock1: time must be a list of strings without commas/],
    ['a missing price list', `SET stock1 '{"time": []}'`, /^line 3: stock1: price must be a list/],
    ['a performance that is not a number', `SET stock1 '{"time": [], "price": [], "performance": "0"}'`, /^line 3: stock1: performance must be a number$/],
    ['a bad stock key', `SET 1stock '{"time": [], "price": []}'`, /^line 3: 1stock: stock "1stock" must be a letter/],
    ['a negative credit', `SET user1 '{"id": 1, "credit": -1}'`, /^line 3: user1: credit must be a non-negative number$/],
    ['a credit that is text', `SET user1 '{"id": 1, "credit": "5"}'`, /^line 3: user1: credit must be a non-negative number$/],
    ['a user id that is not an integer', `SET user1 '{"id": 1.5, "credit": 5}'`, /^line 3: user1: id must be an integer$/],
    ['a user under a key that is not userN', `SET alice '{"id": 1, "credit": 5}'`, /^line 3: alice: user key "alice" must look like user1/],
    ['a stock under a user key', `SET user3 '{"time": [], "price": []}'`, /^line 3: user3: stock "user3" would overwrite a user key$/],
  ]
  for (const [what, text, error] of bad) {
    it(`reports ${what} with its line number and keeps the good lines`, () => {
      const fixture = parseRedisFixture(
        [`SET stock9 '{"time": ["0900"], "price": [1]}'`, '', text, `SET user9 '{"id": 9, "credit": 1}'`].join('\n'),
      )
      assert.equal(fixture.errors.length, 1, fixture.errors.join('\n'))
      assert.match(fixture.errors[0]!, error)
      assert.deepEqual(
        fixture.entries.map((e) => e.key),
        ['stock9', 'user9'],
      )
    })
  }

  it('reports every bad line, each with its own number', () => {
    const fixture = parseRedisFixture(
      ['DEL x', `SET user1 '{"id": 1, "credit": 1}'`, `SET stock1 '{'`, '# fine', `SET user2 '{"id": 2, "credit": -3}'`].join('\n'),
    )
    assert.deepEqual(
      fixture.errors.map((e) => e.split(':')[0]),
      ['line 1', 'line 3', 'line 5'],
    )
    assert.deepEqual(
      fixture.entries.map((e) => e.key),
      ['user1'],
    )
  })
})
