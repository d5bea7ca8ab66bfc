/**
 * Runs the `bilevel` CLI as a child process, as a user does: `node bin/bilevel.js …`.
 */
import { type ChildProcess, spawn } from "node:child_process"
import { availableParallelism } from "node:os"
import * as path from "node:path"

export const binary = path.join(import.meta.dirname, "..", "..", "bin", "bilevel.js")

export interface Finished {
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
  readonly stdout: string
  readonly stderr: string
}

export interface Options {
  readonly cwd?: string
  /** Added to this process's environment. */
  readonly env?: Record<string, string>
}

/** Starts `bilevel ...args`; `finished` resolves when it exits, however it exits. */
export const start = (args: ReadonlyArray<string>, options: Options = {}) => {
  const child: ChildProcess = spawn(process.execPath, [binary, ...args], {
    cwd: options.cwd ?? process.cwd(),
    env: { ...process.env, ...options.env },
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

/** CLI processes running at once: each start loads tfjs and Effect, so more than one per core only thrashes. */
const slots = Math.max(2, availableParallelism())
let running = 0
const waiting: Array<() => void> = []

/** Runs `bilevel ...args` to the end, queued behind others when every core is busy with one. */
export const bilevel = async (args: ReadonlyArray<string>, options: Options = {}): Promise<Finished> => {
  if (running >= slots) await new Promise<void>((resolve) => waiting.push(resolve))
  running++
  try {
    return await start(args, options).finished
  } finally {
    running--
    waiting.shift()?.()
  }
}
