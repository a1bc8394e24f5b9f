/** Child processes for the local infrastructure: running tools, pid files, stopping what we started. */
import { spawn } from 'node:child_process'
import { readFile, rm } from 'node:fs/promises'

/** The result of a tool run to its end. */
export interface ToolResult {
  /** Exit code, or null when it died of a signal. */
  code: number | null
  /** stdout and stderr, interleaved. */
  output: string
}

/** Options for {@link runTool}. */
export interface RunToolOptions {
  /** Working directory. @defaultValue the current one */
  cwd?: string
  /** Variables added to the inherited environment. */
  extraEnv?: Record<string, string>
}

/** Runs a program to its end, capturing its output. Rejects only when it cannot start (missing program). */
export function runTool(command: string, args: string[], options: RunToolOptions = {}): Promise<ToolResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, {
      cwd: options.cwd,
      env: options.extraEnv ? { ...process.env, ...options.extraEnv } : undefined,
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let output = ''
    const collect = (chunk: string) => {
      output += chunk
    }
    child.stdout.setEncoding('utf8').on('data', collect)
    child.stderr.setEncoding('utf8').on('data', collect)
    child.once('error', reject)
    child.once('close', (code) => resolve({ code, output }))
  })
}

/** Whether an error from spawning says the program is not installed. */
export function isMissingProgram(err: unknown): boolean {
  return (err as NodeJS.ErrnoException | undefined)?.code === 'ENOENT'
}

/** The pid written in a pid file, or undefined when there is none (or it holds no number). */
export async function readPidFile(path: string): Promise<number | undefined> {
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch {
    return undefined
  }
  const pid = Number(text.trim().split(/\s+/)[0])
  return Number.isSafeInteger(pid) && pid > 0 ? pid : undefined
}

/**
 * Whether a process is alive (not a zombie) and, when `marker` is given, whether its
 * command line contains it: a recycled pid then does not count as ours.
 */
export async function isProcessAlive(pid: number, marker?: string): Promise<boolean> {
  try {
    process.kill(pid, 0)
  } catch {
    // ESRCH: gone; EPERM: someone else's, never a process we started.
    return false
  }
  try {
    const state = (await readFile(`/proc/${pid}/stat`, 'utf8')).replace(/^.*\)\s*/s, '')[0]
    if (state === 'Z' || state === 'X') return false
    if (marker !== undefined) {
      const cmdline = (await readFile(`/proc/${pid}/cmdline`, 'utf8')).replaceAll('\0', ' ')
      return cmdline.includes(marker)
    }
  } catch {
    // No /proc (not Linux): trust the signal test.
  }
  return true
}

/** The pid in a pid file when that process is still alive (and matches `marker`). */
export async function livePidFromFile(path: string, marker?: string): Promise<number | undefined> {
  const pid = await readPidFile(path)
  return pid !== undefined && (await isProcessAlive(pid, marker)) ? pid : undefined
}

/** How {@link stopProcess} ended. */
export type StopOutcome = 'stopped' | 'killed' | 'not-running'

/**
 * Sends SIGTERM, waits up to `timeoutMs` for the process to exit, then SIGKILL. The
 * `marker` guards against signalling a recycled pid.
 */
export async function stopProcess(
  pid: number,
  options: { timeoutMs: number; marker?: string },
): Promise<StopOutcome> {
  if (!(await isProcessAlive(pid, options.marker))) return 'not-running'
  const signal = (name: NodeJS.Signals) => {
    try {
      process.kill(pid, name)
    } catch {
      // already gone
    }
  }
  signal('SIGTERM')
  const deadline = Date.now() + options.timeoutMs
  while (Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 200))
    if (!(await isProcessAlive(pid))) return 'stopped'
  }
  signal('SIGKILL')
  for (let i = 0; i < 25 && (await isProcessAlive(pid)); i++) {
    await new Promise((resolve) => setTimeout(resolve, 200))
  }
  return 'killed'
}

/** Removes a file if it exists. */
export async function removeFile(path: string): Promise<void> {
  await rm(path, { force: true })
}

/** The last `lines` lines of a text file (empty when it does not exist). */
export async function tailFile(path: string, lines = 40): Promise<string> {
  try {
    return tailText(await readFile(path, 'utf8'), lines)
  } catch {
    return ''
  }
}

/** The last `lines` lines of a text. */
export function tailText(text: string, lines = 40): string {
  return text.trimEnd().split('\n').slice(-lines).join('\n')
}
