/** The API's errors: an AppError carries no stack trace, and leaves other errors theirs. */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { AppError, Conflict, ServiceUnavailable } from '../../../src/platform/http/errors.ts'

test('an AppError has no stack frames; its cause, and every other error, keep theirs', () => {
  const limit = Error.stackTraceLimit
  const cause = new Error('the database is down')
  const errors = [new Conflict('taken', { field: 'x' }, 'idempotency_key_reused'), new ServiceUnavailable('later', 15, cause), new AppError('odd', 422, 'odd')]
  for (const err of errors) {
    assert.ok(err instanceof Error)
    assert.equal(err.stack, `${err.name}: ${err.message}`, 'nothing but its name and message')
  }
  assert.equal(Error.stackTraceLimit, limit, 'the limit is restored')
  assert.match(cause.stack ?? '', /errors\.test\.ts/)
  assert.equal(errors[1]!.cause, cause)
  assert.match(new Error('after').stack ?? '', /errors\.test\.ts/)
})
