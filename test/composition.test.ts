/**
 * A solver that is none of the presets, composed in a few lines (docs/composing-solvers.md), runs and
 * differentiates correctly: the closed form on the quadratic task, finite differences of its own
 * pipeline on the non-convex toy.
 */
import { NodeServices } from "@effect/platform-node"
import { assert, layer } from "@effect/vitest"
import { Effect, Layer, Schema } from "effect"
import { readFileSync } from "node:fs"
import { acceleratedMinResidual } from "../examples/acceleratedMinResidual.ts"
import { Rng } from "../src/domain/Rng.ts"
import * as Backend from "../src/runtime/Backend.ts"
import { checkSolver } from "../src/runtime/gradcheck.ts"
import { quadratic } from "../src/tasks/quadratic.ts"
import { toyNonconvex } from "../src/tasks/toyNonconvex.ts"
import type { Task } from "../src/tasks/Task.ts"

const check = (task: Task, settings: Record<string, unknown>, solver: ReturnType<typeof acceleratedMinResidual>) =>
  Effect.gen(function*() {
    const instance = yield* task.make(Schema.decodeUnknownSync(task.settings)(settings))
    return yield* checkSolver(solver, instance)
  }).pipe(Effect.scoped, Effect.provide(Rng.layer(5)))

layer(Layer.merge(Backend.layer("cpu"), NodeServices.layer))("a user-composed solver", (it) => {
  it("the documentation quotes the example file verbatim", () => {
    const example = readFileSync(new URL("../examples/acceleratedMinResidual.ts", import.meta.url), "utf8")
    const doc = readFileSync(new URL("../docs/composing-solvers.md", import.meta.url), "utf8")
    assert.include(doc, "```ts\n" + example + "```")
    assert.isBelow(example.trim().split("\n").length, 15)
  })

  it.effect("matches the quadratic task's closed form once the LL has converged", () =>
    Effect.gen(function*() {
      const result = yield* check(quadratic, { dimX: 10, dimY: 10 }, acceleratedMinResidual({ lr: 0.2, innerSteps: 200 }))
      assert.strictEqual(result.reference, "closed-form")
      assert.isBelow(result.relError, 1e-3)
      assert.isBelow(result.cost.innerSteps, 200, "the tolerance stop ended the inner loop early")
    }))

  it.effect("is the exact derivative of its own truncated pipeline on the non-convex toy", () =>
    Effect.gen(function*() {
      const result = yield* check(toyNonconvex, { x0: 3, y0: 0.5 }, acceleratedMinResidual({ lr: 0.02, innerSteps: 15 }))
      assert.strictEqual(result.reference, "finite-difference")
      assert.isBelow(result.relError, 1e-2)
      assert.isUndefined(result.note)
    }))
})
