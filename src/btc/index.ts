/** The BTC orders domain: buying BTC at the cached price under a cap. */
export { btcAmount, parseFiatAmount } from './btc-amount.ts'
export { btcRoutes, type BtcRoutesDeps } from './btc.routes.ts'
export { BTC_QUOTE_KEY, parseBtcQuote, readBtcQuote } from './quote.ts'
