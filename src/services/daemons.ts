/**
 * The long-running services, in the order the demo starts them. `bourse status` expects
 * one live instance of each (its `--expect` changes that); compose runs each too.
 */
export const daemons = [
  'price-updater',
  'performance',
  'verify-sim',
  'ebay-sim',
  'mail-sink',
  'btc-price-sim',
  'api',
  'verifier',
  'callback-sender',
  'events-worker',
  'alerts-scheduler',
  'alerts-worker',
  'btc-price',
] as const

/** The name of a long-running service. */
export type Daemon = (typeof daemons)[number]
