/**
 * The operators' page for The Eye at `/admin/events`: static HTML, a script and a style
 * sheet from `./admin/`, no framework and nothing from elsewhere. The page itself is
 * public (it holds no data); it asks for an admin token, keeps it in sessionStorage and
 * calls the query routes with it.
 *
 * The script and the styles are files of their own rather than inline: the API's
 * Content-Security-Policy (helmet's default, `script-src 'self'`) refuses inline scripts.
 */
import { readFileSync } from 'node:fs'
import type { RoutePlugin } from '../platform/http/app.ts'

/** One file of the page: its path, its media type and its text, read once at start. */
interface PageAsset {
  path: string
  type: string
  body: string
}

function asset(path: string, file: string, type: string): PageAsset {
  return { path, type, body: readFileSync(new URL(`./admin/${file}`, import.meta.url), 'utf8') }
}

/** The routes of the admin page: `/admin/events`, `/admin/events.js`, `/admin/events.css`. */
export function eventsAdminPageRoutes(): RoutePlugin {
  const assets = [
    asset('/admin/events', 'events.html', 'text/html; charset=utf-8'),
    asset('/admin/events.js', 'events.js', 'text/javascript; charset=utf-8'),
    asset('/admin/events.css', 'events.css', 'text/css; charset=utf-8'),
  ]
  return async (app) => {
    for (const { path, type, body } of assets) {
      app.get(path, { schema: { hide: true } }, async (_request, reply) => {
        // Revalidated on each load, so a new version of the page is never mixed with an old script.
        return reply.type(type).header('cache-control', 'no-cache').send(body)
      })
    }
  }
}
