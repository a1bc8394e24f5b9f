/** Services under test as real processes: started, waited for, killed and cleaned up. */
import type { ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { startCli } from './infra.ts'

/** A service process and what it printed. */
export interface ServiceProcess {
  child: ChildProcess
  output(): string
  /** Resolves with the first match of `pattern` in stdout (for example a printed URL). */
  waitForOutput(pattern: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>
  /** SIGKILL, and wait for the exit. */
  kill(): Promise<void>
  /** SIGTERM, and resolve with the exit code. */
  stop(): Promise<number | null>
}

/** Starts `bourse <args>`, keeping its output for diagnosis. */
export function startService(args: string[], env: NodeJS.ProcessEnv): ServiceProcess {
  const child = startCli(args, env)
  let stdout = ''
  let stderr = ''
  const waiters = new Set<() => void>()
  child.stdout?.setEncoding('utf8').on('data', (d: string) => {
    stdout += d
    for (const waiter of waiters) waiter()
  })
  child.stderr?.setEncoding('utf8').on('data', (d: string) => {
    stderr += d
  })
  const exited = once(child, 'exit')
  return {
    child,
    output: () => `${stdout}${stderr}`,
    waitForOutput(pattern, timeoutMs = 30_000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const match = pattern.exec(stdout)
          if (!match) return
          cleanup()
          resolve(match)
        }
        const timer = setTimeout(() => {
          cleanup()
          reject(new Error(`bourse ${args[0]} did not print ${pattern} in ${timeoutMs} ms:\n${stdout}${stderr}`))
        }, timeoutMs)
        const onExit = () => {
          cleanup()
          reject(new Error(`bourse ${args[0]} exited before printing ${pattern}:\n${stdout}${stderr}`))
        }
        const cleanup = () => {
          clearTimeout(timer)
          waiters.delete(check)
          child.off('exit', onExit)
        }
        waiters.add(check)
        child.once('exit', onExit)
        check()
      })
    },
    async kill() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
      await exited
    },
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM')
      const [code] = (await exited) as [number | null]
      return code
    },
  }
}
