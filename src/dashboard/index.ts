/** The live dashboard: a page over the API for operators. */
export { DASHBOARD_PATH, dashboardRoutes } from './dashboard.routes.ts'
