#!/usr/bin/env node
// `npx bourse <command>`: runs src/cli.ts on Node 24, which strips TypeScript types
// natively. Where the Node on PATH is older, the project's own Node 24 (the `node`
// devDependency) runs the CLI instead, with the same arguments, stdio and exit code.
// That child holds an IPC channel to this process: when this process dies, even by
// SIGKILL (which cannot be forwarded), the channel closes and the child shuts down
// gracefully (src/platform/lifecycle.ts), so a supervisor tracking this pid never
// leaves the real service running.
import { spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { fileURLToPath } from 'node:url'

const cli = fileURLToPath(new URL('../src/cli.ts', import.meta.url))
const major = Number(process.versions.node.split('.')[0])

if (major >= 24) {
  await import(cli)
} else {
  const node24 = fileURLToPath(new URL('../node_modules/node/bin/node', import.meta.url))
  if (!existsSync(node24)) {
    process.stderr.write(`bourse needs Node 24 (this is ${process.version}); run npm ci to install it.\n`)
    process.exit(1)
  }
  const child = spawn(node24, [cli, ...process.argv.slice(2)], {
    stdio: ['inherit', 'inherit', 'inherit', 'ipc'],
  })
  for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => child.kill(signal))
  child.on('exit', (code, signal) => {
    if (signal) process.kill(process.pid, signal)
    else process.exit(code ?? 1)
  })
}
