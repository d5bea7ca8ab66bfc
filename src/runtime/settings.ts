/**
 * Resolves what the user asked for — a task, a method, a config file and `--set key=value` pairs —
 * into decoded settings, with one typed error per mistake naming the key and the allowed values.
 */
import { Effect, Schema } from "effect"
import { InvalidConfig, UnknownName } from "../domain/errors.ts"
import type { Method } from "../solvers/methods.ts"
import { methods } from "../solvers/methods.ts"
import { tasks } from "../tasks/registry.ts"
import type { CommonSettings, Task } from "../tasks/Task.ts"

export const findTask = (name: string): Effect.Effect<Task, UnknownName> => {
  const task = tasks.find((t) => t.name === name)
  return task ? Effect.succeed(task) : Effect.fail(new UnknownName({ kind: "task", name, allowed: tasks.map((t) => t.name) }))
}

export const findMethod = (name: string): Effect.Effect<Method, UnknownName> => {
  const method = methods.find((m) => m.name === name)
  return method
    ? Effect.succeed(method)
    : Effect.fail(new UnknownName({ kind: "method", name, allowed: methods.map((m) => m.name) }))
}

/** A preset by name, or a `Method` value given in code. */
export const resolveMethod = (method: string | Method): Effect.Effect<Method, UnknownName> =>
  typeof method === "string" ? findMethod(method) : Effect.succeed(method)

/** A settings schema as JSON Schema (draft 2020-12): what `bilevel schema` prints for editors. */
export const jsonSchema = (schema: Schema.Top) => Schema.toJsonSchemaDocument(schema)

/** The keys a settings schema declares, with their descriptions and defaults (read off its JSON Schema). */
export const settingKeys = (schema: Schema.Top): ReadonlyArray<{ key: string; description: string; default: unknown }> =>
  Object.entries((jsonSchema(schema).schema as { properties?: Record<string, Record<string, unknown>> }).properties ?? {})
    .map(([key, property]) => ({ key, description: String(property["description"] ?? ""), default: property["default"] }))

/** `key=value`: the value is read as JSON when it parses (numbers, booleans), as a string otherwise. */
export const parseAssignment = (assignment: string): Effect.Effect<readonly [string, unknown], InvalidConfig> => {
  const at = assignment.indexOf("=")
  if (at <= 0) {
    return Effect.fail(new InvalidConfig({ message: `--set "${assignment}" is not of the form key=value (e.g. --set innerSteps=40).` }))
  }
  const raw = assignment.slice(at + 1)
  return Effect.succeed([assignment.slice(0, at), readValue(raw)] as const)
}

const readValue = (raw: string): unknown => {
  try {
    return JSON.parse(raw)
  } catch {
    return raw
  }
}

const decode = (schema: Schema.Top, input: Record<string, unknown>, what: string) =>
  Schema.decodeUnknownEffect(schema as Schema.Codec<unknown, unknown>)(input, { onExcessProperty: "error", errors: "all" }).pipe(
    Effect.mapError((e) => new InvalidConfig({ message: `Invalid ${what} settings:\n${e.message}` }))
  )

export interface ResolvedSettings {
  readonly task: CommonSettings & Record<string, unknown>
  readonly method: Record<string, unknown>
}

/** Splits `values` between the task's and the method's keys and decodes each side. */
export const resolveSettings = Effect.fnUntraced(function*(task: Task, method: Method, values: Record<string, unknown>) {
  const taskKeys = new Set(settingKeys(task.settings).map((k) => k.key))
  const methodKeys = new Set(settingKeys(method.settings).map((k) => k.key))
  const unknown = Object.keys(values).filter((k) => !taskKeys.has(k) && !methodKeys.has(k))
  if (unknown.length > 0) {
    return yield* new InvalidConfig({
      message: `Unknown setting${unknown.length > 1 ? "s" : ""} ${unknown.map((k) => `"${k}"`).join(", ")}. ` +
        `Task ${task.name} takes: ${[...taskKeys].join(", ")}. ` +
        `Method ${method.name} takes: ${methodKeys.size > 0 ? [...methodKeys].join(", ") : "no settings of its own"}. ` +
        `See \`bilevel tasks\` and \`bilevel methods\`.`
    })
  }
  const pick = (keys: Set<string>) => Object.fromEntries(Object.entries(values).filter(([k]) => keys.has(k)))
  return {
    task: (yield* decode(task.settings, pick(taskKeys), `${task.name} task`)) as ResolvedSettings["task"],
    method: (yield* decode(method.settings, pick(methodKeys), `${method.name} method`)) as Record<string, unknown>
  } satisfies ResolvedSettings
})

/**
 * Refuses settings each valid alone but not together, with the remedy; checked before a run or a
 * gradcheck starts (the JSON Schema, key by key, cannot say them). Only a value the user chose
 * (`values`, the raw settings) conflicts: T-RHG's default lastM with fewer inner steps
 * differentiates them all, as documented.
 */
export const checkCombination = (settings: ResolvedSettings, values: Record<string, unknown>): Effect.Effect<void, InvalidConfig> => {
  const { innerSteps } = settings.task
  const { lastM } = settings.method
  return "lastM" in values && typeof lastM === "number" && lastM > innerSteps
    ? Effect.fail(
      new InvalidConfig({
        message: `lastM=${lastM} exceeds innerSteps=${innerSteps}: T-RHG differentiates the last M of the K inner steps, ` +
          `so M ≤ K. Lower lastM or raise innerSteps (lastM = innerSteps is RHG).`
      })
    )
    : Effect.void
}
