/**
 * Pages served as static files (an admin page, the dashboard): HTML, scripts and style
 * sheets read once at start and answered as they are, hidden from the OpenAPI document.
 * Scripts and styles are files of their own, never inline: the API's
 * Content-Security-Policy (helmet's default, `script-src 'self'`) refuses inline scripts.
 */
import { readFileSync } from 'node:fs'
import type { RoutePlugin } from './app.ts'

/** One file of a page: the path it is served at, the file it is read from, its media type. */
export interface StaticAsset {
  path: string
  file: URL | string
  type: string
}

/** Media types of the files pages are made of. */
export const MEDIA = Object.freeze({
  html: 'text/html; charset=utf-8',
  js: 'text/javascript; charset=utf-8',
  css: 'text/css; charset=utf-8',
})

/** Routes answering each asset's text (read now: a missing file fails at start, not on a request). */
export function staticAssetRoutes(assets: readonly StaticAsset[]): RoutePlugin {
  const loaded = assets.map((asset) => ({ ...asset, body: readFileSync(asset.file, 'utf8') }))
  return async (app) => {
    for (const { path, type, body } of loaded) {
      app.get(path, { schema: { hide: true } }, async (_request, reply) => {
        // Revalidated on each load, so a new version of a page is never mixed with an old script.
        return reply.type(type).header('cache-control', 'no-cache').send(body)
      })
    }
  }
}
