/** The operations domain: service reports, and the status of every service. */
export { operationsRoutes, type OperationsRoutesDeps, REPORTS_TOKEN_FILER } from './reports.routes.ts'
export { parseStreamEntry, type ReportsDrain, type ReportsDrainOptions, startReportsDrain } from './reports.drain.ts'
export { insertReports, latestReports, listReports, pruneReports, type ReportRetention } from './reports.repository.ts'
