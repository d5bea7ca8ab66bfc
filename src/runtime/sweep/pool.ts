/**
 * The embedded pool: runs of a sweep on this machine, each in a worker process of its own (tfjs keeps
 * one global engine per process), at most `workers` at once. A worker that dies or fails is that run's
 * failed outcome, not the sweep's end; interrupting the pool stops its workers (SIGTERM: each run's
 * record stays unfinished, and the next sweep resumes it from its checkpoint).
 */
import { Effect, Schema } from "effect"
import { type ChildProcess, fork } from "node:child_process"
import { availableParallelism } from "node:os"
import * as path from "node:path"
import type { Outcome } from "./execute.ts"
import type { PlannedRun } from "./plan.ts"
import { Report } from "./worker.ts"

const workerEntry = path.join(import.meta.dirname, "..", "..", "..", "bin", "bilevel-worker.js")

/** Progress of the runs in flight, for a display. */
export interface Progress {
  readonly started: (run: PlannedRun) => void
  readonly step: (run: PlannedRun, t: number, total: number, F: number) => void
  readonly ended: (run: PlannedRun, outcome: Outcome) => void
}

/** Workers of a sweep that does not say: one per core (a run is single-threaded on cpu). */
export const defaultWorkers = () => availableParallelism()

/**
 * Threads each worker's wasm kernels get: the cores shared between the workers (an explicit
 * `BILEVEL_WASM_THREADS` wins). Results do not depend on it.
 */
const wasmThreads = (workers: number) =>
  process.env["BILEVEL_WASM_THREADS"] ?? String(Math.max(1, Math.floor(availableParallelism() / workers)))

const stopped = (child: ChildProcess) =>
  new Promise<void>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve()
    child.once("exit", () => resolve())
    child.kill("SIGTERM")
  })

/** Executes `run` in a fresh worker process; its outcome, or a failed one saying how the worker died. */
export const inWorker = (run: PlannedRun, options: { readonly workers: number; readonly progress?: Progress | undefined }) =>
  Effect.callback<Outcome>((resume) => {
    const child = fork(workerEntry, [], {
      env: { ...process.env, BILEVEL_WASM_THREADS: wasmThreads(options.workers) },
      stdio: ["ignore", "ignore", "pipe", "ipc"]
    })
    let stderr = ""
    let outcome: Outcome | undefined
    let error: string | undefined
    child.stderr!.on("data", (chunk) => (stderr = (stderr + chunk).slice(-2000)))
    child.on("message", (message) => {
      const report = Schema.decodeUnknownOption(Report)(message)
      if (report._tag === "None") return
      const value = report.value
      if (value.type === "step") options.progress?.step(run, value.t, value.total, value.F)
      else if (value.type === "outcome") outcome = value.outcome
      else error = value.message
    })
    // The outcome is read off the channel before it closes; the exit signal can overtake it, so the
    // run ends when both the process has exited and its channel has closed.
    let exit: string | undefined
    let disconnected = false
    const end = () => {
      if (exit === undefined || !disconnected) return
      resume(Effect.succeed(
        outcome ?? {
          id: run.id,
          dir: run.dir,
          action: "ran",
          status: "failed",
          outerSteps: 0,
          error: error ?? `its worker process exited (${exit}) without an outcome: ${stderr.trim() || "no message"}`
        }
      ))
    }
    child.on("error", (e) => {
      error ??= `its worker process failed: ${e.message}`
      // A process that never started has neither an exit nor a channel to close.
      if (child.pid === undefined) [exit, disconnected] = ["not started", true]
      end()
    })
    child.on("disconnect", () => {
      disconnected = true
      end()
    })
    child.on("exit", (code, signal) => {
      exit = signal ?? `code ${code}`
      end()
    })
    child.send({ run })
    return Effect.promise(() => stopped(child))
  }).pipe(
    Effect.tap((outcome) => Effect.sync(() => options.progress?.ended(run, outcome))),
    (effect) => Effect.andThen(Effect.sync(() => options.progress?.started(run)), effect)
  )

/** Executes `runs` on at most `workers` worker processes at once; outcomes in the runs' order. */
export const runPool = (runs: ReadonlyArray<PlannedRun>, options: { readonly workers: number; readonly progress?: Progress | undefined }) =>
  Effect.forEach(runs, (run) => inWorker(run, options), { concurrency: options.workers })
