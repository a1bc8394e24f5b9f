/** The CLI as users run it: a real process, its exit codes, its help. */
import assert from 'node:assert/strict'
import { once } from 'node:events'
import { describe, it } from 'node:test'
import { commands } from '../src/services/commands.ts'
import { runCli, startCli } from './helpers/infra.ts'

const escape = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')

describe('bourse (the CLI)', () => {
  it('--help exits 0 and lists every command with its summary', async () => {
    const result = await runCli(['--help'])
    assert.equal(result.code, 0, result.stderr)
    assert.match(result.stdout, /^Usage: bourse <command> \[options\]/)
    assert.ok(commands.length > 0)
    for (const command of commands) {
      assert.match(result.stdout, new RegExp(`^  ${escape(command.name)} +${escape(command.summary)}$`, 'm'))
    }
    assert.equal(result.stderr, '')
  })

  it("prints each command's own help with exit 0", async () => {
    const results = await Promise.all(commands.map((c) => runCli([c.name, '--help'])))
    results.forEach((result, i) => {
      const name = commands[i]!.name
      assert.equal(result.code, 0, `${name} --help: ${result.stderr}`)
      assert.match(result.stdout, new RegExp(`^Usage: bourse ${escape(name)}(\\s|$)`), `${name} --help`)
      assert.match(result.stdout, /--help/, `${name} --help lists --help`)
    })
  })

  it('refuses an unknown command with exit 2 and the command list on stderr', async () => {
    const result = await runCli(['no-such-command'])
    assert.equal(result.code, 2)
    assert.match(result.stderr, /Unknown command: no-such-command/)
    for (const command of commands) assert.match(result.stderr, new RegExp(`^  ${escape(command.name)} `, 'm'))
    assert.equal(result.stdout, '')
  })

  it('exits non-zero with the usage when given no arguments', async () => {
    const result = await runCli([])
    assert.notEqual(result.code, 0)
    assert.equal(result.signal, null)
    assert.match(result.stdout + result.stderr, /Usage: bourse <command> \[options\]/)
  })

  it('a reader that closed its end early (| head -1) ends the command quietly, with its own exit code', async () => {
    const child = startCli(['--help'])
    child.stdout!.destroy()
    let stderr = ''
    child.stderr!.setEncoding('utf8').on('data', (d: string) => {
      stderr += d
    })
    const [code, signal] = (await once(child, 'exit')) as [number | null, NodeJS.Signals | null]
    assert.equal(stderr, '', 'no EPIPE stack')
    assert.deepEqual([code, signal], [0, null])
  })

  it('refuses an unknown option with exit 2, naming it', async () => {
    const result = await runCli(['update-prices', '--nope'])
    assert.equal(result.code, 2)
    assert.match(result.stderr, /--nope/)
    assert.match(result.stderr, /Usage: bourse update-prices/)
    assert.equal(result.stdout, '')
  })
})
