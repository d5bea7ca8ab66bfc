/**
 * A task of the user's own, as first-class as the built-in ones: `defineTask` takes what `Task` does,
 * with the per-step metrics, the summary and the UL optimizers optional (defaults: no metrics beyond
 * F, k̄ and cost; the last F; SGD with `outerLr` on x and z), and `commonSettings` declares the four
 * settings every task has.
 */
import { Effect, type FileSystem, type Schema, type Scope } from "effect"
import type { DatasetError } from "../domain/errors.ts"
import type { Rng } from "../domain/Rng.ts"
import { count, positive } from "../domain/settings.ts"
import { sgd } from "../solvers/optimizers.ts"
import { type CommonSettings, erase, type Task, type TaskInstance } from "./Task.ts"

type Defaulted = "metrics" | "summarize" | "optimizers"

/** What a user's `make` returns: a task instance whose metrics, summary and UL optimizers may be left out. */
export type TaskInstanceInput = Omit<TaskInstance, Defaulted> & Partial<Pick<TaskInstance, Defaulted>>

export interface TaskDefinition<S extends CommonSettings> {
  readonly name: string
  readonly description: string
  /** Decodes the task's settings (`--set`, `--config`): a Struct holding at least {@link commonSettings}. */
  readonly settings: Schema.Codec<S, unknown>
  readonly make: (settings: S) => Effect.Effect<TaskInstanceInput, DatasetError, Rng | Scope.Scope | FileSystem.FileSystem>
  /** Sizes for the memory check before a run starts (see `Task.size`); without them the check is skipped. */
  readonly size?: NonNullable<Task<S>["size"]>
}

/** A task for the `bilevel` CLI (`bilevel run ./module.ts`), `run`, `gradcheck` and `optimize`. */
export const defineTask = <S extends CommonSettings>(definition: TaskDefinition<S>): Task =>
  erase<S>({
    ...definition,
    make: (settings) =>
      Effect.map(definition.make(settings), (instance): TaskInstance => ({
        metrics: () => Effect.succeed({}),
        summarize: (steps) => ({ F: steps.at(-1)?.["F"] }),
        optimizers: { x: sgd(settings.outerLr), z: sgd(settings.outerLr) },
        ...instance
      }))
  })

/** The settings fields every task has, with the given defaults, to spread into a task's `Schema.Struct`. */
export const commonSettings = (defaults: CommonSettings) => ({
  outerSteps: count(defaults.outerSteps, "outer (UL) steps T"),
  innerSteps: count(defaults.innerSteps, "inner (LL) steps K"),
  innerLr: positive(defaults.innerLr, "LL step size α"),
  outerLr: positive(defaults.outerLr, "UL step size (SGD on x, and z under auxiliary-init)")
})
