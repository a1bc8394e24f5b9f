/** Kafka, written once: clients, partition helpers, the send batcher, and what every consumer needs. */
export * from './clients.ts'
export * from './consumer.ts'
export * from './dead-letter.ts'
export * from './metrics.ts'
export * from './offsets.ts'
export * from './partitions.ts'
export * from './send-batcher.ts'
export { isPermanent, isRefusedByDatabase, PermanentError, RetryAbortedError } from '../retry.ts'
