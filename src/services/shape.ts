/** The services' `defineService`: `ctx.db` is typed with every table, and every migration is applied. */
import { type Database, migrations } from '../database.ts'
import { createServiceShape } from '../platform/service.ts'

export const defineService = createServiceShape<Database>({ migrations })
