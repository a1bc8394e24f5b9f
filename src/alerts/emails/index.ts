/** The alert emails: renderers of the list email and the insight email (subject, HTML part, text part). */
export { type ListEmailInput, type RenderedEmail, renderListEmail } from './list-email.ts'
export { type InsightEmailInput, type InsightInput, type InsightItem, renderInsightEmail } from './insight-email.ts'
