/**
 * The alert emails: what they say, that eBay's titles and links (outside input) are
 * escaped or dropped, that prices are printed exactly as given, and that a rendered email
 * travels through a real SMTP server intact.
 */
import assert from 'node:assert/strict'
import { after, describe, it } from 'node:test'
import { type InsightEmailInput, type ListEmailInput, renderInsightEmail, renderListEmail } from '../../src/alerts/emails/index.ts'
import { createMailSink } from '../../src/platform/mail/mail-sink.ts'
import { createMailer } from '../../src/platform/mail/mailer.ts'

const closers: Array<() => Promise<unknown>> = []
after(async () => {
  for (const close of closers.reverse()) await close()
})

type Item = ListEmailInput['items'][number]

function item(n: number, overrides: Partial<Item> = {}): Item {
  return {
    title: `Quadcopter drone model ${n}`,
    price: `${10 + n}.50`,
    currency: 'USD',
    shipping: '2.00',
    total: `${12 + n}.50`,
    itemWebUrl: `https://www.ebay.com/itm/${100000 + n}?hash=item${n}&var=1`,
    imageUrl: `https://i.ebayimg.com/images/g/${n}/s-l225.jpg`,
    ...overrides,
  }
}

function listInput(items: Item[], overrides: Partial<ListEmailInput> = {}): ListEmailInput {
  return {
    alert: { id: 'a6f1c9d2', phrase: 'drone', frequency_minutes: 10, email: 'pilot@example.com' },
    dueAt: new Date('2026-03-04T05:06:07Z'),
    items,
    unsubscribeUrl: 'http://127.0.0.1:8000/alerts/unsubscribe/v1.tok_abc',
    ...overrides,
  }
}

const HOSTILE_TITLE = '<script>alert("x")</script><img src=x onerror=alert(1)> "Drone" & <b>friends</b>'

/** The hrefs and image sources of an HTML part. */
function links(html: string): { hrefs: string[]; images: string[] } {
  return {
    hrefs: [...html.matchAll(/<a [^>]*href="([^"]*)"/g)].map((m) => m[1]!),
    images: [...html.matchAll(/<img [^>]*src="([^"]*)"/g)].map((m) => m[1]!),
  }
}

