/**
 * The baseline of `npm run bench:api`: Fastify 5 with one POST route that parses the same
 * JSON body as BuyStock and answers a small constant JSON. No authentication, no rate
 * limit, no logger, no schemas: what the framework alone costs on this machine and Node.
 *
 * `node bench/empty-server.ts [port]` prints `listening on http://...` and stops on
 * SIGTERM or SIGINT.
 */
import Fastify from 'fastify'

const app = Fastify({ logger: false })
const answer = { decision: 'Accept', price: 10, cost: 10, credit: 1_000_000_000 }
app.post('/api/buy-stock', async () => answer)

const address = await app.listen({ port: Number(process.argv[2] ?? 0), host: '127.0.0.1' })
process.stdout.write(`listening on ${address}\n`)
for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  process.once(signal, () => void app.close().then(() => process.exit(0)))
}
