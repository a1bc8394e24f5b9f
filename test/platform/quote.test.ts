/** Quoting outside input in messages: escaped, and cut so that a huge input makes a short message. */
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { quote, QUOTE_MAX_CHARS, truncate } from '../../src/platform/quote.ts'

test('a short input is quoted exactly as JSON.stringify does', () => {
  for (const input of ['', 'stock1', 'a "quoted" \\ word', 'x'.repeat(QUOTE_MAX_CHARS)]) {
    assert.equal(quote(input), JSON.stringify(input))
  }
})

test('newlines and control characters are escaped: an input cannot fake a log line or drive a terminal', () => {
  assert.equal(quote('a\nline 9: fake\u001b[2J'), '"a\\nline 9: fake\\u001b[2J"')
})

test('a 50 MB input gives a short quote with its length', () => {
  const huge = 'y'.repeat(50 * 1024 * 1024)
  const quoted = quote(huge)
  assert.equal(quoted, `"${'y'.repeat(QUOTE_MAX_CHARS)}"… (52428800 characters)`)
  assert.equal(quote(huge, 3), '"yyy"… (52428800 characters)')
})

test('a cut never splits a surrogate pair', () => {
  const input = `${'a'.repeat(QUOTE_MAX_CHARS - 1)}😀${'b'.repeat(10)}`
  assert.equal(quote(input), `"${'a'.repeat(QUOTE_MAX_CHARS - 1)}"… (${input.length} characters)`)
  assert.equal(truncate('ab😀c', 4), 'ab…')
  assert.equal(truncate('ab😀cd', 5), 'ab😀…')
})

test('truncate keeps text of at most max characters and marks a cut one', () => {
  assert.equal(truncate('short', 5), 'short')
  assert.equal(truncate('longer', 5), 'long…')
  assert.equal(truncate('z'.repeat(100_000), 1000).length, 1000)
})

test('a value that is not a string gives its JSON text', () => {
  assert.equal(quote(null), 'null')
  assert.equal(quote(undefined), 'undefined')
  assert.equal(quote(12.5), '12.5')
})
