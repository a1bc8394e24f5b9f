/**
 * `bourse mail-sink` as a real process: it prints where it listens, keeps the mail sent
 * to it, serves it as JSON and on its page, beats a heartbeat, and stops cleanly.
 */
import assert from 'node:assert/strict'
import { after, before, test } from 'node:test'
import type { Redis } from 'ioredis'
import { request } from 'undici'
import { heartbeatPrefix } from '../../src/platform/heartbeat.ts'
import { createMailer } from '../../src/platform/mail/mailer.ts'
import { closeTestRedis, openTestRedis, runCli, testEnv } from '../helpers/infra.ts'
import { startService, type ServiceProcess } from '../helpers/processes.ts'

let redis: Redis
const services: ServiceProcess[] = []
before(async () => {
  redis = await openTestRedis()
})
after(async () => {
  for (const service of services) await service.kill()
  await closeTestRedis(redis)
})

test('receives mail over SMTP and shows it as JSON and on its page, then stops on SIGTERM', async () => {
  const sink = startService(['mail-sink', '--port', '0', '--http', '0', '--max', '5'], testEnv())
  services.push(sink)
  const [, smtpUrl, httpUrl] = await sink.waitForOutput(/^mail-sink SMTP on (smtp:\/\/127\.0\.0\.1:\d+), messages at (http:\/\/127\.0\.0\.1:\d+)\/$/m)
  const mailer = createMailer({ url: smtpUrl!, from: 'Bourse alerts <alerts@bourse.localhost>', timeoutMs: 5000 })
  try {
    await mailer.send({
      to: 'someone@example.com',
      subject: 'Bourse alert "<script>drone</script>": 1 item from 12.50 USD',
      html: '<p>Drone — 12.50 USD</p>',
      text: 'Drone — 12.50 USD',
      messageId: '<cli-1@bourse.localhost>',
      headers: { 'List-Unsubscribe': '<http://127.0.0.1:8000/unsubscribe/t>' },
    })
  } finally {
    await mailer.close()
  }

  const listed = await request(`${httpUrl}/messages`)
  const messages = (await listed.body.json()) as Array<{ messageId: string; text: string; headers: Record<string, string> }>
  assert.equal(messages.length, 1)
  assert.equal(messages[0]!.messageId, '<cli-1@bourse.localhost>')
  assert.equal(messages[0]!.text, 'Drone — 12.50 USD')
  assert.equal(messages[0]!.headers['list-unsubscribe'], '<http://127.0.0.1:8000/unsubscribe/t>')

  const page = await request(`${httpUrl}/`)
  const html = await page.body.text()
  assert.equal(page.statusCode, 200)
  assert.match(html, /Bourse alert &quot;&lt;script&gt;drone&lt;\/script&gt;&quot;: 1 item from 12\.50 USD/)
  assert.doesNotMatch(html, /<script>/)

  // A long-running service like the others: listed by its heartbeat.
  const beats = await redis.keys(`${heartbeatPrefix}mail-sink:*`)
  assert.equal(beats.length, 1)

  assert.equal(await sink.stop(), 0)
  assert.deepEqual(await redis.keys(`${heartbeatPrefix}mail-sink:*`), [])
})

test('refuses a bad option with exit 2, naming it, before listening', async () => {
  const result = await runCli(['mail-sink', '--max', '0'])
  assert.equal(result.code, 2)
  assert.match(result.stderr, /--max must be a whole number from 1 to 1000000 \(got "0"\)/)
  assert.equal(result.stdout, '')
})
