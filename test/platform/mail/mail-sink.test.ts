/** The mail sink: a real SMTP server, its JSON and its pages, and its faults. */
import assert from 'node:assert/strict'
import { after, describe, it } from 'node:test'
import { request } from 'undici'
import { createMailSink, escapeHtml, type MailSink, type MailSinkOptions } from '../../../src/platform/mail/mail-sink.ts'
import { createMailer, MailError, type Mailer, type OutgoingMail } from '../../../src/platform/mail/mailer.ts'

const closers: Array<() => Promise<unknown>> = []
after(async () => {
  for (const close of closers.reverse()) await close()
})

type Started = MailSink & { smtpUrl: string; httpUrl: string }

async function startSink(options: MailSinkOptions = {}): Promise<{ sink: Started; mailer: Mailer }> {
  const sink = createMailSink({ smtpPort: 0, httpPort: 0, ...options })
  closers.push(() => sink.close())
  await sink.listen()
  const mailer = createMailer({ url: sink.smtpUrl!, from: 'Bourse alerts <alerts@bourse.localhost>', timeoutMs: 2000 })
  closers.push(() => mailer.close())
  return { sink: sink as Started, mailer }
}

let sequence = 0
function mail(overrides: Partial<OutgoingMail> = {}): OutgoingMail {
  sequence++
  return {
    to: 'someone@example.com',
    subject: `Message ${sequence}`,
    html: `<p>Hello ${sequence}</p>`,
    text: `Hello ${sequence}`,
    messageId: `<sink-${sequence}.${Date.now()}@bourse.localhost>`,
    ...overrides,
  }
}

async function get(url: string): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; text: string }> {
  const response = await request(url)
  return { status: response.statusCode, headers: response.headers, text: await response.body.text() }
}

const HOSTILE = '<script>alert("owned")</script> & <img src=x onerror=alert(1)>'
const HOSTILE_HEADER = '<script>alert(1)</script> & <img src=x onerror=alert(1)>'

describe('the JSON', () => {
  it('lists the messages newest first with both parts and the headers; DELETE clears them', async () => {
    const { sink, mailer } = await startSink()
    const first = mail({ headers: { 'List-Unsubscribe': '<http://127.0.0.1:8000/u/1>', 'List-Unsubscribe-Post': 'List-Unsubscribe=One-Click' } })
    const second = mail()
    await mailer.send(first)
    await mailer.send(second)
    const listed = await get(`${sink.httpUrl}/messages`)
    assert.equal(listed.status, 200)
    assert.match(String(listed.headers['content-type']), /^application\/json/)
    const messages = JSON.parse(listed.text) as Array<Record<string, unknown> & { headers: Record<string, string> }>
    assert.deepEqual(
      messages.map((m) => m.messageId),
      [second.messageId, first.messageId],
    )
    const [newest, oldest] = messages
    assert.deepEqual(Object.keys(newest!).sort(), ['date', 'envelope', 'from', 'headers', 'html', 'id', 'messageId', 'receivedAt', 'size', 'subject', 'text', 'to'])
    assert.equal(oldest!.subject, first.subject)
    assert.equal(oldest!.text, first.text)
    assert.equal(oldest!.html, first.html)
    assert.equal(oldest!.to, 'someone@example.com')
    assert.equal(oldest!.headers['list-unsubscribe'], '<http://127.0.0.1:8000/u/1>')
    assert.equal(oldest!.headers['list-unsubscribe-post'], 'List-Unsubscribe=One-Click')
    assert.deepEqual(sink.messages(), messages)

    const cleared = await request(`${sink.httpUrl}/messages`, { method: 'DELETE' })
    await cleared.body.dump()
    assert.equal(cleared.statusCode, 204)
    assert.deepEqual(JSON.parse((await get(`${sink.httpUrl}/messages`)).text), [])
    assert.equal(sink.stats.stored, 0)
    const post = await request(`${sink.httpUrl}/messages`, { method: 'POST', body: '{}' })
    await post.body.dump()
    assert.equal(post.statusCode, 405)
  })

  it('keeps only the last --max messages', async () => {
    const { sink, mailer } = await startSink({ maxMessages: 3 })
    const sent = Array.from({ length: 5 }, () => mail())
    for (const m of sent) await mailer.send(m)
    assert.deepEqual(
      sink.messages().map((m) => m.messageId),
      sent.slice(2).reverse().map((m) => m.messageId),
    )
    assert.equal(sink.stats.received, 5)
    assert.equal(sink.stats.stored, 3)
  })

  it('refuses a message over the size limit with 552, a permanent failure', async () => {
    const { sink, mailer } = await startSink({ maxMessageBytes: 4096 })
    const big = mail({ text: 'x'.repeat(10_000) })
    const err = await mailer.send(big).then(
      () => assert.fail('a message over the limit was accepted'),
      (e: unknown) => e,
    )
    assert.ok(err instanceof MailError)
    assert.equal(err.responseCode, 552)
    assert.equal(err.transient, false)
    assert.equal(sink.messages().length, 0)
    await mailer.send(mail())
    assert.equal(sink.messages().length, 1)
  })
})

