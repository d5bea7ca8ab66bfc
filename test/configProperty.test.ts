/**
 * Bad configs, generated: random JSON values, wrong types, random extra keys and out-of-range
 * numbers thrown at `resolveSettings` for every task × method end in a typed `InvalidConfig` or a
 * valid decode, never a defect; and the JSON Schema `bilevel schema` prints accepts exactly what
 * the decoder accepts, key by key, with every default valid.
 */
import { describe, it } from "@effect/vitest"
import { Cause, Effect, Exit } from "effect"
import fc from "fast-check"
import { assert } from "vitest"
import { methods } from "../src/solvers/methods.ts"
import { jsonSchema, parseAssignment, resolveSettings, settingKeys } from "../src/runtime/settings.ts"
import { tasks } from "../src/tasks/registry.ts"
import type { Task } from "../src/tasks/Task.ts"
import type { Method } from "../src/solvers/methods.ts"

type Property = Record<string, unknown>

/** The `properties` of a settings schema's JSON Schema, as `bilevel schema` merges them. */
const properties = (task: Task, method: Method): Record<string, Property> => ({
  ...(jsonSchema(task.settings).schema as { properties?: Record<string, Property> }).properties,
  ...(jsonSchema(method.settings).schema as { properties?: Record<string, Property> }).properties
})

const annotations = new Set(["description", "default", "title", "examples"])

/**
 * Whether `value` satisfies a property of the JSON Schema, for the keywords settings use. A keyword
 * this does not know fails the test: the schema has grown, and this check must grow with it.
 */
const satisfies = (property: Property, value: unknown): boolean =>
  Object.entries(property).every(([keyword, bound]) => {
    const n = value as number
    switch (keyword) {
      case "type":
        return bound === "integer"
          ? Number.isInteger(value)
          : bound === "number"
          ? typeof value === "number"
          : bound === "string"
          ? typeof value === "string"
          : bound === "boolean"
          ? typeof value === "boolean"
          : (() => {
            throw new Error(`type ${String(bound)} is not checked here`)
          })()
      case "enum":
        return (bound as Array<unknown>).includes(value)
      case "minimum":
        return typeof value !== "number" || n >= (bound as number)
      case "maximum":
        return typeof value !== "number" || n <= (bound as number)
      case "exclusiveMinimum":
        return typeof value !== "number" || n > (bound as number)
      case "exclusiveMaximum":
        return typeof value !== "number" || n < (bound as number)
      default:
        if (annotations.has(keyword)) return true
        throw new Error(`JSON Schema keyword "${keyword}" is not checked here`)
    }
  })

/** What a decode ended in: "ok", "invalid" (a typed InvalidConfig), or a description of anything else. */
const outcome = (exit: Exit.Exit<unknown, { readonly _tag: string }>): string => {
  if (Exit.isSuccess(exit)) return "ok"
  const tags = exit.cause.reasons.map((r) => Cause.isFailReason(r) ? r.error._tag : Cause.isDieReason(r) ? `defect: ${String(r.defect)}` : "interrupt")
  return tags.length === 1 && tags[0] === "InvalidConfig" ? "invalid" : tags.join(", ")
}

/** The other setting a refusal of `key` names as its bound ("lowerBatch 9 exceeds trainSize 5"), if it does. */
const boundNamed = (exit: Exit.Failure<unknown, { readonly _tag: string; readonly message?: string }>, key: string, keys: ReadonlyArray<string>) => {
  const reason = exit.cause.reasons.find(Cause.isFailReason)
  const named = reason?.error.message?.match(new RegExp(`^${key} \\S+ exceeds (\\w+) `, "m"))?.[1]
  return named !== undefined && named !== key && keys.includes(named) ? named : undefined
}

const decode = (task: Task, method: Method, config: Record<string, unknown>) =>
  Effect.runSyncExit(resolveSettings(task, method, config))

const pairs = tasks.flatMap((task) => methods.map((method) => ({ task, method, name: `${task.name} × ${method.name}` })))

