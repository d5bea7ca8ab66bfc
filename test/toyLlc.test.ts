/**
 * The convex-LL toy (paper Eq. 13): its objectives on a point checked by hand, its LL solution set,
 * its seeded inits, and the IA-GM / IA-GM(A) hypergradients against finite differences of the same
 * truncated pipeline.
 */
import { NodeServices } from "@effect/platform-node"
import { assert, layer } from "@effect/vitest"
import * as tf from "@tensorflow/tfjs-core"
import { Effect, Layer, Schema } from "effect"
import { Rng } from "../src/domain/Rng.ts"
import * as Backend from "../src/runtime/Backend.ts"
import { gradcheck } from "../src/runtime/gradcheck.ts"
import { toyLlc, toyLlcProblem } from "../src/tasks/toyLlc.ts"
import { vectorValue } from "./support/tf.ts"

const scalar = (t: tf.Tensor) => t.dataSync()[0]!

layer(Layer.merge(Backend.layer("cpu"), NodeServices.layer))("toy-llc", (it) => {
  it.effect("F and f on a point checked by hand", () =>
    Effect.sync(() => {
      const problem = toyLlcProblem(2)
      // x = (1, 2), y₁ = (0, 1), y₂ = (3, 0): ‖x − y₂‖² = 4 + 4 = 8, ‖y₁ − e‖² = 1 + 0 = 1.
      const x = tf.tensor1d([1, 2])
      const y = tf.tensor1d([0, 1, 3, 0])
      assert.strictEqual(scalar(problem.upper(x, y)), 8 ** 2 + 1 ** 2)
      // ½‖y₁‖² − xᵀy₁ = ½ − 2.
      assert.strictEqual(scalar(problem.lower(x, y)), -1.5)
      // At the bilevel solution x = y₁ = y₂ = e, F = 0.
      assert.strictEqual(scalar(problem.upper(tf.ones([2]), tf.ones([4]))), 0)
      assert.deepStrictEqual(vectorValue(problem.projectX!(tf.tensor1d([-150, 150]))), [-100, 100])
    }))

  it.effect("the LL solutions are y₁ = x with y₂ free: ∇_y f vanishes there and f = −½‖x‖² is its minimum", () =>
    Effect.sync(() => {
      const problem = toyLlcProblem(2)
      const x = tf.tensor1d([1, 2])
      const gradient = tf.grad((y: tf.Tensor) => problem.lower(x, y))
      for (const y2 of [[3, 0], [-7, 0.5]]) {
        const solution = tf.tensor1d([1, 2, ...y2])
        assert.deepStrictEqual(vectorValue(gradient(solution)), [0, 0, 0, 0])
        assert.strictEqual(scalar(problem.lower(x, solution)), -0.5 * (1 + 4))
      }
      // ∇_y f = (y₁ − x, 0): y₂ never enters f.
      assert.deepStrictEqual(vectorValue(gradient(tf.tensor1d([0, 1, 3, 0]))), [-1, -1, 0, 0])
    }))

  it.effect("x₀ and z₀ are drawn uniformly in [0, 2] from the seed", () =>
    Effect.gen(function*() {
      const draw = (seed: number) =>
        toyLlc.make(Schema.decodeUnknownSync(toyLlc.settings)({ n: 4 })).pipe(
          Effect.map((instance) => [vectorValue(instance.x0), vectorValue(instance.y0)] as const),
          Effect.scoped,
          Effect.provide(Rng.layer(seed))
        )
      const [x0, z0] = yield* draw(3)
      assert.strictEqual(x0.length, 4)
      assert.strictEqual(z0.length, 8)
      for (const v of [...x0, ...z0]) assert.isTrue(v >= 0 && v < 2)
      assert.deepStrictEqual(yield* draw(3), [x0, z0])
      assert.notDeepEqual((yield* draw(4))[0], x0)
    }))

  it.effect("IA-GM and IA-GM(A) (FISTA, Nesterov momentum) hypergradients equal finite differences of the pipeline", () =>
    Effect.gen(function*() {
      const cases = [
        { method: "ia-gm", settings: {} },
        { method: "ia-gm-a", settings: { acceleration: "fista" } },
        { method: "ia-gm-a", settings: { acceleration: "nesterov" } }
      ]
      for (const { method, settings } of cases) {
        const result = yield* gradcheck({ task: "toy-llc", method, seed: 0, settings: { n: 5, ...settings } })
        assert.strictEqual(result.compared, "coordinates of x and z")
        assert.strictEqual(result.hypergradient.length, 15)
        assert.isBelow(result.relError, 1e-3, `${method} ${JSON.stringify(settings)}`)
      }
    }))
})
