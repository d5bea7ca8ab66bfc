/**
 * Runs the `bilevel` CLI as a child process, as a user does: `node bin/bilevel.js …`.
 */
import { type ChildProcess, spawn } from "node:child_process"
import * as path from "node:path"

export const binary = path.join(import.meta.dirname, "..", "..", "bin", "bilevel.js")

export interface Finished {
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
  readonly stdout: string
  readonly stderr: string
}

/** Starts `bilevel ...args`; `finished` resolves when it exits, however it exits. */
export const start = (args: ReadonlyArray<string>, options: { readonly cwd?: string } = {}) => {
  const child: ChildProcess = spawn(process.execPath, [binary, ...args], {
    cwd: options.cwd ?? process.cwd(),
    stdio: ["ignore", "pipe", "pipe"]
  })
  let stdout = ""
  let stderr = ""
  child.stdout!.on("data", (chunk) => (stdout += chunk))
  child.stderr!.on("data", (chunk) => (stderr += chunk))
  const finished = new Promise<Finished>((resolve, reject) => {
    child.on("error", reject)
    child.on("close", (code, signal) => resolve({ code, signal, stdout, stderr }))
  })
  return { child, finished }
}

/** Runs `bilevel ...args` to the end. */
export const bilevel = (args: ReadonlyArray<string>, options: { readonly cwd?: string } = {}): Promise<Finished> =>
  start(args, options).finished