describe('the list email', () => {
  it('names the phrase, the count and the lowest total in the subject', () => {
    const twenty = Array.from({ length: 20 }, (_, i) => item(i))
    assert.equal(renderListEmail(listInput(twenty)).subject, 'Bourse alert "drone": 20 items from 12.50 USD')
    assert.equal(renderListEmail(listInput([item(3)])).subject, 'Bourse alert "drone": 1 item from 15.50 USD')
  })

  it('shows a header with the phrase and due time, a table of the items and a footer with the unsubscribe link and why', () => {
    const { html, text } = renderListEmail(listInput([item(1), item(2)]))
    assert.match(html, /Bourse alert: “drone”/)
    assert.match(html, /2026-03-04 05:06 UTC/)
    assert.match(html, /<table class="items"/)
    assert.equal((html.match(/<tr>/g) ?? []).length, 1 + 2, 'a header row and one row per item')
    assert.ok(html.includes('<a href="https://www.ebay.com/itm/100001?hash=item1&amp;var=1"'), 'the title links to the item')
    assert.ok(html.includes('<img src="https://i.ebayimg.com/images/g/1/s-l225.jpg"'), 'the image')
    assert.ok(html.includes('<a href="http://127.0.0.1:8000/alerts/unsubscribe/v1.tok_abc"'), 'the unsubscribe link')
    assert.match(html, /an alert for &quot;drone&quot; sends the cheapest eBay items every 10 minutes to pilot@example\.com/)
    assert.match(text, /^Bourse alert "drone"$/m)
    assert.match(text, /at 2026-03-04 05:06 UTC/)
    assert.match(text, /^Unsubscribe \(one click, no login\): http:\/\/127\.0\.0\.1:8000\/alerts\/unsubscribe\/v1\.tok_abc$/m)
    assert.match(text, /every 10 minutes to pilot@example\.com/)
    // Styled for mail readers that ignore <style>, and no template tag left over.
    assert.match(html, /<td class="num total" style="[^"]*font-weight: bold/)
    assert.doesNotMatch(html, /<%|%>|JUICE_CODE_BLOCK/)
  })

  it('escapes a malicious title in the HTML part and keeps it one line in the text part', () => {
    const { html, text } = renderListEmail(listInput([item(1, { title: `${HOSTILE_TITLE}\r\nTotal 0.01 USD` })]))
    assert.doesNotMatch(html, /<script|<img src=x|<b>friends/)
    assert.ok(html.includes('&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt; &quot;Drone&quot; &amp; &lt;b&gt;friends&lt;/b&gt;'))
    // The line break cannot fake a line of its own in the text part.
    assert.match(text, /^1\. <script>alert\("x"\)<\/script><img src=x onerror=alert\(1\)> "Drone" & <b>friends<\/b> Total 0\.01 USD$/m)
    assert.doesNotMatch(text, /^Total 0\.01 USD$/m)
  })

  it('escapes a malicious phrase everywhere and keeps the subject one line', () => {
    const input = listInput([item(1)])
    const { subject, html, text } = renderListEmail({ ...input, alert: { ...input.alert, phrase: 'drone</title><script>x</script>\nBcc: x@example.com' } })
    assert.equal(subject, 'Bourse alert "drone</title><script>x</script> Bcc: x@example.com": 1 item from 13.50 USD')
    assert.doesNotMatch(html, /<script>|<\/title><script/)
    assert.match(text, /^Bourse alert "drone<\/title><script>x<\/script> Bcc: x@example\.com"$/m)
  })

  it('drops links and images that are not http(s): javascript:, data:, relative', () => {
    const hostile = [
      item(1, { itemWebUrl: 'javascript:alert(document.cookie)' }),
      item(2, { itemWebUrl: ' JavaScript:alert(1)', imageUrl: 'data:image/svg+xml,<svg onload=alert(1)>' }),
      item(3, { itemWebUrl: '/itm/3', imageUrl: 'javascript:alert(1)' }),
      item(4, { itemWebUrl: 'vbscript:msgbox(1)', imageUrl: null }),
      item(5),
    ]
    const { html, text } = renderListEmail(listInput(hostile))
    const { hrefs, images } = links(html)
    assert.deepEqual(hrefs, ['https://www.ebay.com/itm/100005?hash=item5&amp;var=1', 'http://127.0.0.1:8000/alerts/unsubscribe/v1.tok_abc'])
    assert.deepEqual(images, ['https://i.ebayimg.com/images/g/1/s-l225.jpg', 'https://i.ebayimg.com/images/g/5/s-l225.jpg'])
    assert.doesNotMatch(html, /javascript:|vbscript:|data:/i)
    assert.doesNotMatch(text, /javascript:|vbscript:|\/itm\/3/i)
    // The item is still listed, unlinked.
    assert.match(html, /<td[^>]*>Quadcopter drone model 1<\/td>/)
    assert.match(text, /^1\. Quadcopter drone model 1$/m)
  })

  it('shows shipping as free for zero, "not given" when eBay gave none, else the amount', () => {
    const { html, text } = renderListEmail(
      listInput([item(1, { shipping: '0.00' }), item(2, { shipping: null }), item(3, { shipping: '3.99' }), item(4, { shipping: '0' })]),
    )
    const shippingCells = [...html.matchAll(/<td class="num"[^>]*>([^<]*)<\/td>/g)].map((m) => m[1]).filter((_, i) => i % 2 === 1)
    assert.deepEqual(shippingCells, ['free', 'not given', '3.99 USD', 'free'])
    assert.match(text, /^ {3}Price 11\.50 USD, shipping free, total 13\.50 USD$/m)
    assert.match(text, /^ {3}Price 12\.50 USD, shipping not given, total 14\.50 USD$/m)
    assert.match(text, /^ {3}Price 13\.50 USD, shipping 3\.99 USD, total 15\.50 USD$/m)
  })

  it('lists every item in the text part, in order, with its link', () => {
    const twenty = Array.from({ length: 20 }, (_, i) => item(i + 1))
    const { text } = renderListEmail(listInput(twenty))
    const listed = [...text.matchAll(/^(\d+)\. (.*)$/gm)].map((m) => `${m[1]} ${m[2]}`)
    assert.deepEqual(
      listed,
      twenty.map((x, i) => `${i + 1} ${x.title}`),
    )
    for (const x of twenty) assert.ok(text.includes(`\n   ${x.itemWebUrl}\n`), `the link of ${x.title}`)
  })

  it('prints prices exactly as given, and finds the lowest total exactly', () => {
    const items = [
      item(1, { price: '12345678901234567.80', shipping: '0.09', total: '12345678901234567.89' }),
      item(2, { price: '12345678901234567.88', shipping: '0.00', total: '12345678901234567.88' }),
      item(3, { price: '100', shipping: '0.10', total: '100.10', currency: 'EUR' }),
    ]
    const { subject, html, text } = renderListEmail(listInput(items))
    // 12345678901234567.88 and .89 are the same double: only exact decimals tell them apart.
    assert.equal(subject, 'Bourse alert "drone": 3 items from 12345678901234567.88 USD')
    for (const shown of ['12345678901234567.80 USD', '12345678901234567.89 USD', '0.09 USD', '100 EUR', '100.10 EUR', '0.10 EUR']) {
      assert.ok(html.includes(`>${shown}<`), `${shown} in the HTML part`)
      assert.ok(text.includes(shown), `${shown} in the text part`)
    }
  })

  it('says "no items found" when there is none', () => {
    const { subject, html, text } = renderListEmail(listInput([]))
    assert.equal(subject, 'Bourse alert "drone": no items found')
    assert.match(html, /No items found for “drone” this time\./)
    assert.doesNotMatch(html, /<table/)
    assert.match(text, /^No items found for "drone" this time\.$/m)
  })

  it('cuts a huge title and drops control and bidi characters', () => {
    const { html, text } = renderListEmail(listInput([item(1, { title: `Drone\u202eevil\u0000\u0007 ${'x'.repeat(5000)}` })]))
    const line = /^1\. (.*)$/m.exec(text)![1]!
    assert.equal(line.length, 200)
    assert.match(line, /^Drone evil x+…$/)
    for (const unprintable of ['\u202e', '\u0000', '\u0007']) assert.ok(!html.includes(unprintable), `no U+${unprintable.codePointAt(0)!.toString(16).padStart(4, '0')}`)
  })

  it('refuses an unsubscribe link that is not http(s)', () => {
    assert.throws(() => renderListEmail(listInput([item(1)], { unsubscribeUrl: 'javascript:alert(1)' })), /unsubscribe URL must be an absolute http or https URL/)
  })
})

