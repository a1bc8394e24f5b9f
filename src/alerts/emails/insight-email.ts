/** The insight email: what an alert's newest run says beyond its list (a price drop, a flat market, an item under the maximum). */
import { checkedUnsubscribeUrl, type RenderedEmail } from './list-email.ts'
import { httpUrl, oneLine, PHRASE_MAX_CHARS, plural, TITLE_MAX_CHARS } from './format.ts'
import { htmlTemplate, type LayoutData, textTemplate } from './templates.ts'

/** An item an insight is about. */
export interface InsightItem {
  title: string
  total: string
  currency: string
  itemWebUrl: string
}

/** One insight, as the alerts' insight rules give it (extra fields are ignored). */
export type InsightInput =
  | { kind: 'price_drop'; item: InsightItem; previousCheapest: string; currentCheapest: string; dropPercent: string }
  | { kind: 'flat'; price: string; currency: string; sinceDays: number; sinceMs?: number; item?: InsightItem }
  | { kind: 'under_max'; item: InsightItem; maxPrice: string }

/** What {@link renderInsightEmail} needs. */
export interface InsightEmailInput {
  /** The alert, as far as the email tells about it; `currency` is the alert's own, when it has one. */
  alert: { id: string; phrase: string; email: string; max_price: string | null; currency: string | null }
  /** The insights, in the order to show them (the first names the subject). */
  insights: readonly InsightInput[]
  /** The one-click unsubscribe link (an http or https URL). */
  unsubscribeUrl: string
}

interface InsightView {
  headline: string
  detail: string
  item: { title: string; url: string | null; total: string } | null
}

interface InsightEmailView extends LayoutData {
  phrase: string
  lead: string
  insights: InsightView[]
}

const renderHtml = htmlTemplate<InsightEmailView>('insight.html.eta')
const renderText = textTemplate<InsightEmailView>('insight.txt.eta')

const amount = (value: string, currency: string) => `${oneLine(value, 40)} ${oneLine(currency, 10)}`

function itemView(item: InsightItem): InsightView['item'] {
  return { title: oneLine(item.title, TITLE_MAX_CHARS) || '(untitled item)', url: httpUrl(item.itemWebUrl), total: amount(item.total, item.currency) }
}

/** How long a flat market has lasted, in words: days, or hours and minutes under a day (a short `INSIGHT_FLAT_MS`). */
function flatSpan(insight: { sinceDays: number; sinceMs?: number }): string {
  const ms = insight.sinceMs
  if (ms === undefined || insight.sinceDays >= 1) return plural(insight.sinceDays, 'day')
  const minutes = Math.floor(ms / 60_000)
  return minutes >= 60 ? plural(Math.floor(minutes / 60), 'hour') : plural(minutes, 'minute')
}

/** One insight in words: the headline and detail of its block, and its part of a subject line. */
function describe(insight: InsightInput, alert: InsightEmailInput['alert']): InsightView & { subject: string } {
  switch (insight.kind) {
    case 'price_drop': {
      const percent = oneLine(insight.dropPercent, 20)
      const current = amount(insight.currentCheapest, insight.item.currency)
      return {
        subject: `the cheapest price fell ${percent}% to ${current}`,
        headline: `The cheapest price fell ${percent}%`,
        detail: `From ${amount(insight.previousCheapest, insight.item.currency)} to ${current}.`,
        item: itemView(insight.item),
      }
    }
    case 'flat': {
      const price = amount(insight.price, insight.currency)
      const days = flatSpan(insight)
      return {
        subject: `the cheapest price has stayed at ${price} for ${days}`,
        headline: `The cheapest price has not moved for ${days}`,
        detail: `It has stayed at ${price}: a flat market, no need to hurry.`,
        item: insight.item ? itemView(insight.item) : null,
      }
    }
    case 'under_max': {
      const max = amount(insight.maxPrice, alert.currency ?? insight.item.currency)
      const total = amount(insight.item.total, insight.item.currency)
      return {
        subject: `an item at ${total}, under your ${max} maximum`,
        headline: `An item under your maximum of ${max}`,
        detail: `The cheapest item is now at ${total}.`,
        item: itemView(insight.item),
      }
    }
  }
}

/**
 * Renders the insight email: the first insight names the subject
 * (`Bourse insight "drone": the cheapest price fell 12.50% to 17.50 USD`), each insight
 * gets a block in the HTML part and a paragraph in the text part. Titles and links are
 * treated as outside input, as in the list email.
 */
export function renderInsightEmail(input: InsightEmailInput): RenderedEmail {
  const phrase = oneLine(input.alert.phrase, PHRASE_MAX_CHARS)
  const described = input.insights.map((insight) => describe(insight, input.alert))
  const first = described[0]
  const more = described.length > 1 ? ` (and ${plural(described.length - 1, 'more insight')})` : ''
  const subject = first === undefined ? `Bourse insight "${phrase}": nothing new` : `Bourse insight "${phrase}": ${first.subject}${more}`
  const maximum =
    input.alert.max_price === null ? '' : `, and about items under ${amount(input.alert.max_price, input.alert.currency ?? '').trimEnd()}`
  const view: InsightEmailView = {
    subject,
    phrase,
    lead: `What the latest eBay prices for "${phrase}" say.`,
    insights: described.map(({ headline, detail, item }) => ({ headline, detail, item })),
    why: `You get this email because an alert for "${phrase}" tells ${oneLine(input.alert.email, 254)} when its prices move${maximum}.`,
    unsubscribeUrl: checkedUnsubscribeUrl(input.unsubscribeUrl),
  }
  return { subject, html: renderHtml(view), text: renderText(view) }
}
