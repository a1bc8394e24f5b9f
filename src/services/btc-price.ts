/** `bourse btc-price`: polls the BTC price providers with failover and keeps the quote in Redis. */
import { createPricePoller } from '../btc/price-poller.ts'
import { createProviders, parseProviderUrls } from '../btc/providers.ts'
import type { PricePoller } from '../btc/price-poller.ts'
import { intOption, UsageError } from '../platform/command.ts'
import type { Metrics } from '../platform/metrics.ts'
import { defineService } from './shape.ts'

export const { run } = defineService({
  spec: {
    name: 'btc-price',
    usage: '[--interval-ms 15000] [--instance-id ID]',
    description:
      'Polls the BTC price in EUR, GBP and USD every BTC_POLL_INTERVAL_MS from the providers of\n' +
      'BTC_PROVIDER_URLS, in their order: a provider failing or slower than BTC_PROVIDER_TIMEOUT_MS hands over\n' +
      'to the next. Writes Redis `bourse:btc:quote` as { EUR: { price, source, fetched_at }, ... } (exact\n' +
      'decimal strings). An answer moving a price by more than BTC_OUTLIER_PERCENT against the stored quote is\n' +
      'held back unless the next provider confirms it. Each provider\'s last success, failures and timeouts are\n' +
      'in the heartbeat status.',
    options: { 'interval-ms': { type: 'string' } },
    help: { 'interval-ms': 'Time between two polls (default: BTC_POLL_INTERVAL_MS, 15000)' },
  },
  daemon: true,
  parse: ({ values }, config) => {
    let urls
    try {
      urls = parseProviderUrls(config.BTC_PROVIDER_URLS)
    } catch (err) {
      throw new UsageError((err as Error).message)
    }
    return {
      urls,
      intervalMs: intOption('interval-ms', values['interval-ms'], 100, 86_400_000) ?? config.BTC_POLL_INTERVAL_MS,
    }
  },
  needs: () => ({ redis: {} }),
   
  async start({ config, log, lifecycle, redis, metrics }, { urls, intervalMs }) {
    const providers = createProviders(urls, { coinGeckoApiKey: config.COINGECKO_API_KEY })
    const poller = createPricePoller(
      { redis, log },
      { providers, timeoutMs: config.BTC_PROVIDER_TIMEOUT_MS, outlierPercent: config.BTC_OUTLIER_PERCENT },
    )
    exposeProviderMetrics(metrics, poller, config.BTC_PROVIDER_TIMEOUT_MS)
    lifecycle.onClose('btc price poller', () => poller.stop())
    poller.start(intervalMs)
    log.debug({ providers: urls, intervalMs }, 'polling')
    return { stats: poller.stats, status: () => ({ intervalMs, ...poller.status() }) }
  },
})

/**
 * Each provider's record as metrics, read at scrape time from the poller's records (the
 * same numbers as the heartbeat status): `bourse_btc_provider_{successes,failures,timeouts,
 * outliers}_total{provider}`, `bourse_btc_provider_last_success_seconds{provider}` (Unix
 * time, 0 before the first) and the timeout `bourse_btc_provider_timeout_seconds`.
 */
function exposeProviderMetrics(metrics: Metrics, poller: PricePoller, timeoutMs: number): void {
  const providers = () => Object.entries(poller.status().providers)
  for (const field of ['successes', 'failures', 'timeouts', 'outliers'] as const) {
    metrics.counterFrom(`bourse_btc_provider_${field}_total`, `BTC price provider ${field} since start`, ['provider'], () =>
      providers().map(([provider, record]) => [{ provider }, record[field]]),
    )
  }
  metrics.gaugeFrom('bourse_btc_provider_last_success_seconds', 'When the BTC price provider last answered a valid quote (Unix time; 0: never)', ['provider'], () =>
    providers().map(([provider, record]) => [{ provider }, record.lastSuccessAt ? Date.parse(record.lastSuccessAt) / 1000 : 0]),
  )
  metrics.gauge('bourse_btc_provider_timeout_seconds', 'Longest one BTC price provider call may take').set(timeoutMs / 1000)
}
