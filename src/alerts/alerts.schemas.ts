/**
 * The alerts API's request and response shapes (TypeBox), shared by the routes, the
 * OpenAPI document and the code behind them.
 *
 * Ids (`alerts.id`, `alert_runs.id`) are PostgreSQL bigints: JSON numbers lose precision
 * beyond 2^53, so the API writes them as decimal strings, and reads them so in paths.
 * Prices are decimal strings too (`"19.99"`), exact as stored.
 */
import Type, { type Static } from 'typebox'
import { pageQueryFields } from '../platform/http/paging.ts'
import { MAX_EMAIL_OCTETS, MAX_PHRASE_CHARS } from './alert-input.ts'
import { AlertStatus, PausedBy, RunStatus } from './db/tables.ts'

export { AlertStatus, PausedBy, RunStatus }

/** Largest value of a PostgreSQL bigint, which every id is. */
export const MAX_BIGINT = 2n ** 63n - 1n

/** A bigint id as the API writes it. */
const IdText = (description: string) => Type.String({ pattern: '^[0-9]{1,19}$', description, examples: ['42'] })

/** A decimal string, or null. */
const NullableDecimal = (description: string) =>
  Type.Union([Type.String({ pattern: '^[0-9]+(\\.[0-9]+)?$' }), Type.Null()], { description })
/** An ISO 8601 instant, or null. */
const NullableTime = (description: string) => Type.Union([Type.String({ format: 'date-time' }), Type.Null()], { description })

/** An alert's id, as a decimal string. */
export const AlertIdText = IdText('The alert\'s id: a 64-bit integer written as a decimal string')

/** A user account name such as `user1`. */
export const UserId = Type.String({ pattern: '^[A-Za-z0-9_.-]{1,64}$', description: 'The user the alert belongs to', examples: ['user1'] })

/** How often the alert runs, in minutes. */
export const Frequency = Type.Enum([2, 10, 30], { description: 'How often the alert runs, in minutes: 2, 10 or 30', examples: [10] })

const EmailField = Type.String({
  maxLength: 1024,
  description:
    `Where the alert's emails go: one @, no spaces, a dotted domain (lower-cased when stored) or an address literal ` +
    `in brackets; at most ${MAX_EMAIL_OCTETS} octets`,
  examples: ['ada@example.com'],
})
const PhraseField = Type.String({
  maxLength: 4096,
  description:
    `The search phrase, trimmed and with runs of whitespace collapsed to one space when stored: then 1 to ` +
    `${MAX_PHRASE_CHARS} characters. Duplicates are found case-insensitively`,
  examples: ['mechanical keyboard'],
})
/** max_price as sent: its rules are checked by the route (exactly, never through a float). */
const MaxPriceField = (nullMeans: string) =>
  Type.Unsafe<number | string | null>({
    type: ['number', 'string', 'null'],
    maxLength: 64,
    description:
      'Only items whose total (price and shipping) is at most this: a decimal greater than 0 with at most 2 decimals ' +
      `and 12 digits before the point, as a JSON number or a string (\`19.99\` or \`"19.99"\`; no exponent). ${nullMeans}`,
    examples: ['250.00'],
  })
const CurrencyField = (nullMeans: string) =>
  Type.Unsafe<string | null>({
    type: ['string', 'null'],
    pattern: '^[A-Z]{3}$',
    description: `ISO 4217 currency code of max_price (\`EUR\`, \`USD\`). ${nullMeans}`,
    examples: ['EUR'],
  })

export const CreateAlertBody = Type.Object(
  {
    user_id: Type.Optional({
      ...UserId,
      description: 'The user the alert is for: required with an admin token; a user token may only name its own user',
    }),
    email: EmailField,
    phrase: PhraseField,
    frequency_minutes: Frequency,
    max_price: Type.Optional(MaxPriceField('Absent or null: no ceiling.')),
    currency: Type.Optional(CurrencyField('Absent or null: any currency.')),
  },
  {
    additionalProperties: false,
    examples: [{ email: 'ada@example.com', phrase: 'mechanical keyboard', frequency_minutes: 10, max_price: '120.00', currency: 'EUR' }],
  },
)
export type CreateAlertBody = Static<typeof CreateAlertBody>

export const UpdateAlertBody = Type.Object(
  {
    email: Type.Optional(EmailField),
    phrase: Type.Optional(PhraseField),
    frequency_minutes: Type.Optional(Frequency),
    max_price: Type.Optional(MaxPriceField('null removes the ceiling.')),
    currency: Type.Optional(CurrencyField('null removes it.')),
  },
  { additionalProperties: false, minProperties: 1, examples: [{ frequency_minutes: 30, max_price: null }] },
)
export type UpdateAlertBody = Static<typeof UpdateAlertBody>

