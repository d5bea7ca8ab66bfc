/**
 * A task: a bilevel problem family with its settings, initial point, UL optimizers and metrics.
 * `make` builds one instance from decoded settings; tensors it allocates are released with its scope.
 */
import type { Effect, FileSystem, Schema, Scope } from "effect"
import type { DatasetError, InvalidSolver } from "../domain/errors.ts"
import type { BilevelProblem, Vector } from "../domain/Problem.ts"
import type { Rng } from "../domain/Rng.ts"
import type { OuterStep, UpperOptimizers } from "../solvers/outerLoop.ts"

/** Settings every task has (each task picks its own defaults). */
export interface CommonSettings {
  readonly outerSteps: number
  readonly innerSteps: number
  readonly innerLr: number
  readonly outerLr: number
}

export interface TaskInstance {
  readonly problem: BilevelProblem
  readonly x0: Vector
  /** The fixed LL initialization, and z_0 under auxiliary-init. */
  readonly y0: Vector
  readonly optimizers: UpperOptimizers
  /**
   * Per-outer-step metrics recorded beside F, k̄ and cost (host numbers, read asynchronously).
   * `train` is the method's own LL training, for metrics of the net the method produces.
   */
  readonly metrics: (step: OuterStep, train: LowerTraining) => Effect.Effect<Record<string, number>, InvalidSolver>
  /** The run summary's `final` block, from every recorded step (tail statistics and the like). */
  readonly summarize: (steps: ReadonlyArray<Record<string, unknown>>) => Record<string, unknown>
  /**
   * Held-out evaluation of a UL state (x, z), run apart from training (`bilevel evaluate <runDir>` on
   * its checkpoint): named numbers, e.g. a test accuracy and its confidence interval.
   */
  readonly evaluate?: (x: Vector, z: Vector) => Effect.Effect<Record<string, number>, InvalidSolver>
  /** dF(x, y*(x))/dx of the exact bilevel problem, in float64, where a closed form exists. */
  readonly exactHypergradient?: (x: ReadonlyArray<number>) => ReadonlyArray<number>
}

/**
 * The LL weights the run's method produces at (x, z): its own dynamics and inner loop (Nesterov,
 * FISTA, a tolerance stop…) to the end of that loop, on the full batch. The tensor is the caller's.
 */
export type LowerTraining = (x: Vector, z: Vector) => Effect.Effect<Vector, InvalidSolver>

export interface Task<S extends CommonSettings = CommonSettings> {
  readonly name: string
  readonly description: string
  readonly settings: Schema.Codec<S, unknown>
  readonly make: (settings: S) => Effect.Effect<TaskInstance, DatasetError, Rng | Scope.Scope | FileSystem.FileSystem>
  /**
   * What sets a configuration's memory, known before anything is allocated (the runtime's memory
   * estimate). A task without it (a user's, say) is not checked before it starts.
   */
  readonly size?: (settings: S) => TaskSize
}

export interface TaskSize {
  /** Elements of the LL variable y. */
  readonly y: number
  /** Elements an LL step keeps for the reverse pass besides its iterate (activations, class probabilities). */
  readonly residuals: number
  /** Bytes of data the instance holds for the whole run. */
  readonly dataBytes: number
}

/** Erases a task's settings type for the registry (settings are decoded by its own schema first). */
export const erase = <S extends CommonSettings>(task: Task<S>): Task => task as unknown as Task
