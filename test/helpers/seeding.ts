/**
 * A test file's bench for `bourse seed`: the test Redis, a PostgreSQL schema of its own
 * and a temporary folder for the fixture files it writes, opened before its tests and
 * closed after them.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before } from 'node:test'
import type { Redis } from 'ioredis'
import { openTestDb, type TestDb } from './db.ts'
import { closeTestRedis, openTestRedis, runCli, testEnv } from './infra.ts'

/** What {@link useSeedBench} opens; its fields are set once the file's `before` has run. */
export interface SeedBench {
  readonly redis: Redis
  readonly testDb: TestDb
  /** Writes `lines` as a fixture file and runs `bourse seed [args] FILE` on it. */
  seed(lines: readonly string[], args?: readonly string[]): ReturnType<typeof runCli>
}

/** Registers the file's `before` and `after` hooks that open and close a {@link SeedBench}. */
export function useSeedBench(): SeedBench {
  let redis: Redis | undefined
  let testDb: TestDb | undefined
  let dir: string | undefined
  let files = 0
  before(async () => {
    redis = await openTestRedis()
    testDb = await openTestDb()
    dir = mkdtempSync(join(tmpdir(), 'bourse-seed-'))
  })
  after(async () => {
    try {
      if (redis) await closeTestRedis(redis)
      await testDb?.close()
    } finally {
      if (dir) rmSync(dir, { recursive: true, force: true })
    }
  })
  const opened = <T>(value: T | undefined): T => {
    if (value === undefined) throw new Error('the seed bench is used before its before hook ran')
    return value
  }
  return {
    get redis() {
      return opened(redis)
    },
    get testDb() {
      return opened(testDb)
    },
    seed(lines, args = []) {
      const file = join(opened(dir), `fixture-${++files}.txt`)
      writeFileSync(file, `${lines.join('\n')}\n`)
      return runCli(['seed', ...args, file], testEnv(opened(testDb).env))
    },
  }
}
