/**
 * A `from` or `to` whose offset carries it out of years 0001-9999 in UTC
 * (`9999-12-31T23:59:59-14:00`, `0001-01-01T00:00:00+14:00`) was written in a form
 * PostgreSQL cannot read: a 500. It is a 400 naming the field; so is an event timestamp of
 * that kind, which the worker could not store.
 */
import assert from 'node:assert/strict'
import { after, before, test } from 'node:test'
import { parseEventTimestamp } from '../../src/events/event-validation.ts'
import { type EventsApi, openEventsApi } from '../helpers/events.ts'

let api: EventsApi
before(async () => {
  api = await openEventsApi()
})
after(async () => {
  await api.close()
})

const outOfRange = ['9999-12-31T23:59:59-14:00', '9999-12-31T20:00:00-04:00', '0001-01-01T00:00:00+14:00', '0001-01-01T00:30:00+01:00']

test('a time range outside years 0001-9999 in UTC is a 400 naming the field', async () => {
  for (const path of ['/api/events', '/api/event-errors']) {
    for (const field of ['from', 'to']) {
      for (const time of outOfRange) {
        const res = await api.app.inject({ method: 'GET', url: `${path}?${field}=${encodeURIComponent(time)}`, headers: api.auth(api.tokens.admin) })
        assert.equal(res.statusCode, 400, `${path} ${field}=${time}: ${res.body}`)
        assert.equal((res.json() as { error: { details: Array<{ field: string }> } }).error.details[0]?.field, `querystring.${field}`)
      }
    }
  }
  const inRange = await api.app.inject({ method: 'GET', url: `/api/events?from=${encodeURIComponent('0001-01-01T00:00:00-01:00')}&to=${encodeURIComponent('9999-12-31T23:59:59+14:00')}`, headers: api.auth(api.tokens.admin) })
  assert.equal(inRange.statusCode, 200, inRange.body)
})

test('an event timestamp outside years 0001-9999 in UTC is not valid', () => {
  for (const time of outOfRange) assert.equal(parseEventTimestamp(time).ok, false, time)
  assert.equal(parseEventTimestamp('9999-12-31 23:59:59.999999').ok, true)
})
