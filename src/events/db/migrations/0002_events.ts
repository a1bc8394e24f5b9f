/** The Eye: trusted applications, the event type registry, events and event errors. */
import { type Kysely, sql } from 'kysely'

export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema
    .createTable('apps')
    .addColumn('id', 'uuid', (c) => c.primaryKey())
    .addColumn('name', 'text', (c) => c.notNull().unique())
    .addColumn('token_hash', 'text', (c) => c.notNull().unique())
    .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn('revoked_at', 'timestamptz')
    .execute()

  await db.schema
    .createTable('event_types')
    .addColumn('category', 'text', (c) => c.notNull())
    .addColumn('name', 'text', (c) => c.notNull())
    .addColumn('schema', 'jsonb', (c) => c.notNull())
    .addColumn('description', 'text')
    .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn('updated_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addPrimaryKeyConstraint('event_types_pkey', ['category', 'name'])
    .execute()

  await db.schema
    .createTable('events')
    .addColumn('id', 'uuid', (c) => c.primaryKey())
    .addColumn('app_id', 'uuid', (c) => c.notNull().references('apps.id'))
    .addColumn('session_id', 'text', (c) => c.notNull())
    .addColumn('category', 'text', (c) => c.notNull())
    .addColumn('name', 'text', (c) => c.notNull())
    .addColumn('data', 'jsonb', (c) => c.notNull())
    .addColumn('occurred_at', 'timestamptz', (c) => c.notNull())
    .addColumn('received_at', 'timestamptz', (c) => c.notNull())
    .addColumn('stored_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    /** False when the type had no registered schema and was stored as it came. */
    .addColumn('validated', 'boolean', (c) => c.notNull().defaultTo(true))
    .execute()
  await db.schema.createIndex('events_session').on('events').columns(['session_id', 'occurred_at', 'id']).execute()
  await db.schema.createIndex('events_type_time').on('events').columns(['category', 'name', 'occurred_at desc', 'id desc']).execute()
  await db.schema.createIndex('events_time').on('events').columns(['occurred_at desc', 'id desc']).execute()
  await db.schema.createIndex('events_app_time').on('events').columns(['app_id', 'occurred_at desc', 'id desc']).execute()

  await db.schema
    .createTable('event_errors')
    .addColumn('id', 'uuid', (c) => c.primaryKey())
    .addColumn('app_id', 'uuid', (c) => c.notNull().references('apps.id'))
    .addColumn('session_id', 'text')
    .addColumn('category', 'text')
    .addColumn('name', 'text')
    /** The event exactly as the application sent it. */
    .addColumn('raw', 'jsonb', (c) => c.notNull())
    /** Every reason: `[{ "field": "/data/host", "message": "is required" }]`. */
    .addColumn('reasons', 'jsonb', (c) => c.notNull())
    .addColumn('received_at', 'timestamptz', (c) => c.notNull())
    .addColumn('stored_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .execute()
  await db.schema.createIndex('event_errors_time').on('event_errors').columns(['stored_at desc', 'id desc']).execute()
  await db.schema.createIndex('event_errors_app_time').on('event_errors').columns(['app_id', 'stored_at desc', 'id desc']).execute()

  // The challenge's three event types.
  const page = { host: { type: 'string', minLength: 1 }, path: { type: 'string', minLength: 1 } }
  const types = [
    ['page interaction', 'pageview', { type: 'object', required: ['host', 'path'], properties: page }],
    [
      'page interaction',
      'cta click',
      { type: 'object', required: ['host', 'path', 'element'], properties: { ...page, element: { type: 'string', minLength: 1 } } },
    ],
    [
      'form interaction',
      'submit',
      {
        type: 'object',
        required: ['host', 'path', 'form'],
        properties: {
          ...page,
          form: {
            type: 'object',
            required: ['first_name', 'last_name'],
            properties: { first_name: { type: 'string' }, last_name: { type: 'string' } },
          },
        },
      },
    ],
  ] as const
  for (const [category, name, schema] of types) {
    await sql`insert into event_types (category, name, schema) values (${category}, ${name}, ${JSON.stringify(schema)}::jsonb)`.execute(db)
  }
}

export async function down(db: Kysely<unknown>): Promise<void> {
  for (const table of ['event_errors', 'events', 'event_types', 'apps']) {
    await db.schema.dropTable(table).ifExists().execute()
  }
}