/** Numbers at and around every bound settings use, and the ones JSON cannot carry but callers can. */
const edgyNumber = fc.oneof(
  fc.constantFrom(0, -0, 1, -1, 0.5, 1.5, 2, -2, 2.0001, -2.0001, 10, 10.5, 1e-300, 1e308, -1e308, 2 ** 53, 2 ** 53 + 2, NaN, Infinity, -Infinity),
  fc.integer({ min: -5, max: 100 }),
  fc.double()
)
const anyValue = fc.oneof(fc.jsonValue(), edgyNumber, fc.constantFrom("fista", "nesterov", "sgd", "adam", "linear", "mlp", "", "1", "true"))

describe("random configs never end in a defect", () => {
  for (const { method, name, task } of pairs) {
    const keys = [...settingKeys(task.settings), ...settingKeys(method.settings)].map((k) => k.key)
    const key = fc.oneof(fc.constantFrom(...keys), fc.constantFrom(...keys), fc.string(), fc.constantFrom("__proto__", "constructor", "toString", "hasOwnProperty"))
    it(name, () => {
      fc.assert(
        fc.property(fc.dictionary(key, anyValue, { maxKeys: 6 }), (config) => {
          const ended = outcome(decode(task, method, config))
          assert.include(["ok", "invalid"], ended, JSON.stringify(config))
          if (ended === "ok") assert.isTrue(Object.keys(config).every((k) => keys.includes(k)), JSON.stringify(config))
        }),
        { numRuns: 60 }
      )
    })
  }
})

describe("the JSON Schema of `bilevel schema` agrees with the decoder", () => {
  for (const { method, name, task } of pairs) {
    it(name, () => {
      const schema = properties(task, method)
      const keys = [...settingKeys(task.settings), ...settingKeys(method.settings)].map((k) => k.key)
      assert.sameMembers(Object.keys(schema), keys)
      const defaults = decode(task, method, {})
      assert.isTrue(Exit.isSuccess(defaults))
      const decoded: Record<string, unknown> = Exit.isSuccess(defaults) ? { ...defaults.value.task, ...defaults.value.method } : {}
      for (const [key, property] of Object.entries(schema)) {
        assert.isString(property["description"], `${key} has a description`)
        assert.deepStrictEqual(property["default"], decoded[key], `${key}: the documented default is the decoded one`)
        if ("default" in property) assert.isTrue(satisfies(property, property["default"]), `${key}: its default is valid`)
      }
      // Only JSON values here: what a --config file or --set can carry.
      const jsonNumber = fc.oneof(edgyNumber.filter(Number.isFinite), fc.double({ noNaN: true, noDefaultInfinity: true }))
      const jsonValue = fc.oneof(fc.jsonValue(), jsonNumber, fc.constantFrom("fista", "nesterov", "sgd", "adam", "linear", "mlp", "zeros", "uniform"))
      fc.assert(
        fc.property(fc.constantFrom(...keys), jsonValue, (key, value) => {
          const exit = decode(task, method, { [key]: value })
          const accepted = outcome(exit)
          assert.include(["ok", "invalid"], accepted)
          const valid = satisfies(schema[key]!, value)
          const bound = Exit.isFailure(exit) ? boundNamed(exit, key, keys) : undefined
          if (valid && bound !== undefined) {
            // A rule between settings (a minibatch within its split), which no JSON Schema property
            // states: the value is valid alone, refused only against the other setting's default,
            // and accepted once that setting is raised to it.
            assert.isAbove(value as number, decoded[bound] as number, `${key} = ${value} against ${bound}`)
            assert.strictEqual(outcome(decode(task, method, { [key]: value, [bound]: value })), "ok", `${key} = ${bound} = ${value}`)
          } else {
            assert.strictEqual(accepted === "ok", valid, `${key} = ${JSON.stringify(value)}`)
          }
        }),
        // A huge integer for every key: valid alone wherever an integer is, so the rules between settings meet it.
        { numRuns: 200, examples: keys.map((key) => [key, 2 ** 52] as [string, unknown]) }
      )
    })
  }
})

describe("--set pairs", () => {
  it("parse into a key and a JSON (or string) value, or a typed InvalidConfig", () => {
    fc.assert(
      fc.property(fc.string(), (assignment) => {
        const exit = Effect.runSyncExit(parseAssignment(assignment))
        assert.include(["ok", "invalid"], outcome(exit))
        assert.strictEqual(Exit.isSuccess(exit), assignment.indexOf("=") > 0)
      })
    )
  })
})
