/**
 * BuyStock (the seed's step 4): may this user buy this many shares now? A check only:
 * it reads the user's credit and the stock's latest price from Redis and debits nothing.
 */
import { NotFound } from '../platform/http/errors.ts'
import type { Redis } from '../platform/redis.ts'
import { createTurnLoader } from '../platform/turn-loader.ts'
import { fromUnits, toUnits } from './money.ts'
import type { BuyStockBody, BuyStockDecision } from './trading.schemas.ts'

/** Accept when the credit covers price x quantity, exactly (no float rounding). */
export function decideBuy(credit: number, price: number, quantity: number): BuyStockDecision {
  const cost = toUnits(price) * BigInt(quantity)
  return {
    decision: toUnits(credit) >= cost ? 'Accept' : 'Deny',
    price,
    cost: fromUnits(cost),
    credit,
  }
}

/** Where BuyStock reads prices: the market domain's latest prices. */
export interface PriceReader {
  readLatestPrices(stocks: readonly string[]): Promise<Array<number | null | undefined>>
}

/** The credit of a `userN` contract JSON, or undefined when it has none. */
export function creditOf(json: string): number | undefined {
  try {
    const value = JSON.parse(json) as { credit?: unknown }
    return typeof value.credit === 'number' && Number.isFinite(value.credit) && value.credit >= 0 ? value.credit : undefined
  } catch {
    return undefined
  }
}

/** BuyStock over Redis. */
export interface BuyStockService {
  /** Decides; throws NotFound for an unknown user or stock (or a stock without a price). */
  check(request: BuyStockBody): Promise<BuyStockDecision>
}

/**
 * Creates the service on a Redis connection and the market's price reader. The checks
 * of one turn of the event loop read their users with one MGET and their prices with
 * one script call.
 */
export function createBuyStockService(deps: { redis: Redis; prices: PriceReader }): BuyStockService {
  const readUser = createTurnLoader((users) => deps.redis.mget(users))
  const readPrice = createTurnLoader((stocks) => deps.prices.readLatestPrices(stocks))
  return {
    async check(request) {
      const [userJson, price] = await Promise.all([readUser(request.user), readPrice(request.stockname)])
      if (userJson === null) throw new NotFound(`user ${request.user} does not exist`, { field: 'body.user' })
      const credit = creditOf(userJson)
      // A key that is not an account (no credit) is not a user we can trade for.
      if (credit === undefined) throw new NotFound(`user ${request.user} does not exist`, { field: 'body.user' })
      if (price === undefined) throw new NotFound(`stock ${request.stockname} does not exist`, { field: 'body.stockname' })
      if (price === null) throw new NotFound(`stock ${request.stockname} has no price yet`, { field: 'body.stockname' })
      return decideBuy(credit, price, request.quantity)
    },
  }
}
