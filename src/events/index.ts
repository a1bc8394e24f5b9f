/** What the services may use of The Eye (event collection). */
export { createAppAuthenticator } from './apps.repository.ts'
export { eventIntakeRoutes } from './events.intake.routes.ts'
export { eventQueryRoutes } from './events.query.routes.ts'
export { eventTypeRoutes } from './event-types.routes.ts'
