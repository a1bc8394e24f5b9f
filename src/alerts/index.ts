/** What the services and other domains may use of the product alerts. */
export { alertRoutes, type AlertRoutesDeps } from './alerts.routes.ts'
export { ALERT_QUEUES, RUNS_QUEUE, TICK_SCHEDULER_ID, TICKS_QUEUE } from './queues.ts'
export { assertTickFitsFrequencies, nextTickAfter } from './schedule.ts'
export { createUnsubscribeSigner, UNSUBSCRIBE_KEY_NAME, type UnsubscribeSigner, unsubscribeUrl } from './unsubscribe.ts'
