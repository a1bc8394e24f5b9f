/**
 * The alerts' one-click unsubscribe (RFC 8058) at `/api/alerts/unsubscribe/<token>`, the
 * link of every alert email (`List-Unsubscribe`, with `List-Unsubscribe-Post:
 * List-Unsubscribe=One-Click`). No login: the signed token (./unsubscribe.ts) is the proof.
 *
 * - `POST` pauses the alert (`paused_by: unsubscribe`): what a mail client's unsubscribe
 *   button sends (`List-Unsubscribe=One-Click`, as a form, urlencoded or multipart), and
 *   what the page below posts. Again on a paused alert, it changes nothing and answers
 *   the same. JSON by default, a small page for a browser (`Accept: text/html`).
 * - `GET` only shows a page with a button that posts: mail scanners and link previews
 *   fetch links on their own, and must not unsubscribe anyone.
 *
 * A malformed or forged token is 400 `invalid_unsubscribe_link`; a good token of an alert
 * deleted since is 404. Rate-limited by address like every public route.
 */
import type { FastifyReply } from 'fastify'
import Type from 'typebox'
import type { Db } from '../database.ts'
import type { RoutePlugin } from '../platform/http/app.ts'
import { AppError, BadRequest, ErrorResponseSchema, NotFound } from '../platform/http/errors.ts'
import { FORM_MEDIA_TYPE, formBodyParser } from '../platform/http/form-body.ts'
import { acceptsHtml, escapeHtml, htmlPage, sendPage } from '../platform/http/html.ts'
import { findAlert, pauseAlert } from './alerts.repository.ts'
import { UnsubscribeParams, Unsubscribed } from './alerts.schemas.ts'
import type { AlertRow } from './db/tables.ts'
import type { UnsubscribeSigner } from './unsubscribe.ts'

/** What {@link unsubscribeRoutes} needs. */
export interface UnsubscribeRoutesDeps {
  db: Db
  signer: UnsubscribeSigner
}

const errors = (...statuses: number[]) => Object.fromEntries(statuses.map((s) => [s, ErrorResponseSchema]))
const HtmlPage = Type.String({ description: 'A small HTML page' })

/** The form a mail client posts (RFC 8058); the request needs nothing from it, so other fields are let be. */
const OneClickBody = Type.Union(
  [
    Type.Object({ 'List-Unsubscribe': Type.Optional(Type.String({ maxLength: 100, description: '`One-Click`' })) }),
    Type.Null(),
  ],
  { description: 'RFC 8058: `List-Unsubscribe=One-Click`; may be empty' },
)

function pausedPage(alert: AlertRow): string {
  return htmlPage(
    'Unsubscribed',
    '<h1>Unsubscribed</h1>\n' +
      `<p>You will get no more emails for the search “${escapeHtml(alert.phrase)}”.</p>\n` +
      '<p>Its owner can resume the alert at any time.</p>',
  )
}

function confirmPage(alert: AlertRow): string {
  if (alert.status === 'paused') {
    return htmlPage(
      'Already unsubscribed',
      `<h1>Already unsubscribed</h1>\n<p>The emails for the search “${escapeHtml(alert.phrase)}” are stopped.</p>`,
    )
  }
  return htmlPage(
    'Unsubscribe',
    '<h1>Unsubscribe</h1>\n' +
      `<p>Stop the emails for the search “${escapeHtml(alert.phrase)}”?</p>\n` +
      // No action: the form posts to this same address.
      '<form method="post">\n<input type="hidden" name="List-Unsubscribe" value="One-Click">\n' +
      '<button type="submit">Unsubscribe</button>\n</form>',
  )
}

function errorPage(err: AppError): string {
  const title = err.status === 404 ? 'Alert not found' : 'Link not valid'
  return htmlPage(title, `<h1>${title}</h1>\n<p class="error">${escapeHtml(err.message)}.</p>`)
}

/** The routes, as a plugin (registered by the alert routes). */
export function unsubscribeRoutes(deps: UnsubscribeRoutesDeps): RoutePlugin {
  const { db, signer } = deps

  /** The alert a token names: 400 for a token that is not ours, 404 for an alert deleted since. */
  const alertOf = async (token: string): Promise<AlertRow> => {
    const alertId = await signer.verify(token)
    if (alertId === undefined) {
      throw new BadRequest(
        'this unsubscribe link is not valid: it was altered or cut',
        { field: 'params.token' },
        'invalid_unsubscribe_link',
      )
    }
    const alert = await findAlert(db, alertId)
    if (!alert) throw new NotFound('this alert does not exist any more', { field: 'params.token' })
    return alert
  }

  /** `work`'s page, or its refusal as a page (a browser shows it; JSON would be unreadable there). */
  const page = async (reply: FastifyReply, work: () => Promise<string>): Promise<FastifyReply> => {
    try {
      return sendPage(reply, 200, await work())
    } catch (err) {
      if (err instanceof AppError && err.status < 500) return sendPage(reply, err.status, errorPage(err))
      throw err
    }
  }

  return async (app) => {
    app.addContentTypeParser(FORM_MEDIA_TYPE, { parseAs: 'string' }, formBodyParser)
    // RFC 8058 says mail clients SHOULD post multipart/form-data. Its content is not needed
    // (the URL is the whole request), so it is read, within the body limit, and dropped.
    app.addContentTypeParser('multipart/form-data', { parseAs: 'buffer' }, (_request, _body, done) => done(null, null))

    app.get(
      '/api/alerts/unsubscribe/:token',
      {
        schema: {
          operationId: 'showUnsubscribe',
          tags: ['alerts'],
          summary: "An alert email's unsubscribe link, opened in a browser: a page with a button that unsubscribes",
          description: 'Changes nothing itself: mail scanners fetch links. The page posts to the same address.',
          params: UnsubscribeParams,
          produces: ['text/html'],
          response: {
            200: { description: 'The page', content: { 'text/html': { schema: HtmlPage } } },
            '4xx': { description: 'The link is not valid (400) or its alert is deleted (404): a page saying so', content: { 'text/html': { schema: HtmlPage } } },
          },
        },
      },
      async (request, reply) => page(reply, async () => confirmPage(await alertOf(request.params.token))),
    )

    app.post(
      '/api/alerts/unsubscribe/:token',
      {
        schema: {
          operationId: 'unsubscribe',
          tags: ['alerts'],
          summary: 'One-click unsubscribe (RFC 8058): pause the alert of an email',
          description:
            'No login: the token of the link is the proof. The alert is paused (`paused_by: unsubscribe`); again on a ' +
            'paused alert this changes nothing. A page is answered when the client accepts `text/html` first.',
          params: UnsubscribeParams,
          consumes: [FORM_MEDIA_TYPE, 'multipart/form-data', 'application/json'],
          body: OneClickBody,
          response: {
            200: {
              description: 'Unsubscribed',
              content: { 'application/json': { schema: Unsubscribed }, 'text/html': { schema: HtmlPage } },
            },
            ...errors(400, 404, 429),
          },
        },
      },
      async (request, reply) => {
        const unsubscribe = async () => {
          const alert = await alertOf(request.params.token)
          const paused = await pauseAlert(db, alert.id, undefined, 'unsubscribe')
          if (!paused) throw new NotFound('this alert does not exist any more', { field: 'params.token' })
          return paused
        }
        if (acceptsHtml(request.headers.accept)) return page(reply, async () => pausedPage(await unsubscribe()))
        const paused = await unsubscribe()
        return { alert_id: paused.id, phrase: paused.phrase, status: 'paused' as const, paused_by: paused.paused_by ?? 'unsubscribe' }
      },
    )
  }
}
