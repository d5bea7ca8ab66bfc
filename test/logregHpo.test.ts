/**
 * Logistic-regression HPO: the float64 exact hypergradient against float64 central differences of
 * F(w*(λ)), the tfjs objectives against the float64 ones, and the synthetic data's contract.
 */
import { NodeServices } from "@effect/platform-node"
import { assert, describe, it as vitestIt, layer } from "@effect/vitest"
import * as tf from "@tensorflow/tfjs-core"
import { Effect, Layer, Schema } from "effect"
import { make as makeRng, Rng } from "../src/domain/Rng.ts"
import * as Backend from "../src/runtime/Backend.ts"
import { gradcheck } from "../src/runtime/gradcheck.ts"
import { synthetic, widen } from "../src/tasks/logreg/data.ts"
import { exactHypergradient, exactUpper, lowerObjective, lowerSolution } from "../src/tasks/logreg/exact.ts"
import { logregHpo } from "../src/tasks/logregHpo.ts"
import { relativeError } from "./support/tf.ts"

const data = synthetic(makeRng(3), { trainSize: 300, valSize: 200, testSize: 10, features: 6, noise: 0.1, scale: 3 })
const [train, validation] = [widen(data.train), widen(data.validation)]

/** Central differences of λ ↦ F(w*(λ)) in float64, coordinate by coordinate. */
const centralDifferences = (lambda: ReadonlyArray<number>, h: number) =>
  lambda.map((_, j) => {
    const plus = lambda.map((l, i) => (i === j ? l + h : l))
    const minus = lambda.map((l, i) => (i === j ? l - h : l))
    return (exactUpper(train, validation, plus) - exactUpper(train, validation, minus)) / (2 * h)
  })

describe("logreg-hpo exact hypergradient (float64)", () => {
  vitestIt("Newton–CG reaches a stationary point of f", () => {
    const lambda = [-1.5]
    const w = lowerSolution(train, lambda)
    // f at w* is below f at small moves along every coordinate.
    const f0 = lowerObjective(train, lambda, w)
    for (let j = 0; j < w.length; j++) {
      for (const s of [-1e-4, 1e-4]) assert.isAbove(lowerObjective(train, lambda, w.map((v, i) => (i === j ? v + s : v))), f0)
    }
  })

  for (const lambda of [[-2], [0.5], [-2, -1, 0, -3, -0.5, 1]]) {
    vitestIt(`matches central differences to 1e-6 relative at λ = [${lambda}]`, () => {
      const exact = exactHypergradient(train, validation, lambda)
      const fd = centralDifferences(lambda, 1e-4)
      const error = relativeError(exact, fd)
      assert.isBelow(error, 1e-6, `exact ${exact} vs differences ${fd}`)
      assert.isAbove(Math.hypot(...exact), 1e-4) // not a vacuous zero
    })
  }
})

layer(Layer.merge(Backend.layer("cpu"), NodeServices.layer), { timeout: 120_000 })("logreg-hpo task", (it) => {
  it.effect("its float32 objectives equal the float64 ones on the same data", () =>
    Effect.gen(function*() {
      const settings = yield* Schema.decodeUnknownEffect(logregHpo.settings)({ trainSize: 300, valSize: 200, testSize: 10, features: 6, dataSeed: 0 })
      const instance = yield* logregHpo.make(settings).pipe(Effect.provide(Rng.layer(0)))
      const own = synthetic(makeRng(0), { trainSize: 300, valSize: 200, testSize: 10, features: 6, noise: 0.1, scale: 3 })
      const w = Array.from({ length: 6 }, (_, j) => 0.3 * (j - 2))
      const f32 = tf.tidy(() => instance.problem.lower(tf.tensor1d([-1]), tf.tensor1d(w)).dataSync()[0]!)
      assert.closeTo(f32, lowerObjective(widen(own.train), [-1], w), 1e-6)
    }).pipe(Effect.scoped))

  it.effect("gradcheck: aid-fp matches the exact hypergradient (scalar and per-feature λ); sid reports its error", () =>
    Effect.gen(function*() {
      for (const regularization of ["scalar", "per-feature"]) {
        const r = yield* gradcheck({ task: "logreg-hpo", method: "aid-fp", seed: 0, settings: { trainSize: 300, features: 6, regularization } })
        assert.strictEqual(r.reference, "closed-form")
        assert.isBelow(r.relError, 1e-5, regularization)
      }
      const s = yield* gradcheck({ task: "logreg-hpo", method: "sid", seed: 0, settings: { trainSize: 300, features: 6, lowerBatch: 30, innerSteps: 50, adjointSteps: 50 } })
      assert.isAbove(s.relError, 1e-5) // a stochastic estimate, not the exact value
      assert.isBelow(s.relError, 0.5)
    }))

  it.effect("refuses the same class as both labels, naming it", () =>
    Effect.gen(function*() {
      const settings = yield* Schema.decodeUnknownEffect(logregHpo.settings)({ dataset: "fashion-mnist", positiveClass: 3, negativeClass: 3 })
      const error = yield* Effect.flip(logregHpo.make(settings).pipe(Effect.provide(Rng.layer(0))))
      assert.strictEqual(error._tag, "DatasetError")
      assert.include(error.message, "positiveClass and negativeClass are both 3")
    }).pipe(Effect.scoped))

  it.effect("rejects a minibatch larger than its split, naming it", () =>
    Effect.gen(function*() {
      const result = yield* Effect.flip(Schema.decodeUnknownEffect(logregHpo.settings)({ trainSize: 10, lowerBatch: 11 }))
      assert.include(String(result), "lowerBatch 11 exceeds trainSize 10")
    }))
})
