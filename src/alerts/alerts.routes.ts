/**
 * The product alerts API: saved eBay searches (create, list, read, change, delete, pause,
 * resume), what each run found, the price history for charts, and the emails' one-click
 * unsubscribe (./unsubscribe.routes.ts).
 *
 * Who sees what: a user token acts on its own user's alerts; another user's alert is 404,
 * as if it did not exist. An admin token acts on every alert and creates an alert for the
 * user it names in `user_id` (required then). Application tokens (The Eye) are refused.
 *
 * Validation: the schemas check types, required and unknown fields; the rules a schema
 * cannot say (an email address's syntax, a phrase's length once its spaces are collapsed,
 * an exact price) are checked by the route, and a 400 names every bad field of the body
 * at once, the schema's and the route's together.
 */
import type { FastifyRequest } from 'fastify'
import Type from 'typebox'
import type { Db } from '../database.ts'
import { mapPage } from '../platform/db/keyset.ts'
import { fieldErrors, type RoutePlugin } from '../platform/http/app.ts'
import { type Principal, principalOf, requireAuth } from '../platform/http/auth.ts'
import { BadRequest, Conflict, ErrorResponseSchema, type FieldError, Forbidden, NotFound } from '../platform/http/errors.ts'
import { queryInstant } from '../platform/http/instant.ts'
import { jsonBodyParser } from '../platform/http/json-body.ts'
import { PageQuery, pageRequest, PageSchema } from '../platform/http/paging.ts'
import { type Checked, normalizeEmail, normalizePhrase, parseMaxPrice, phraseKey } from './alert-input.ts'
import {
  type AlertChanges,
  type AlertWrite,
  createAlert,
  deleteAlert,
  findAlert,
  isRunOf,
  listAlerts,
  listItems,
  listRuns,
  pauseAlert,
  priceHistory,
  resumeAlert,
  type RunRow,
  UnknownUserError,
  updateAlert,
} from './alerts.repository.ts'
import {
  AlertIdParams,
  AlertView,
  CreateAlertBody,
  ItemsQuery,
  ItemView,
  ListAlertsQuery,
  MAX_BIGINT,
  MAX_PRICE_POINTS,
  PriceHistory,
  PriceHistoryQuery,
  RunView,
  UpdateAlertBody,
} from './alerts.schemas.ts'
import type { AlertRow } from './db/tables.ts'
import { assertTickFitsFrequencies, nextTickAfter } from './schedule.ts'
import type { UnsubscribeSigner } from './unsubscribe.ts'
import { unsubscribeRoutes } from './unsubscribe.routes.ts'

/** What {@link alertRoutes} needs. */
export interface AlertRoutesDeps {
  db: Db
  /** The scheduler's tick (`ALERTS_TICK_MS`): first runs and resumed alerts are due at the next one. */
  tickMs: number
  /** Checks the tokens of the emails' unsubscribe links. */
  unsubscribe: UnsubscribeSigner
  /** The clock, in ms since the epoch. @defaultValue Date.now */
  now?: () => number
}

const errors = (...statuses: number[]) => Object.fromEntries(statuses.map((s) => [s, ErrorResponseSchema]))

/** An alert row as the API shows it. */
function alertView(row: AlertRow): AlertView {
  return {
    id: row.id,
    user_id: row.user_id,
    email: row.email,
    phrase: row.phrase,
    frequency_minutes: row.frequency_minutes as AlertView['frequency_minutes'],
    max_price: row.max_price,
    currency: row.currency,
    status: row.status,
    paused_by: row.paused_by,
    next_run_at: row.next_run_at.toISOString(),
    last_run_at: row.last_run_at?.toISOString() ?? null,
    created_at: row.created_at.toISOString(),
    updated_at: row.updated_at.toISOString(),
  }
}

function runView(row: RunRow): RunView {
  return { ...row, status: row.status as RunView['status'], finished_at: row.finished_at?.toISOString() ?? null }
}

/**
 * The user whose alerts the caller acts on: its own user, or undefined for an admin (every
 * user). 403 for a token of no user (an application's).
 */
function ownerOf(principal: Principal): string | undefined {
  if (principal.admin) return undefined
  if (principal.userId === null) throw new Forbidden('alerts need a user token or an admin token')
  return principal.userId
}

/** A bigint id from a path or query (its digits checked by the schema), or 400 naming `field`. */
function idOf(text: string, field: string): string {
  const value = BigInt(text)
  if (value > MAX_BIGINT) {
    throw new BadRequest(`invalid request: ${field}`, [{ field, message: `must be at most ${MAX_BIGINT} (a bigint)` }], 'validation_failed')
  }
  return value.toString()
}

