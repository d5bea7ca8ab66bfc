/**
 * The task and method a recorded run names, loaded again for `resume` and `replay`: a built-in one by
 * name, a user's task from the module run.json records, and a task or method that was a value given in
 * code — which no file records — from the caller, who hands the same value in again.
 */
import { Effect } from "effect"
import { RunRecordError, type TaskModuleError, type UnknownName } from "../domain/errors.ts"
import type { Method } from "../solvers/methods.ts"
import type { Task } from "../tasks/Task.ts"
import type { RunInfo } from "./RunRecord.ts"
import { findMethod } from "./settings.ts"
import { resolveTask } from "./taskModule.ts"

/** Values given in code for a run whose run.json says its task or method was one (`definedInCode`). */
export interface GivenInCode {
  readonly task?: Task | undefined
  readonly method?: Method | undefined
}

/** The run's task and method, or a `RunRecordError` naming what the caller must hand in. */
export const recordedTaskAndMethod = (
  dir: string,
  info: RunInfo,
  given: GivenInCode = {}
): Effect.Effect<{ readonly task: Task; readonly method: Method }, RunRecordError | UnknownName | TaskModuleError> =>
  Effect.gen(function*() {
    const task = yield* fromCodeOr(dir, "task", info, given.task, () =>
      Effect.map(resolveTask(info.task, info.taskModule), (resolved) => resolved.task))
    const method = yield* fromCodeOr(dir, "method", info, given.method, () => findMethod(info.method))
    return { task, method }
  })

const fromCodeOr = <A extends { readonly name: string }, E>(
  dir: string,
  what: "task" | "method",
  info: RunInfo,
  given: A | undefined,
  byName: () => Effect.Effect<A, E>
): Effect.Effect<A, E | RunRecordError> => {
  const name = info[what]
  if (given !== undefined) {
    return given.name === name
      ? Effect.succeed(given)
      : Effect.fail(new RunRecordError({ path: dir, problem: `was run with the ${what} "${name}", not "${given.name}": hand in the ${what} it was run with` }))
  }
  if (info.definedInCode?.includes(what)) {
    return Effect.fail(
      new RunRecordError({
        path: dir,
        problem: `was run with the ${what} "${name}" given as a value in code, which no file records: ` +
          `hand the same value in again (\`{ dir, ${what} }\` to resume or replay)` +
          (what === "task" ? ", or export it from a module (docs/your-own-problem.md) so the command line can load it" : "")
      })
    )
  }
  return byName()
}
