/**
 * The baseline of `npm run bench:api` and `npm run bench:btc`: Fastify 5 with POST routes
 * that parse the same JSON body as BuyStock or a BTC order and answer a small constant
 * JSON (a BTC order's shape, with 201), and `GET /api/json/:bytes` answering an object of
 * `items` (candle-shaped) whose JSON is about `bytes` long, built once per size, as the
 * baseline of the market data reads of `npm run bench:market`. No authentication, no rate limit, no logger, no
 * schemas: what the framework alone costs on this machine and Node.
 *
 * `node bench/empty-server.ts [port]` prints `listening on http://...` and stops on
 * SIGTERM or SIGINT.
 */
import Fastify from 'fastify'

const app = Fastify({ logger: false })
const answer = { decision: 'Accept', price: 10, cost: 10, credit: 1_000_000_000 }
app.post('/api/buy-stock', async () => answer)
const btcOrder = {
  id: '00000000-0000-4000-8000-000000000000',
  user_id: 'user1',
  currency: 'EUR',
  amount: '10.00',
  btc_price: '50000.00',
  btc_amount: '0.00020000',
  price_source: 'bench',
  price_fetched_at: '2026-01-01T00:00:00.000Z',
  created_at: '2026-01-01T00:00:00.000Z',
}
app.post('/api/btc/orders', async (_request, reply) => reply.code(201).send(btcOrder))
const candle = { time: '120000', open: 41.27, high: 41.93, low: 40.88, close: 41.5, volume: 6 }
const bySize = new Map<number, { items: Array<typeof candle> }>()
app.get<{ Params: { bytes: string } }>('/api/json/:bytes', async (request) => {
  const bytes = Math.min(Math.max(Number(request.params.bytes) || 0, 0), 1_000_000)
  let answer = bySize.get(bytes)
  if (!answer) {
    const count = Math.max(1, Math.round(bytes / (JSON.stringify(candle).length + 1)))
    answer = { items: Array.from({ length: count }, (_, i) => ({ ...candle, volume: i })) }
    bySize.set(bytes, answer)
  }
  return answer
})

const address = await app.listen({ port: Number(process.argv[2] ?? 0), host: '127.0.0.1' })
process.stdout.write(`listening on ${address}\n`)
for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  process.once(signal, () => void app.close().then(() => process.exit(0)))
}
