/** The list email: an alert's cheapest eBay items at one due time. */
import { formatDue, frequencyText, httpUrl, lowestTotal, oneLine, PHRASE_MAX_CHARS, plural, shippingLabel, TITLE_MAX_CHARS } from './format.ts'
import { htmlTemplate, type LayoutData, textTemplate } from './templates.ts'
import type { EbayItem } from '../ebay.client.ts'

/** What {@link renderListEmail} needs. */
export interface ListEmailInput {
  /** The alert, as far as the email tells about it. */
  alert: { id: string; phrase: string; frequency_minutes: number; email: string }
  /** The due time the items were searched for. */
  dueAt: Date
  /**
   * The items, cheapest first, as eBay gave them: amounts are decimal strings printed as
   * they are, `shipping` null when eBay gave no cost; `total` is price plus shipping.
   */
  items: ReadonlyArray<Omit<EbayItem, 'itemId'>>
  /** The one-click unsubscribe link (an http or https URL). */
  unsubscribeUrl: string
}

/** A rendered email. */
export interface RenderedEmail {
  subject: string
  html: string
  text: string
}

/** An item as the templates show it. */
interface ItemView {
  title: string
  /** The item's page, or null when eBay's link is not an http(s) URL. */
  url: string | null
  imageUrl: string | null
  price: string
  shipping: string
  total: string
}

interface ListView extends LayoutData {
  phrase: string
  lead: string
  items: ItemView[]
}

const renderHtml = htmlTemplate<ListView>('list.html.eta')
const renderText = textTemplate<ListView>('list.txt.eta')

/** The unsubscribe link, refused unless http(s): an email must not go out without a working one. */
export function checkedUnsubscribeUrl(url: string): string {
  const checked = httpUrl(url)
  if (checked === null) throw new TypeError('the unsubscribe URL must be an absolute http or https URL')
  return checked
}

/**
 * Renders the list email: subject (`Bourse alert "drone": 20 items from 12.50 USD`), an
 * HTML part with a table of the items, and a text part listing the same. Titles and links
 * are eBay's and treated as outside input: escaped, made one line, and a link or image
 * that is not http(s) is left out.
 */
export function renderListEmail(input: ListEmailInput): RenderedEmail {
  const phrase = oneLine(input.alert.phrase, PHRASE_MAX_CHARS)
  const items = input.items.map((item): ItemView => {
    const currency = oneLine(item.currency, 10)
    return {
      title: oneLine(item.title, TITLE_MAX_CHARS) || '(untitled item)',
      url: httpUrl(item.itemWebUrl),
      imageUrl: httpUrl(item.imageUrl),
      price: `${oneLine(item.price, 40)} ${currency}`,
      shipping: shippingLabel(item.shipping, currency),
      total: `${oneLine(item.total, 40)} ${currency}`,
    }
  })
  const first = input.items[0]
  const currency = first === undefined ? undefined : oneLine(first.currency, 10)
  const lowest = first === undefined ? undefined : lowestTotal(input.items, first.currency)
  const subject =
    first === undefined
      ? `Bourse alert "${phrase}": no items found`
      : `Bourse alert "${phrase}": ${plural(items.length, 'item')}${lowest === undefined ? '' : ` from ${lowest} ${currency}`}`
  const due = formatDue(input.dueAt)
  const view: ListView = {
    subject,
    phrase,
    lead:
      items.length === 0
        ? `eBay had no items for "${phrase}" at ${due}.`
        : `The ${items.length === 1 ? 'cheapest item' : `${items.length} cheapest items`} on eBay for "${phrase}" at ${due}, cheapest first.`,
    items,
    why:
      `You get this email because an alert for "${phrase}" sends the cheapest eBay items ` +
      `${frequencyText(input.alert.frequency_minutes)} to ${oneLine(input.alert.email, 254)}.`,
    unsubscribeUrl: checkedUnsubscribeUrl(input.unsubscribeUrl),
  }
  return { subject, html: renderHtml(view), text: renderText(view) }
}
