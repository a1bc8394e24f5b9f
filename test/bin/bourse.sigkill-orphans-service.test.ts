/**
 * `bin/bourse.js` on an older Node runs the CLI as a Node 24 child. A supervisor tracks
 * the wrapper's pid; when it SIGKILLs that pid, the child must not go on running alone.
 */
import assert from 'node:assert/strict'
import { spawn, spawnSync } from 'node:child_process'
import { once } from 'node:events'
import { readdir, readFile } from 'node:fs/promises'
import { existsSync } from 'node:fs'
import { delimiter, join } from 'node:path'
import { describe, it } from 'node:test'
import { isProcessAlive } from '../../src/platform/infra/processes.ts'
import { repoRoot, testEnv, waitFor } from '../helpers/infra.ts'

const wrapper = join(repoRoot, 'bin', 'bourse.js')

/** The major version of a node binary, or undefined if it does not run. */
function nodeMajor(node: string): number | undefined {
  const { stdout, status } = spawnSync(node, ['-p', 'process.versions.node'], { encoding: 'utf8' })
  return status === 0 ? Number(stdout.split('.')[0]) : undefined
}

/**
 * A Node older than 24 on this machine, the kind `npx bourse` starts the wrapper with.
 * `npm test` puts the project's Node 24 first on PATH, so the search skips
 * `node_modules/.bin` and also looks where system packages install node.
 */
const olderNode = [...(process.env.PATH ?? '').split(delimiter).filter((dir) => dir !== '' && !dir.includes('node_modules')), '/usr/bin', '/usr/local/bin']
  .map((dir) => join(dir, 'node'))
  .find((node) => existsSync(node) && (nodeMajor(node) ?? 24) < 24)
const skip = olderNode === undefined ? 'no Node older than 24 here: the wrapper runs the CLI in-process' : false

/** The pids whose parent is `parent`, from /proc. */
async function childrenOf(parent: number): Promise<number[]> {
  const pids: number[] = []
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    const status = await readFile(`/proc/${entry}/status`, 'utf8').catch(() => '')
    if (new RegExp(`^PPid:\\s*${parent}$`, 'm').test(status)) pids.push(Number(entry))
  }
  return pids
}

/** Starts `node bin/bourse.js <args>` with the older node; collects stdout and stderr. */
function startWrapper(args: string[], env: NodeJS.ProcessEnv) {
  const child = spawn(olderNode ?? 'node', [wrapper, ...args], { cwd: repoRoot, env, stdio: ['ignore', 'pipe', 'pipe'] })
  let output = ''
  child.stdout.setEncoding('utf8').on('data', (d: string) => (output += d))
  child.stderr.setEncoding('utf8').on('data', (d: string) => (output += d))
  return { child, output: () => output }
}

describe('bin/bourse.js on an older Node', { skip }, () => {
  it('a SIGKILL to the wrapper shuts the Node 24 child down gracefully', async (t) => {
    const { child: wrapperProcess, output } = startWrapper(
      ['verify-sim', '--port', '0', '--instance-id', 'wrapper-sigkill-test'],
      testEnv({ LOG_LEVEL: 'info' }),
    )
    const wrapperPid = wrapperProcess.pid
    assert.ok(wrapperPid !== undefined)
    const wrapperExit = once(wrapperProcess, 'exit')
    const service: { pid?: number } = {}
    t.after(() => {
      // Only if the test failed with the service still up: it is ours, by pid.
      if (service.pid !== undefined) {
        try {
          process.kill(service.pid, 'SIGKILL')
        } catch {
          // gone, as it should be
        }
      }
      if (wrapperProcess.exitCode === null && wrapperProcess.signalCode === null) wrapperProcess.kill('SIGKILL')
    })

    await waitFor(() => /verify-sim listening on http:\/\//.test(output()), {
      timeoutMs: 30_000,
      what: `verify-sim to listen:\n${output()}`,
    })
    const children = await childrenOf(wrapperPid)
    assert.equal(children.length, 1, `the wrapper runs one child: ${children.join(', ')}`)
    const servicePid = children[0]!
    service.pid = servicePid
    assert.match(await readFile(`/proc/${servicePid}/cmdline`, 'utf8'), /src\/cli\.ts\0verify-sim\0/)

    process.kill(wrapperPid, 'SIGKILL')
    await wrapperExit
    await waitFor(async () => !(await isProcessAlive(servicePid)), {
      timeoutMs: 15_000,
      intervalMs: 100,
      what: `the child ${servicePid} to exit after its parent was killed:\n${output()}`,
    })
    // It went through the graceful shutdown, as on SIGTERM, not a crash.
    assert.match(output(), /"reason":"parent exited".*"msg":"shutting down"/)
    assert.match(output(), /"msg":"stopped"/)
  })

  it('a finished command still exits: the IPC channel does not keep it alive', async () => {
    const { child, output } = startWrapper(['status', '--json'], testEnv())
    const [code] = (await once(child, 'exit')) as [number | null]
    assert.ok(code === 0 || code === 1, `status exits 0 or 1 (got ${code}):\n${output()}`)
    assert.match(output(), /^\s*\{/, 'it printed its JSON')
  })
})
