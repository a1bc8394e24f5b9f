/** What other domains may use of the market data domain. */
export {
  createStockHistoryRepository,
  type StockHistoryRepository,
} from './stock-history.repository.ts'