describe('the insight email', () => {
  const base: Omit<InsightEmailInput, 'insights'> = {
    alert: { id: 'a6f1c9d2', phrase: 'drone', email: 'pilot@example.com', max_price: '20.00', currency: 'USD' },
    unsubscribeUrl: 'https://bourse.example/alerts/unsubscribe/v1.tok',
  }
  const cheapest = { title: 'Mini drone', total: '15.00', currency: 'USD', itemWebUrl: 'https://www.ebay.com/itm/7' }

  it('tells each insight, the first naming the subject', () => {
    const { subject, html, text } = renderInsightEmail({
      ...base,
      insights: [
        { kind: 'under_max', item: cheapest, maxPrice: '20.00' },
        { kind: 'price_drop', item: cheapest, previousCheapest: '20.00', currentCheapest: '15.00', dropPercent: '25.00' },
      ],
    })
    assert.equal(subject, 'Bourse insight "drone": an item at 15.00 USD, under your 20.00 USD maximum (and 1 more insight)')
    assert.match(html, /An item under your maximum of 20\.00 USD/)
    assert.match(html, /The cheapest price fell 25\.00%/)
    assert.match(html, /From 20\.00 USD to 15\.00 USD\./)
    assert.ok(html.includes('<a href="https://www.ebay.com/itm/7"'))
    assert.ok(html.includes('<a href="https://bourse.example/alerts/unsubscribe/v1.tok"'))
    assert.match(text, /^\* The cheapest price fell 25\.00%$/m)
    assert.match(text, /^ {2}Mini drone \(total 15\.00 USD\)$/m)
    assert.match(text, /about items under 20\.00 USD/)
  })

  it('tells a flat market and a price drop in their own subjects', () => {
    const flat = renderInsightEmail({ ...base, insights: [{ kind: 'flat', price: '15.00', currency: 'USD', sinceDays: 3 }] })
    assert.equal(flat.subject, 'Bourse insight "drone": the cheapest price has stayed at 15.00 USD for 3 days')
    assert.match(flat.text, /It has stayed at 15\.00 USD/)
    const drop = renderInsightEmail({
      ...base,
      insights: [{ kind: 'price_drop', item: cheapest, previousCheapest: '20.00', currentCheapest: '15.00', dropPercent: '25.00' }],
    })
    assert.equal(drop.subject, 'Bourse insight "drone": the cheapest price fell 25.00% to 15.00 USD')
  })

  it('escapes a malicious title and drops a javascript: link', () => {
    const { html, text } = renderInsightEmail({
      ...base,
      insights: [{ kind: 'under_max', item: { ...cheapest, title: HOSTILE_TITLE, itemWebUrl: 'javascript:alert(1)' }, maxPrice: '20.00' }],
    })
    assert.doesNotMatch(html, /<script|<img src=x|javascript:/)
    assert.deepEqual(links(html).hrefs, ['https://bourse.example/alerts/unsubscribe/v1.tok'])
    assert.doesNotMatch(text, /javascript:/)
  })
})

describe('through SMTP', () => {
  it('arrives with the same subject, HTML and text parts', async () => {
    const sink = createMailSink({ smtpPort: 0, httpPort: null })
    closers.push(() => sink.close())
    const { smtpUrl } = await sink.listen()
    const mailer = createMailer({ url: smtpUrl, from: 'Bourse alerts <alerts@bourse.localhost>', timeoutMs: 5000 })
    closers.push(() => mailer.close())
    const rendered = renderListEmail(listInput(Array.from({ length: 20 }, (_, i) => item(i, { title: i === 0 ? HOSTILE_TITLE : `Drone ${i} — “ünïcode”` }))))
    await mailer.send({ to: 'pilot@example.com', messageId: '<alert-a6f1c9d2-1@bourse.localhost>', ...rendered })
    const received = await sink.waitFor((m) => m.messageId === '<alert-a6f1c9d2-1@bourse.localhost>')
    assert.equal(received.subject, rendered.subject)
    assert.equal(received.text, rendered.text)
    assert.equal(received.html, rendered.html)
  })
})