describe('the pages', () => {
  it('list the messages with everything escaped, under a policy allowing no script', async () => {
    const { sink, mailer } = await startSink()
    await mailer.send(mail({ subject: `Bourse alert ${HOSTILE}` }))
    const page = await get(`${sink.httpUrl}/`)
    assert.equal(page.status, 200)
    assert.match(String(page.headers['content-type']), /^text\/html; charset=utf-8/)
    const csp = String(page.headers['content-security-policy'])
    assert.match(csp, /default-src 'none'/)
    assert.doesNotMatch(csp, /script-src|unsafe-inline/)
    assert.equal(page.headers['x-content-type-options'], 'nosniff')
    assert.ok(page.text.includes(escapeHtml(`Bourse alert ${HOSTILE}`)), 'the subject is shown escaped')
    assert.ok(!page.text.includes('<script>'), 'no script element')
    assert.ok(!page.text.includes('<img src=x'), 'no image element from the subject')
    assert.match(page.text, /&lt;alerts@bourse\.localhost&gt;/)
  })

  it('show one message: headers and text escaped, the HTML part only in a sandboxed frame', async () => {
    const { sink, mailer } = await startSink()
    await mailer.send(
      mail({
        subject: HOSTILE,
        text: `Cheapest: ${HOSTILE}`,
        html: `<html><head><title>t</title></head><body><p style="color:red">Cheapest</p><script>parent.document.title="owned"</script></body></html>`,
        // Without quotes, which nodemailer would send as an encoded word.
        headers: { 'X-Note': HOSTILE_HEADER },
      }),
    )
    const [received] = sink.messages()
    const page = await get(`${sink.httpUrl}/messages/${received!.id}`)
    assert.equal(page.status, 200)
    assert.ok(!page.text.includes('<script'), 'no script element on the page itself')
    assert.ok(page.text.includes(`<pre>${escapeHtml(`Cheapest: ${HOSTILE}`)}</pre>`), 'the text part, escaped')
    assert.equal(received!.headers['x-note'], HOSTILE_HEADER)
    assert.ok(page.text.includes(`<td>${escapeHtml(HOSTILE_HEADER)}</td>`), 'a header, escaped')
    assert.match(page.text, new RegExp(`<iframe sandbox="allow-popups allow-popups-to-escape-sandbox" [^>]*src="/messages/${received!.id}/html"`))
    assert.doesNotMatch(page.text, /allow-scripts|allow-same-origin/)

    const html = await get(`${sink.httpUrl}/messages/${received!.id}/html`)
    assert.equal(html.status, 200)
    const csp = String(html.headers['content-security-policy'])
    assert.match(csp, /^sandbox allow-popups allow-popups-to-escape-sandbox;/)
    assert.match(csp, /default-src 'none'/)
    assert.doesNotMatch(csp, /script-src|allow-scripts|allow-same-origin/)
    assert.match(csp, /frame-ancestors 'self'/)
    // The part as sent, plus links opening outside the frame.
    assert.ok(html.text.includes('<p style="color:red">Cheapest</p>'))
    assert.match(html.text, /<head><base target="_blank">/)

    const raw = await get(`${sink.httpUrl}/messages/${received!.id}/raw`)
    assert.match(String(raw.headers['content-type']), /^text\/plain/)
    assert.match(raw.text, /^Message-ID: <sink-/m)
  })

  it('answer 404 for a message that is not there, and for an unknown path', async () => {
    const { sink } = await startSink()
    assert.equal((await get(`${sink.httpUrl}/messages/999`)).status, 404)
    assert.equal((await get(`${sink.httpUrl}/messages/abc`)).status, 404)
    assert.equal((await get(`${sink.httpUrl}/nope`)).status, 404)
    const health = await get(`${sink.httpUrl}/health`)
    assert.deepEqual(JSON.parse(health.text), { status: 'ok', messages: 0 })
  })
})

describe('waiting and faults', () => {
  it('waitFor resolves with a message already held or the first matching one to arrive', async () => {
    const { sink, mailer } = await startSink()
    const early = mail()
    await mailer.send(early)
    assert.equal((await sink.waitFor((m) => m.messageId === early.messageId, 1000)).subject, early.subject)
    const late = mail({ subject: 'late one' })
    const waiting = sink.waitFor((m) => m.subject === 'late one', 5000)
    await mailer.send(mail({ subject: 'another one' }))
    await mailer.send(late)
    assert.equal((await waiting).messageId, late.messageId)
  })

  it('waitFor rejects after its timeout, naming what arrived meanwhile', async () => {
    const { sink, mailer } = await startSink()
    const waiting = sink.waitFor((m) => m.subject === 'never sent', 300)
    await mailer.send(mail({ subject: 'something else' }))
    await assert.rejects(waiting, /no matching message within 300 ms \(1 arrived: "something else"\)/)
  })

  it('refuses exactly the next N messages, then accepts again', async () => {
    const { sink, mailer } = await startSink()
    sink.refuseNext(2, 451)
    const outcomes = []
    for (let i = 0; i < 4; i++) {
      outcomes.push(
        await mailer.send(mail()).then(
          () => 'sent',
          (e: MailError) => `${e.responseCode}`,
        ),
      )
    }
    assert.deepEqual(outcomes, ['451', '451', 'sent', 'sent'])
    assert.throws(() => sink.refuseNext(1, 250), /400 to 599/)
  })

  it('closing takes the server down (a send fails as transient) and a second close is the same promise', async () => {
    const { sink, mailer } = await startSink()
    await mailer.send(mail())
    const closed = sink.close()
    assert.equal(sink.close(), closed)
    await closed
    const err = await mailer.send(mail()).then(
      () => assert.fail('sent to a closed sink'),
      (e: unknown) => e,
    )
    assert.ok(err instanceof MailError)
    assert.equal(err.transient, true)
  })
})
