/**
 * Tasks from a user's own module, everywhere a built-in task goes: `bilevel run ./ridge.ts -m iaptt-gm`
 * (the module's one task), or `bilevel run ridge --task-module ./tasks.ts` (a task by name among the
 * module's). The module exports tasks made with `defineTask`, as its default export or named ones. A
 * run records the module's absolute path, so `replay` and `resume` load it again. TypeScript modules
 * load through tsx when Node cannot load them itself.
 */
import { Effect, Schema } from "effect"
import { existsSync } from "node:fs"
import * as path from "node:path"
import { pathToFileURL } from "node:url"
import { TaskModuleError, UnknownName } from "../domain/errors.ts"
import type { Task } from "../tasks/Task.ts"
import { findTask } from "./settings.ts"

/** A task and, for a user's task, the absolute path of the module it came from. */
export interface ResolvedTask {
  readonly task: Task
  readonly module?: string | undefined
}

/** A task argument naming a file (`./ridge.ts`, `tasks/ridge.js`) rather than a built-in task. */
export const isModulePath = (reference: string): boolean => /[\\/]/.test(reference) || /\.[cm]?[jt]s$/.test(reference)

const isTask = (value: unknown): value is Task =>
  typeof value === "object" && value !== null && typeof (value as Task).name === "string" &&
  typeof (value as Task).make === "function" && Schema.isSchema((value as Task).settings)

const hint = "Export a task made with `defineTask({ name, description, settings, make })` from " +
  "\"effect-bilevel\", as the module's default export (see docs/your-own-problem.md)."

let tsxRegistered = false
/**
 * Imports `url`; a TypeScript file Node cannot load itself (the compiled CLI, no tsx loaded) is
 * imported again through tsx, under another URL: Node remembers the failed one.
 */
const importModule = async (url: string): Promise<Record<string, unknown>> => {
  try {
    return await import(url)
  } catch (error) {
    if ((error as { code?: string }).code !== "ERR_UNKNOWN_FILE_EXTENSION") throw error
    if (!tsxRegistered) (await import("tsx/esm/api")).register()
    tsxRegistered = true
    return await import(`${url}?tsx`)
  }
}

/** The tasks `file` exports (its default export first), with its absolute path. */
export const loadTaskModule = (file: string): Effect.Effect<{ readonly path: string; readonly tasks: ReadonlyArray<Task> }, TaskModuleError> =>
  Effect.gen(function*() {
    const absolute = path.resolve(file)
    if (!existsSync(absolute)) {
      return yield* new TaskModuleError({
        path: absolute,
        problem: "does not exist",
        hint: "Give the path of a .ts or .js file, relative to the current directory or absolute."
      })
    }
    const exports = yield* Effect.tryPromise({
      try: () => importModule(pathToFileURL(absolute).href),
      catch: (cause) =>
        new TaskModuleError({
          path: absolute,
          problem: `cannot be loaded: ${cause instanceof Error ? cause.message.split("\n")[0] : String(cause)}`,
          hint: "Fix the error in the module (run it with `npx tsx FILE` to see it in full)."
        })
    })
    const tasks = [...new Set([exports["default"], ...Object.values(exports)].filter(isTask))]
    if (tasks.length === 0) return yield* new TaskModuleError({ path: absolute, problem: "exports no task", hint })
    return { path: absolute, tasks }
  })

/**
 * The task a command names: a `Task` value given in code; a module path (its one task); a name among
 * the tasks of `module`; or a built-in task's name.
 */
export const resolveTask = (
  reference: string | Task,
  module?: string | undefined
): Effect.Effect<ResolvedTask, UnknownName | TaskModuleError> => {
  if (typeof reference !== "string") return Effect.succeed({ task: reference })
  if (module === undefined && !isModulePath(reference)) return Effect.map(findTask(reference), (task) => ({ task }))
  return Effect.gen(function*() {
    const loaded = yield* loadTaskModule(module ?? reference)
    if (module === undefined) {
      if (loaded.tasks.length > 1) {
        return yield* new TaskModuleError({
          path: loaded.path,
          problem: `exports ${loaded.tasks.length} tasks (${loaded.tasks.map((t) => t.name).join(", ")})`,
          hint: `Name one: e.g. \`bilevel run ${loaded.tasks[0]!.name} --task-module ${reference} -m iaptt-gm\`.`
        })
      }
      return { task: loaded.tasks[0]!, module: loaded.path }
    }
    const task = loaded.tasks.find((t) => t.name === reference)
    if (task === undefined) {
      return yield* new UnknownName({ kind: `task in ${loaded.path}`, name: reference, allowed: loaded.tasks.map((t) => t.name) })
    }
    return { task, module: loaded.path }
  })
}
