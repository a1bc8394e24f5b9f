/**
 * The live dashboard at `/dashboard`: static HTML, a script and a style sheet from
 * `./page/`, and TradingView's Lightweight Charts (its standalone build, from the
 * installed package, served at `/dashboard/vendor/`). No build step. Like the events admin
 * page, the page itself holds no data: it asks for an admin token and reads the API
 * with it (market data, orders, events, status and reports).
 */
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import type { RoutePlugin } from '../platform/http/app.ts'
import { MEDIA, staticAssetRoutes } from '../platform/http/static-assets.ts'

/** Where the dashboard is served. */
export const DASHBOARD_PATH = '/dashboard'

const page = (name: string) => new URL(`./page/${name}`, import.meta.url)

/** The chart library's standalone script (the package's exports name no such path: found from its package.json). */
function chartLibrary(): string {
  const packageJson = createRequire(import.meta.url).resolve('lightweight-charts/package.json')
  return join(dirname(packageJson), 'dist', 'lightweight-charts.standalone.production.js')
}

/** The dashboard's routes. */
export function dashboardRoutes(): RoutePlugin {
  return staticAssetRoutes([
    { path: DASHBOARD_PATH, file: page('dashboard.html'), type: MEDIA.html },
    { path: `${DASHBOARD_PATH}/dashboard.js`, file: page('dashboard.js'), type: MEDIA.js },
    { path: `${DASHBOARD_PATH}/dashboard.css`, file: page('dashboard.css'), type: MEDIA.css },
    { path: `${DASHBOARD_PATH}/vendor/lightweight-charts.js`, file: chartLibrary(), type: MEDIA.js },
  ])
}
