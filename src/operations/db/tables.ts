/**
 * The operations domain's tables, as Kysely sees them. Its migrations (`./migrations`)
 * create them; these types must follow every migration.
 */
import type { ColumnType, Generated, Selectable } from 'kysely'
import type { BigIntColumn, CreatedAt } from '../../platform/db/columns.ts'

/** Reports filed by services and operators. */
export interface ServiceReportsTable {
  /** bigserial, read as a decimal string. */
  id: Generated<string>
  level: 'info' | 'warning' | 'error'
  service: string
  instance: string | null
  status: string
  data: ColumnType<Record<string, unknown>, string, string>
  /** When it happened (the service's clock for a service's report). */
  reported_at: ColumnType<Date, Date | string, Date | string>
  /** When PostgreSQL stored it. */
  received_at: CreatedAt
  /** The token that filed it over HTTP (`reports-token` for `REPORTS_TOKEN`); null for a service's own, through the stream. */
  filed_by: string | null
  /** The Redis stream entry it came from (milliseconds and sequence); null when filed over HTTP. */
  stream_ms: BigIntColumn | null
  stream_seq: BigIntColumn | null
}

/** Every table of the domain. */
export interface OperationsTables {
  service_reports: ServiceReportsTable
}

/** A report as read. */
export type ServiceReportRow = Selectable<ServiceReportsTable>