function validationFailed(details: FieldError[]): BadRequest {
  return new BadRequest(`invalid request: ${details.map((d) => d.field).join(', ')}`, details, 'validation_failed')
}

/**
 * The body's checks of a route with `attachValidation`: the schema's errors (a bad path or
 * query is thrown as it is: the body was not validated then), then the route's own rules,
 * each on a field the schema found well-typed; {@link BodyChecks.finish} throws them all.
 */
class BodyChecks {
  readonly errors: FieldError[]
  readonly body: Record<string, unknown>
  private readonly failed: Set<string>

  constructor(request: FastifyRequest) {
    const invalid = request.validationError as (Error & { validationContext?: string; validation?: unknown }) | undefined
    if (invalid && invalid.validationContext !== 'body') throw invalid
    this.errors = invalid && Array.isArray(invalid.validation) ? fieldErrors(invalid.validation, 'body') : []
    this.failed = new Set(this.errors.map((e) => e.field))
    this.body = typeof request.body === 'object' && request.body !== null && !Array.isArray(request.body) ? (request.body as Record<string, unknown>) : {}
  }

  /** Runs `rule` on text field `name` when it is present and well-typed; undefined when absent, null when null. */
  check<T>(name: string, rule: (text: string) => Checked<T>): T | null | undefined {
    const field = `body.${name}`
    const value = this.body[name]
    if (value === undefined || value === null || this.failed.has(field)) return value === null ? null : undefined
    // max_price arrives as its source text (the route's JSON parser); a number from elsewhere is written plainly.
    const text = typeof value === 'number' ? String(value) : value
    if (typeof text !== 'string') return undefined
    const result = rule(text)
    if (result.ok) return result.value
    this.add(field, result.message)
    return undefined
  }

  add(field: string, message: string): void {
    if (this.failed.has(field)) return
    this.failed.add(field)
    this.errors.push({ field, message })
  }

  /** Throws the 400 naming every bad field, if there is one. */
  finish(): void {
    if (this.errors.length > 0) throw validationFailed(this.errors)
  }
}

