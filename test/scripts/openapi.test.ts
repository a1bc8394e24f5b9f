/**
 * The API's OpenAPI document as `scripts/openapi.ts` writes it (no server, no
 * connection): complete enough to lint clean, and good enough to generate a typed client
 * from with openapi-typescript that compiles.
 */
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { promisify } from 'node:util'
import openapiTS, { astToString } from 'openapi-typescript'
import ts from 'typescript'
import { repoRoot } from '../helpers/infra.ts'

interface Operation {
  operationId?: string
  security?: unknown[]
  responses: Record<string, unknown>
}
interface Document {
  openapi: string
  info: { license?: { name: string } }
  servers?: Array<{ url: string }>
  paths: Record<string, Record<string, Operation>>
}

let doc: Document
let dir: string

before(async () => {
  const { stdout } = await promisify(execFile)(process.execPath, ['scripts/openapi.ts'], { cwd: repoRoot })
  doc = JSON.parse(stdout) as Document
  dir = await mkdtemp(join(tmpdir(), 'bourse-openapi-'))
})
after(async () => {
  if (dir) await rm(dir, { recursive: true, force: true })
})

const operations = () => Object.entries(doc.paths).flatMap(([path, item]) => Object.entries(item).map(([method, op]) => ({ path, method, op })))

/** The diagnostics of compiling `source` next to the generated `api.ts`. */
async function compile(name: string, source: string): Promise<string[]> {
  const file = join(dir, name)
  await writeFile(file, source)
  const program = ts.createProgram([file], {
    strict: true,
    noUncheckedIndexedAccess: true,
    noEmit: true,
    target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
    allowImportingTsExtensions: true,
    types: [],
  })
  return ts.getPreEmitDiagnostics(program).map((d) => ts.flattenDiagnosticMessageText(d.messageText, '\n'))
}

describe('the OpenAPI document', () => {
  it('names, secures and documents a client error for every operation; has servers and a license', () => {
    assert.equal(doc.openapi, '3.1.0')
    assert.ok(doc.info.license?.name)
    assert.ok((doc.servers ?? []).length > 0)
    const ids = new Set<string>()
    for (const { path, method, op } of operations()) {
      const where = `${method.toUpperCase()} ${path}`
      assert.ok(op.operationId, `${where}: operationId`)
      assert.ok(!ids.has(op.operationId), `${where}: operationId ${op.operationId} is unique`)
      ids.add(op.operationId)
      assert.ok(Array.isArray(op.security), `${where}: security is declared`)
      assert.ok(Object.keys(op.responses).some((status) => /^4(\d\d|XX)$/.test(status)), `${where}: a 4xx response`)
    }
    for (const path of ['/health', '/livez', '/readyz', '/metrics']) {
      assert.deepEqual(doc.paths[path]?.get?.security, [], `${path} needs no credentials`)
    }
    assert.deepEqual(doc.paths['/api/orders']?.get?.security, [{ bearer: [] }])
    // Routes guarded by more than requireAuth alone (an admin, or REPORTS_TOKEN) are documented as needing a token too.
    assert.deepEqual(doc.paths['/api/reports']?.get?.security, [{ bearer: [] }])
    assert.deepEqual(doc.paths['/api/reports']?.post?.security, [{ bearer: [] }])
    assert.deepEqual(doc.paths['/api/status']?.get?.security, [{ bearer: [] }])
  })

  it('generates a typed client with openapi-typescript that compiles', async () => {
    await writeFile(join(dir, 'api.ts'), astToString(await openapiTS(doc as never)))
    const client = `
import type { operations, paths } from './api.ts'

type OrdersPage = paths['/api/orders']['get']['responses'][200]['content']['application/json']
type Order = OrdersPage['items'][number]
export function firstStatus(page: OrdersPage): 'received' | 'verifying' | 'filled' | 'rejected' | undefined {
  return page.items[0]?.status
}
export const rejected: Order['reason'] = 'insufficient_credit'
export const lastPage: OrdersPage = { items: [], next_cursor: null }

export const errorsQuery: operations['listEventErrors']['parameters']['query'] = { session_id: 's1', limit: 10 }
type ErrorsPage = operations['listEventErrors']['responses'][200]['content']['application/json']
export const reasons = (page: ErrorsPage): string[] => page.items.flatMap((e) => e.reasons.map((r) => r.field))

export const buy: NonNullable<paths['/api/buy-stock']['post']['requestBody']>['content']['application/json'] = {
  user: 'user1',
  stockname: 'stock1',
  quantity: 1,
}
export const notReady: paths['/readyz']['get']['responses'][503]['content']['application/health+json'] = {
  status: 'fail',
  checks: { 'redis:responseTime': [{ status: 'fail', observedValue: 2000, observedUnit: 'ms', time: '2026-01-02T09:00:00Z' }] },
}
export const failure: paths['/api/orders']['get']['responses'][400]['content']['application/json'] = {
  error: { code: 'invalid_cursor', message: 'cursor is not valid' },
}
`
    assert.deepEqual(await compile('client.ts', client), [])
    // The check can fail: a status the API never answers does not compile.
    const wrong = `import type { paths } from './api.ts'
export const s: paths['/api/orders/{id}']['get']['responses'][200]['content']['application/json']['status'] = 'done'
`
    assert.ok((await compile('wrong.ts', wrong)).length > 0)
  })
})
