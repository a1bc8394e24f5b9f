/** The command table of the CLI: name, one-line summary and lazy module. */

export type { CommandModule } from '../platform/service.ts'

/** One CLI command. */
export interface CommandEntry {
  name: string
  summary: string
  load: () => Promise<unknown>
}

export const commands: readonly CommandEntry[] = [
  { name: 'demo', summary: 'Start infrastructure, load the sample data, stream it and show a live summary', load: () => import('./demo.ts') },
  { name: 'infra', summary: 'Start, stop, inspect or wipe local Kafka, Redis and PostgreSQL (up | down | status | reset)', load: () => import('./infra.ts') },
  { name: 'seed', summary: 'Load a fixture of Redis `SET key \'json\'` lines (users and stocks)', load: () => import('./seed.ts') },
  { name: 'update-prices', summary: 'Load a price CSV straight into Redis (no Kafka)', load: () => import('./update-prices.ts') },
  { name: 'produce', summary: 'Send a price CSV into the Kafka topic, each row exactly once, resumable', load: () => import('./produce.ts') },
  { name: 'generate', summary: 'Generate random-walk price ticks into a CSV file or a Kafka topic', load: () => import('./generate.ts') },
  { name: 'price-updater', summary: 'Consume price ticks from Kafka into Redis, exactly once', load: () => import('./price-updater.ts') },
  { name: 'migrate', summary: 'Create or update the PostgreSQL tables (accounts, orders, ...)', load: () => import('./migrate.ts') },
  { name: 'api', summary: 'Serve the HTTP API (BuyStock, orders, portfolios) with OpenAPI docs at /docs', load: () => import('./api.ts') },
  { name: 'tokens', summary: 'Create, list or revoke API tokens (create USER | create --admin | list | revoke ID)', load: () => import('./tokens.ts') },
  { name: 'apps', summary: 'Register, list or revoke applications trusted to send events (create NAME | list | revoke ID|NAME)', load: () => import('./apps.ts') },
  { name: 'verifier', summary: 'Verify orders through the external API and execute them, from Kafka', load: () => import('./verifier.ts') },
  { name: 'verify-sim', summary: 'Run a simulation of the external verification API (answers after 1-100 s)', load: () => import('./verify-sim.ts') },
  { name: 'ebay-sim', summary: 'Run a simulation of the eBay token and Browse search endpoints (deterministic catalogue, faults)', load: () => import('./ebay-sim.ts') },
  { name: 'btc-price', summary: 'Poll the BTC price from Coinbase, CoinGecko or Kraken (failover, outliers held) into Redis', load: () => import('./btc-price.ts') },
  { name: 'btc-price-sim', summary: 'Run a simulation of the Coinbase, CoinGecko and Kraken BTC price endpoints (random walk, faults)', load: () => import('./btc-price-sim.ts') },
  { name: 'mail-sink', summary: 'Run a local SMTP server that keeps the mail it receives, readable on a web page and as JSON', load: () => import('./mail-sink.ts') },
  { name: 'callback-sender', summary: 'Deliver signed order results to callback URLs, with retries and dead letters', load: () => import('./callback-sender.ts') },
  { name: 'rebuild-projections', summary: 'Rewrite the Redis `userN` keys from the accounts in PostgreSQL', load: () => import('./rebuild-projections.ts') },
  { name: 'performance', summary: 'Recompute the performance metric of changed stocks every minute, on all cores', load: () => import('./performance.ts') },
  { name: 'events-worker', summary: 'Validate events from Kafka and store each once: events or event errors (The Eye)', load: () => import('./events-worker.ts') },
  { name: 'alerts-scheduler', summary: 'Tick every 2 minutes and hand the due product alerts to the alerts queue', load: () => import('./alerts-scheduler.ts') },
  { name: 'alerts-worker', summary: 'Run due product alerts: search eBay, store the 20 cheapest items, email them', load: () => import('./alerts-worker.ts') },
  { name: 'status', summary: 'List the live instances of every service (from their heartbeats) and the services missing', load: () => import('./status.ts') },
  { name: 'event-types', summary: 'List, show, set or delete the JSON Schemas of event types (list | show | set | delete)', load: () => import('./event-types.ts') },
]
