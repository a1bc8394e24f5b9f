/**
 * The operators' page for The Eye at `/admin/events`: static HTML, a script and a style
 * sheet from `./admin/`, no framework and nothing from elsewhere. The page itself is
 * public (it holds no data); it asks for an admin token, keeps it in sessionStorage and
 * calls the query routes with it.
 */
import type { RoutePlugin } from '../platform/http/app.ts'
import { MEDIA, staticAssetRoutes } from '../platform/http/static-assets.ts'

const file = (name: string) => new URL(`./admin/${name}`, import.meta.url)

/** The routes of the admin page: `/admin/events`, `/admin/events.js`, `/admin/events.css`. */
export function eventsAdminPageRoutes(): RoutePlugin {
  return staticAssetRoutes([
    { path: '/admin/events', file: file('events.html'), type: MEDIA.html },
    { path: '/admin/events.js', file: file('events.js'), type: MEDIA.js },
    { path: '/admin/events.css', file: file('events.css'), type: MEDIA.css },
  ])
}
