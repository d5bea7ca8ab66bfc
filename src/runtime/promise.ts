/**
 * The library without Effect: promise-returning functions for users who do not write Effect. They run
 * the same programs as the CLI (`run`, `gradcheck`) on a backend of their choice and hand back plain
 * numbers; a failure rejects with the same tagged error the Effect API fails with.
 */
import { NodeServices } from "@effect/platform-node"
import { Effect } from "effect"
import type { Method } from "../solvers/methods.ts"
import type { Task } from "../tasks/Task.ts"
import * as Arrays from "./arrays.ts"
import { backendLayer } from "./autoBackend.ts"
import type { BackendChoice } from "./Backend.ts"
import { gradcheck, type GradcheckResult } from "./gradcheck.ts"
import { run, type RunResult } from "./run.ts"
import * as RunRecord from "./RunRecord.ts"

export interface PromiseOptions {
  /** A preset's name (`bilevel methods`) or a `Method`. */
  readonly method: string | Method
  /** Settings of the task and the method, as `--set` gives them; defaults for the rest. */
  readonly settings?: Record<string, unknown>
  /** Default 0. */
  readonly seed?: number
  /** Default `cpu`, the reference backend. */
  readonly backend?: BackendChoice
}

export interface Optimized extends RunResult {
  /** The learned UL variable x after the last outer step. */
  readonly x: ReadonlyArray<number>
  /** The LL initialization z (learned under auxiliary-init). */
  readonly z: ReadonlyArray<number>
  /** The LL weights y_k̄ of the last outer step. */
  readonly y: ReadonlyArray<number>
  /** F at each outer step. */
  readonly F: ReadonlyArray<number>
}

const runPromise = <A, E>(options: PromiseOptions, task: Task | string, program: Effect.Effect<A, E, any>) =>
  Effect.runPromise(
    program.pipe(
      Effect.provide(backendLayer(options.backend ?? "cpu", {
        task,
        method: options.method,
        seed: options.seed ?? 0,
        settings: options.settings ?? {}
      })),
      Effect.provide(NodeServices.layer)
    ) as Effect.Effect<A, unknown>
  )

/**
 * Solves `task` with a method and returns the learned variables and F per step; the run is recorded
 * in `out` (default `runs/<task>-<method>-<time>`), as `bilevel run` records it.
 */
export const optimize = (task: Task | string, options: PromiseOptions & { readonly out?: string }): Promise<Optimized> =>
  runPromise(
    options,
    task,
    Effect.gen(function*() {
      const result = yield* run({
        task,
        method: options.method,
        seed: options.seed ?? 0,
        settings: options.settings ?? {},
        out: options.out
      })
      const [x, z, y] = yield* Effect.forEach(Arrays.arrayNames, (name) => Arrays.read(result.runDir, name))
      const steps = yield* RunRecord.readSteps(result.runDir)
      return { ...result, x: x!.values, z: z!.values, y: y!.values, F: steps.map((s) => s.F) }
    })
  )

/** `bilevel gradcheck`: the method's hypergradient at the task's initial point against ground truth. */
export const check = (
  task: Task | string,
  options: PromiseOptions & { readonly step?: number; readonly directions?: number }
): Promise<GradcheckResult> =>
  runPromise(
    options,
    task,
    gradcheck({
      task,
      method: options.method,
      seed: options.seed ?? 0,
      settings: options.settings ?? {},
      step: options.step,
      directions: options.directions
    })
  )
