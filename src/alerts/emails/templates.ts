/**
 * The alert emails' templates, read, styled and compiled once when the module loads.
 *
 * Eta, with every `<%= %>` escaped for HTML (autoEscape). The style sheet is written into
 * style attributes by juice (many mail readers ignore a <style> element) on the template
 * sources themselves, not on each email: juice sets Eta's `<% %>` tags aside while it
 * works, so the styled templates compile as they were, and an email costs only its Eta
 * render (inlining a 20-item email each time took about 30 ms of CPU). What cannot be
 * inlined (the media query) stays in a <style> in the layout. The text parts use a second
 * Eta without escaping: they are plain text, and their values were made one clean line
 * each before (see `format.ts`).
 */
import { readFileSync } from 'node:fs'
import { Eta } from 'eta'
import juice from 'juice'

const read = (name: string) => readFileSync(new URL(`./templates/${name}`, import.meta.url), 'utf8')

const css = read('email.css')
/** No `height="auto"` on images: not a valid attribute value, and the style says it. */
const styling = { extraCss: css, applyHeightAttributes: false } satisfies juice.Options
const html = new Eta({ autoEscape: true, cache: true })
html.loadTemplate('@layout', html.compile(juice(read('layout.html.eta'), styling)))
// Text: whitespace is the layout, so nothing is trimmed but what a template asks with `-%>`.
const text = new Eta({ autoEscape: false, autoTrim: false, cache: true })

/** What every alert email's layout shows around its body. */
export interface LayoutData {
  /** The subject, as the HTML document's title. */
  subject: string
  /** Why the recipient gets this email (the footer). */
  why: string
  /** The one-click unsubscribe link (the footer). */
  unsubscribeUrl: string
}

/** Compiles an HTML template (shown in the layout), styled with the style sheet. */
export function htmlTemplate<T extends LayoutData>(name: string): (data: T) => string {
  // The body is styled on its own, so its media queries are the layout's business.
  const template = html.compile(juice(read(name), { ...styling, insertPreservedExtraCss: false }))
  return (data) => html.render(template, data)
}

/** Compiles a text template. */
export function textTemplate<T extends object>(name: string): (data: T) => string {
  const template = text.compile(read(name))
  return (data) => text.render(template, data)
}
