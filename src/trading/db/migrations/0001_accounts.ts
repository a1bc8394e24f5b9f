/** Accounts, holdings, orders, transactions, callback outbox and API tokens. */
import { type Kysely, sql } from 'kysely'

export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('users')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('contract_id', 'integer')
    .addColumn('credit', sql`numeric(20,4)`, (c) => c.notNull().check(sql`credit >= 0`))
    .addColumn('webhook_secret', 'text', (c) => c.notNull())
    .addColumn('version', 'bigint', (c) => c.notNull().defaultTo(1))
    .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn('updated_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .execute()

  await db.schema
    .createTable('holdings')
    .addColumn('user_id', 'text', (c) => c.notNull().references('users.id').onDelete('cascade'))
    .addColumn('stock', 'text', (c) => c.notNull())
    .addColumn('quantity', 'bigint', (c) => c.notNull().check(sql`quantity >= 0`))
    .addColumn('cost', sql`numeric(20,4)`, (c) => c.notNull().check(sql`cost >= 0`))
    .addPrimaryKeyConstraint('holdings_pkey', ['user_id', 'stock'])
    .execute()

  await db.schema
    .createTable('orders')
    .addColumn('id', 'uuid', (c) => c.primaryKey())
    .addColumn('user_id', 'text', (c) => c.notNull().references('users.id').onDelete('cascade'))
    .addColumn('stock', 'text', (c) => c.notNull())
    .addColumn('side', 'text', (c) => c.notNull().check(sql`side in ('buy', 'sell')`))
    .addColumn('quantity', 'bigint', (c) => c.notNull().check(sql`quantity > 0`))
    .addColumn('callback_url', 'text')
    .addColumn('status', 'text', (c) =>
      c.notNull().check(sql`status in ('received', 'verifying', 'filled', 'rejected')`),
    )
    .addColumn('reason', 'text')
    .addColumn('price', sql`numeric(20,4)`)
    .addColumn('amount', sql`numeric(20,4)`)
    .addColumn('idempotency_key', 'text')
    .addColumn('request_hash', 'text', (c) => c.notNull())
    .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn('updated_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn('verification_started_at', 'timestamptz')
    .addColumn('finished_at', 'timestamptz')
    .addUniqueConstraint('orders_user_idempotency_key', ['user_id', 'idempotency_key'])
    .addCheckConstraint(
      'orders_final_has_result',
      sql`(status = 'filled' and price is not null and reason is null)
        or (status = 'rejected' and reason is not null)
        or status in ('received', 'verifying')`,
    )
    .execute()
  // Keyset pages: newest first, per user and overall.
  await db.schema.createIndex('orders_user_created').on('orders').columns(['user_id', 'created_at desc', 'id desc']).execute()
  await db.schema.createIndex('orders_created').on('orders').columns(['created_at desc', 'id desc']).execute()

  await db.schema
    .createTable('transactions')
    .addColumn('id', 'bigserial', (c) => c.primaryKey())
    .addColumn('order_id', 'uuid', (c) => c.notNull().unique().references('orders.id').onDelete('cascade'))
    .addColumn('user_id', 'text', (c) => c.notNull().references('users.id').onDelete('cascade'))
    .addColumn('stock', 'text', (c) => c.notNull())
    .addColumn('side', 'text', (c) => c.notNull().check(sql`side in ('buy', 'sell')`))
    .addColumn('quantity', 'bigint', (c) => c.notNull().check(sql`quantity > 0`))
    .addColumn('price', sql`numeric(20,4)`, (c) => c.notNull())
    .addColumn('amount', sql`numeric(20,4)`, (c) => c.notNull())
    .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .execute()
  await db.schema.createIndex('transactions_user_id').on('transactions').columns(['user_id', 'id desc']).execute()

  await db.schema
    .createTable('webhook_deliveries')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('order_id', 'uuid', (c) => c.notNull().unique().references('orders.id').onDelete('cascade'))
    .addColumn('user_id', 'text', (c) => c.notNull().references('users.id').onDelete('cascade'))
    .addColumn('url', 'text', (c) => c.notNull())
    .addColumn('event_type', 'text', (c) => c.notNull())
    .addColumn('payload', 'text', (c) => c.notNull())
    .addColumn('status', 'text', (c) => c.notNull().check(sql`status in ('pending', 'delivered', 'dead')`))
    .addColumn('attempts', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('next_attempt_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn('lease_until', 'timestamptz')
    .addColumn('expires_at', 'timestamptz', (c) => c.notNull())
    .addColumn('last_error', 'text')
    .addColumn('last_status', 'integer')
    .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn('delivered_at', 'timestamptz')
    .execute()
  await db.schema
    .createIndex('webhook_deliveries_due')
    .on('webhook_deliveries')
    .column('next_attempt_at')
    .where(sql.ref('status'), '=', 'pending')
    .execute()
  await db.schema
    .createIndex('webhook_deliveries_dead')
    .on('webhook_deliveries')
    .columns(['user_id', 'created_at desc', 'id desc'])
    .where(sql.ref('status'), '=', 'dead')
    .execute()

  await db.schema
    .createTable('api_tokens')
    .addColumn('id', 'uuid', (c) => c.primaryKey())
    .addColumn('token_hash', 'text', (c) => c.notNull().unique())
    .addColumn('user_id', 'text', (c) => c.references('users.id').onDelete('cascade'))
    .addColumn('admin', 'boolean', (c) => c.notNull().defaultTo(false))
    .addColumn('label', 'text')
    .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn('revoked_at', 'timestamptz')
    .addCheckConstraint('api_tokens_user_or_admin', sql`admin or user_id is not null`)
    .execute()
}

export async function down(db: Kysely<unknown>): Promise<void> {
  for (const table of ['api_tokens', 'webhook_deliveries', 'transactions', 'orders', 'holdings', 'users']) {
    await db.schema.dropTable(table).ifExists().execute()
  }
}
