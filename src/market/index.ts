/** What other domains may use of the market data domain. */
export {
  createStockHistoryRepository,
  type StockHistoryRepository,
} from './stock-history.repository.ts'
export { createMarketDataRepository, type MarketDataRepository } from './market-data.repository.ts'
export { marketRoutes, type MarketRoutesDeps } from './market.routes.ts'
export { createTickStreamHub, type TickStreamHub } from './tick-stream.ts'