/** The routes, as a plugin to register under the API. */
export function alertRoutes(deps: AlertRoutesDeps): RoutePlugin {
  const { db, tickMs } = deps
  // A tick that does not divide the frequencies would put due times off the scheduler's grid.
  assertTickFitsFrequencies(tickMs)
  const now = deps.now ?? Date.now
  const nextTick = () => nextTickAfter(now(), tickMs)

  /** The alert, if the caller may see it: 404 for none and for another user's. */
  const visibleAlert = async (request: FastifyRequest, id: string): Promise<AlertRow> => {
    const alert = await findAlert(db, idOf(id, 'params.id'), ownerOf(principalOf(request)))
    if (!alert) throw new NotFound(`alert ${id} does not exist`, { field: 'params.id' })
    return alert
  }

  /** The alert written, or 409 `alert_exists` naming the one it would duplicate. */
  const written = (write: AlertWrite): AlertRow => {
    if ('alert' in write) return write.alert
    throw new Conflict(
      `an alert for this email, phrase and frequency already exists: ${write.duplicateOf}`,
      { alert_id: write.duplicateOf },
      'alert_exists',
    )
  }

  return async (app) => {
    // max_price must reach the route as written (see ../platform/http/json-body.ts); this
    // parser replaces the API's own in this plugin only.
    app.removeContentTypeParser('application/json')
    app.addContentTypeParser('application/json', { parseAs: 'string' }, jsonBodyParser(app, { numberText: ['max_price'] }))

    app.post(
      '/api/alerts',
      {
        onRequest: requireAuth,
        attachValidation: true,
        schema: {
          operationId: 'createAlert',
          tags: ['alerts'],
          summary: 'Save a search: its results are emailed every 2, 10 or 30 minutes',
          description:
            "The alert belongs to the token's user; an admin token names the user in `user_id`. Its first run is at " +
            'the next scheduler tick (every `ALERTS_TICK_MS`, 2 minutes by default). The same user, email, phrase ' +
            '(compared case-insensitively, spaces collapsed) and frequency twice is a 409 `alert_exists` whose ' +
            '`details.alert_id` names the alert there is. Every bad field is named in one 400.',
          body: CreateAlertBody,
          response: { 201: AlertView, ...errors(400, 401, 403, 404, 409, 429) },
        },
      },
      async (request, reply) => {
        const principal = principalOf(request)
        const owner = ownerOf(principal)
        const checks = new BodyChecks(request)
        const email = checks.check('email', normalizeEmail)
        const phrase = checks.check('phrase', normalizePhrase)
        const maxPrice = checks.check('max_price', parseMaxPrice)
        const named = checks.body.user_id
        if (owner === undefined && named === undefined) checks.add('body.user_id', 'is required with an admin token')
        checks.finish()
        const body = request.body
        if (owner !== undefined && body.user_id !== undefined && body.user_id !== owner) {
          throw new Forbidden(`this token may not create alerts for user ${body.user_id}`, { field: 'body.user_id' })
        }
        const userId = owner ?? body.user_id!
        let write: AlertWrite
        try {
          write = await createAlert(db, {
            userId,
            email: email!,
            phrase: phrase!,
            phraseKey: phraseKey(phrase!),
            frequencyMinutes: body.frequency_minutes,
            maxPrice: maxPrice ?? null,
            currency: body.currency ?? null,
            nextRunAt: nextTick(),
          })
        } catch (err) {
          if (err instanceof UnknownUserError) throw new NotFound(err.message, { field: 'body.user_id' })
          throw err
        }
        const alert = written(write)
        reply.code(201).header('location', `/api/alerts/${alert.id}`)
        return alertView(alert)
      },
    )

    app.get(
      '/api/alerts',
      {
        onRequest: requireAuth,
        schema: {
          operationId: 'listAlerts',
          tags: ['alerts'],
          summary: 'Alerts, newest first, a keyset page at a time',
          description:
            "A user token lists its own user's alerts; an admin token lists everyone's, or one user's with `user_id`. " +
            '`email` is compared as stored (its domain lower-cased).',
          querystring: ListAlertsQuery,
          response: { 200: PageSchema(AlertView), ...errors(400, 401, 403, 429) },
        },
      },
      async (request) => {
        const owner = ownerOf(principalOf(request))
        const { user_id: named, email, status } = request.query
        if (owner !== undefined && named !== undefined && named !== owner) {
          throw new Forbidden(`this token may not list the alerts of user ${named}`, { field: 'querystring.user_id' })
        }
        let address: string | undefined
        if (email !== undefined) {
          const checked = normalizeEmail(email)
          if (!checked.ok) throw validationFailed([{ field: 'querystring.email', message: checked.message }])
          address = checked.value
        }
        const page = await listAlerts(db, { userId: owner ?? named, email: address, status }, pageRequest(request.query))
        return mapPage(page, alertView)
      },
    )

    app.get(
      '/api/alerts/:id',
      {
        onRequest: requireAuth,
        schema: {
          operationId: 'getAlert',
          tags: ['alerts'],
          summary: 'An alert',
          params: AlertIdParams,
          response: { 200: AlertView, ...errors(400, 401, 403, 404, 429) },
        },
      },
      async (request) => alertView(await visibleAlert(request, request.params.id)),
    )

    app.patch(
      '/api/alerts/:id',
      {
        onRequest: requireAuth,
        attachValidation: true,
        schema: {
          operationId: 'updateAlert',
          tags: ['alerts'],
          summary: 'Change an alert',
          description:
            'Only the fields sent change; `max_price` and `currency` null remove them. A new phrase (other than in ' +
            'case) or frequency is a new search: its next run moves to the next tick. A change making it the same ' +
            'search as another alert of the user is a 409 `alert_exists` naming that alert.',
          params: AlertIdParams,
          body: UpdateAlertBody,
          response: { 200: AlertView, ...errors(400, 401, 403, 404, 409, 429) },
        },
      },
      async (request) => {
        const owner = ownerOf(principalOf(request))
        const checks = new BodyChecks(request)
        const email = checks.check('email', normalizeEmail)
        const phrase = checks.check('phrase', normalizePhrase)
        const maxPrice = checks.check('max_price', parseMaxPrice)
        checks.finish()
        const id = idOf(request.params.id, 'params.id')
        const body = request.body
        const changes: AlertChanges = {
          ...(email != null && { email }),
          ...(phrase != null && { phrase, phraseKey: phraseKey(phrase) }),
          ...(body.frequency_minutes !== undefined && { frequencyMinutes: body.frequency_minutes }),
          ...(maxPrice !== undefined && { maxPrice }),
          ...(body.currency !== undefined && { currency: body.currency }),
        }
        const write = await updateAlert(db, id, owner, changes, nextTick())
        if (!write) throw new NotFound(`alert ${request.params.id} does not exist`, { field: 'params.id' })
        return alertView(written(write))
      },
    )

    app.delete(
      '/api/alerts/:id',
      {
        onRequest: requireAuth,
        schema: {
          operationId: 'deleteAlert',
          tags: ['alerts'],
          summary: 'Delete an alert, its runs and what they found',
          params: AlertIdParams,
          response: { 204: Type.Null({ description: 'Deleted' }), ...errors(400, 401, 403, 404, 429) },
        },
      },
      async (request, reply) => {
        const owner = ownerOf(principalOf(request))
        if (!(await deleteAlert(db, idOf(request.params.id, 'params.id'), owner))) {
          throw new NotFound(`alert ${request.params.id} does not exist`, { field: 'params.id' })
        }
        return reply.code(204).send(null)
      },
    )

    app.post(
      '/api/alerts/:id/pause',
      {
        onRequest: requireAuth,
        schema: {
          operationId: 'pauseAlert',
          tags: ['alerts'],
          summary: 'Pause an alert: no runs, no emails until it is resumed',
          description: 'Pausing a paused alert changes nothing (`paused_by` keeps who paused it first).',
          params: AlertIdParams,
          response: { 200: AlertView, ...errors(400, 401, 403, 404, 429) },
        },
      },
      async (request) => {
        const owner = ownerOf(principalOf(request))
        const alert = await pauseAlert(db, idOf(request.params.id, 'params.id'), owner, 'user')
        if (!alert) throw new NotFound(`alert ${request.params.id} does not exist`, { field: 'params.id' })
        return alertView(alert)
      },
    )

    app.post(
      '/api/alerts/:id/resume',
      {
        onRequest: requireAuth,
        schema: {
          operationId: 'resumeAlert',
          tags: ['alerts'],
          summary: 'Resume a paused alert (also one paused by an unsubscribe link)',
          description: 'Its next run is at the next scheduler tick. Resuming an active alert changes nothing.',
          params: AlertIdParams,
          response: { 200: AlertView, ...errors(400, 401, 403, 404, 429) },
        },
      },
      async (request) => {
        const owner = ownerOf(principalOf(request))
        const alert = await resumeAlert(db, idOf(request.params.id, 'params.id'), owner, nextTick())
        if (!alert) throw new NotFound(`alert ${request.params.id} does not exist`, { field: 'params.id' })
        return alertView(alert)
      },
    )

    app.get(
      '/api/alerts/:id/runs',
      {
        onRequest: requireAuth,
        schema: {
          operationId: 'listAlertRuns',
          tags: ['alerts'],
          summary: "An alert's runs, newest due time first, a keyset page at a time",
          params: AlertIdParams,
          querystring: PageQuery,
          response: { 200: PageSchema(RunView), ...errors(400, 401, 403, 404, 429) },
        },
      },
      async (request) => {
        const alert = await visibleAlert(request, request.params.id)
        return mapPage(await listRuns(db, alert.id, pageRequest(request.query)), runView)
      },
    )

    app.get(
      '/api/alerts/:id/items',
      {
        onRequest: requireAuth,
        schema: {
          operationId: 'listAlertItems',
          tags: ['alerts'],
          summary: "What an alert's runs found: the newest run first, each run's items cheapest first",
          description: 'With `run_id`, only that run\'s items (404 when it is not a run of this alert).',
          params: AlertIdParams,
          querystring: ItemsQuery,
          response: { 200: PageSchema(ItemView), ...errors(400, 401, 403, 404, 429) },
        },
      },
      async (request) => {
        const alert = await visibleAlert(request, request.params.id)
        const runId = request.query.run_id === undefined ? undefined : idOf(request.query.run_id, 'querystring.run_id')
        if (runId !== undefined && !(await isRunOf(db, alert.id, runId))) {
          throw new NotFound(`run ${runId} is not a run of alert ${alert.id}`, { field: 'querystring.run_id' })
        }
        return listItems(db, alert.id, { runId }, pageRequest(request.query))
      },
    )

    app.get(
      '/api/alerts/:id/price-history',
      {
        onRequest: requireAuth,
        schema: {
          operationId: 'getAlertPriceHistory',
          tags: ['alerts'],
          summary: 'The cheapest total each done run found, oldest first, for charts',
          description:
            `Runs due in [from, to) (both optional). At most ${MAX_PRICE_POINTS} points: when the range holds more, ` +
            'the newest are given and `truncated` is true (narrow the range to see older ones).',
          params: AlertIdParams,
          querystring: PriceHistoryQuery,
          response: { 200: PriceHistory, ...errors(400, 401, 403, 404, 429) },
        },
      },
      async (request) => {
        const from = queryInstant(request.query.from, 'querystring.from')
        const to = queryInstant(request.query.to, 'querystring.to')
        if (from && to && to < from) throw validationFailed([{ field: 'querystring.to', message: 'is before from' }])
        const alert = await visibleAlert(request, request.params.id)
        return priceHistory(db, alert.id, { from, to }, MAX_PRICE_POINTS)
      },
    )

    await app.register(unsubscribeRoutes({ db, signer: deps.unsubscribe }))
  }
}