/** An alert as the API shows it. */
export const AlertView = Type.Object(
  {
    id: AlertIdText,
    user_id: Type.String(),
    email: Type.String(),
    phrase: Type.String(),
    frequency_minutes: Frequency,
    max_price: NullableDecimal('The price ceiling, exact, or null for none'),
    currency: Type.Union([Type.String(), Type.Null()], { description: 'The ceiling\'s currency, or null for any' }),
    status: AlertStatus,
    paused_by: Type.Union([PausedBy, Type.Null()], {
      description: 'Who paused it: `user` (the API) or `unsubscribe` (an email\'s link); null while active',
    }),
    next_run_at: Type.String({ format: 'date-time', description: 'When it runs next (while active); always a scheduler tick' }),
    last_run_at: NullableTime('When it last ran, or null'),
    created_at: Type.String({ format: 'date-time' }),
    updated_at: Type.String({ format: 'date-time' }),
  },
  {
    examples: [
      {
        id: '42',
        user_id: 'user1',
        email: 'ada@example.com',
        phrase: 'mechanical keyboard',
        frequency_minutes: 10,
        max_price: '120.00',
        currency: 'EUR',
        status: 'active',
        paused_by: null,
        next_run_at: '2026-01-02T09:02:00.000Z',
        last_run_at: null,
        created_at: '2026-01-02T09:00:31.000Z',
        updated_at: '2026-01-02T09:00:31.000Z',
      },
    ],
  },
)
export type AlertView = Static<typeof AlertView>

export const AlertIdParams = Type.Object({ id: Type.String({ pattern: '^[0-9]{1,19}$', description: 'The alert\'s id' }) })

export const ListAlertsQuery = Type.Object(
  {
    email: Type.Optional({ ...EmailField, description: 'Only the alerts sending to this address' }),
    // An enum rather than the column's union of literals: one error, not one per literal.
    status: Type.Optional(Type.Enum(['active', 'paused'], { description: 'Only the active, or only the paused, alerts' })),
    user_id: Type.Optional({ ...UserId, description: 'Only this user\'s alerts (admin tokens; a user token sees its own anyway)' }),
    ...pageQueryFields,
  },
  { additionalProperties: false },
)
export type ListAlertsQuery = Static<typeof ListAlertsQuery>

/** One run of an alert. */
export const RunView = Type.Object({
  id: IdText('The run\'s id (filter its items with `run_id`)'),
  due_at: Type.String({ format: 'date-time', description: 'The scheduler tick the run was due at' }),
  status: RunStatus,
  attempts: Type.Integer({ description: 'Attempts made so far' }),
  item_count: Type.Union([Type.Integer(), Type.Null()], { description: 'Items stored (at most 20); null until done' }),
  result_total: Type.Union([Type.Integer(), Type.Null()], { description: 'Matches eBay reported in all; null until done' }),
  cheapest_total: NullableDecimal('The cheapest total (price and shipping) found, exact; null when none was'),
  cheapest_currency: Type.Union([Type.String(), Type.Null()]),
  skipped_items: Type.Union(
    [Type.Array(Type.Object({ item_id: Type.Union([Type.String(), Type.Null()]), reason: Type.String() })), Type.Null()],
    { description: 'Items eBay sent that could not be used, and why' },
  ),
  error: Type.Union([Type.String(), Type.Null()], { description: 'Why the run failed' }),
  finished_at: NullableTime('When it was done, failed or skipped'),
})
export type RunView = Static<typeof RunView>

/** One item a run found. */
export const ItemView = Type.Object({
  run_id: IdText('The run that found it'),
  due_at: Type.String({ format: 'date-time', description: 'The due time of that run' }),
  position: Type.Integer({ description: 'Its rank in the run, cheapest first (0-based)' }),
  item_id: Type.String({ description: 'eBay\'s item id' }),
  title: Type.String(),
  price: Type.String({ description: 'Decimal, exact as eBay sent it' }),
  currency: Type.String(),
  shipping: Type.Union([Type.String(), Type.Null()], { description: 'Cheapest shipping, or null when unknown' }),
  total: Type.String({ description: 'price and shipping' }),
  item_web_url: Type.String(),
  image_url: Type.Union([Type.String(), Type.Null()]),
})
export type ItemView = Static<typeof ItemView>

export const ItemsQuery = Type.Object(
  { run_id: Type.Optional(IdText('Only the items of this run')), ...pageQueryFields },
  { additionalProperties: false },
)
export type ItemsQuery = Static<typeof ItemsQuery>

/** Most points a price history answers. */
export const MAX_PRICE_POINTS = 5000

export const PriceHistoryQuery = Type.Object(
  {
    from: Type.Optional(Type.String({ format: 'date-time', description: 'Runs due at or after this instant' })),
    to: Type.Optional(Type.String({ format: 'date-time', description: 'Runs due before this instant' })),
  },
  { additionalProperties: false },
)
export type PriceHistoryQuery = Static<typeof PriceHistoryQuery>

export const PriceHistory = Type.Object({
  points: Type.Array(
    Type.Object({
      due_at: Type.String({ format: 'date-time' }),
      cheapest_total: Type.String({ description: 'Decimal, exact' }),
      currency: Type.String(),
    }),
    { description: `Oldest first; at most ${MAX_PRICE_POINTS}` },
  ),
  truncated: Type.Boolean({ description: `Whether the range held more than ${MAX_PRICE_POINTS} points: then only the newest are given` }),
})
export type PriceHistory = Static<typeof PriceHistory>

export const UnsubscribeParams = Type.Object({
  token: Type.String({ minLength: 1, maxLength: 200, description: 'The signed token of the email\'s link' }),
})

/** The answer of an unsubscribe, as JSON. */
export const Unsubscribed = Type.Object({
  alert_id: AlertIdText,
  phrase: Type.String(),
  status: Type.Literal('paused'),
  paused_by: PausedBy,
})
export type Unsubscribed = Static<typeof Unsubscribed>
