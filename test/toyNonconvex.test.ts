/**
 * The non-convex toy (paper Eq. 10) checked independently of tfjs: the truncated pipeline
 * F(x, y_k̄(x, z)) written again in plain float64 JS numbers, differentiated by central finite
 * differences, against the float32 hypergradients (∇_x and, under auxiliary-init, ∇_z) and the PTT
 * index of RHG, IA-GM and IAPTT-GM.
 */
import { assert, layer } from "@effect/vitest"
import * as tf from "@tensorflow/tfjs-core"
import { NodeServices } from "@effect/platform-node"
import { Effect, Layer, Schema } from "effect"
import * as Backend from "../src/runtime/Backend.ts"
import { iaGm, iaGmA, iapttGm, rhg } from "../src/solvers/methods.ts"
import { solve } from "../src/solvers/Solver.ts"
import { tailStatistics, toyNonconvex, xStar } from "../src/tasks/toyNonconvex.ts"
import { Rng } from "../src/domain/Rng.ts"
import { vectorValue } from "./support/tf.ts"

const clip = (v: number) => Math.min(2, Math.max(-2, v))

/** F(x, y_k̄) with y_0 = z, K projected GD (or FISTA) steps on −sin(xy), k̄ = K or the PTT index. */
const pipeline = (x: number, z: number, innerSteps: number, lr: number, pessimistic: boolean, accelerated = false) => {
  const ys = [z]
  let [u, t] = [z, 1]
  for (let k = 0; k < innerSteps; k++) {
    const from = accelerated ? u : ys[k]!
    const next = clip(from + lr * x * Math.cos(x * from))
    const tNext = (1 + Math.sqrt(1 + 4 * t * t)) / 2
    u = next + ((t - 1) / tNext) * (next - ys[k]!)
    t = tNext
    ys.push(next)
  }
  const upper = ys.map((y) => x + x * y)
  let kbar = innerSteps
  if (pessimistic) {
    kbar = 1
    for (let k = 2; k <= innerSteps; k++) if (upper[k]! > upper[kbar]!) kbar = k
  }
  // How far the selected F stands above the runner-up: below float32 noise the argmax is ill-defined.
  const margin = pessimistic
    ? upper[kbar]! - Math.max(...upper.filter((_, k) => k >= 1 && k !== kbar))
    : Infinity
  return { value: upper[kbar]!, kbar, margin }
}

const centralDifference = (f: (v: number) => number, at: number, h = 1e-6) => (f(at + h) - f(at - h)) / (2 * h)

const cases = [
  { x: 1, z: 2 },
  { x: 5, z: 1 },
  { x: 7, z: -1 },
  { x: 3, z: 0.5 },
  { x: 8.5, z: -1.5 }
]
const settings = [
  { innerSteps: 40, innerLr: 0.0005 },
  { innerSteps: 20, innerLr: 0.02 }
]

layer(Layer.merge(Backend.layer("cpu"), NodeServices.layer))("toy-nonconvex hypergradients", (it) => {
  it.effect("equal float64 central differences of the same truncated pipeline, and PTT's k̄ is the argmax of F", () =>
    Effect.gen(function*() {
      const instance = yield* toyNonconvex.make(Schema.decodeUnknownSync(toyNonconvex.settings)({})).pipe(
        Effect.scoped,
        Effect.provide(Rng.layer(0))
      )
      let kbarChecks = 0
      for (const inner of settings) {
        for (const { x, z } of cases) {
          for (
            const [method, pessimistic, learnsZ, accelerated] of [
              [iapttGm, true, true, false],
              [iaGm, false, true, false],
              [iaGmA, false, true, true],
              [rhg, false, false, false]
            ] as const
          ) {
            const solver = method.build(inner, { acceleration: "fista", momentum: 0.9 })
            const solution = yield* solve(solver, instance.problem, tf.tensor1d([x]), tf.tensor1d([z]))
            const run = (xx: number, zz: number) => pipeline(xx, zz, inner.innerSteps, inner.innerLr, pessimistic, accelerated)
            const expected = [
              centralDifference((v) => run(v, z).value, x),
              ...(learnsZ ? [centralDifference((v) => run(x, v).value, z)] : [])
            ]
            const actual = [vectorValue(solution.gradX)[0]!, ...(learnsZ ? [vectorValue(solution.gradZ)[0]!] : [])]
            const error = Math.hypot(...actual.map((a, i) => a - expected[i]!)) / Math.hypot(...expected)
            const where = `${method.name} K=${inner.innerSteps} α=${inner.innerLr} at (${x}, ${z})`
            assert.isBelow(error, 1e-4, `${where}: ${actual} vs ${expected}`)
            if (run(x, z).margin > 1e-4 * Math.abs(run(x, z).value)) {
              assert.strictEqual(solution.kbar, run(x, z).kbar, `${where}: k̄`)
              kbarChecks++
            }
            assert.approximately(solution.upper, run(x, z).value, 1e-4, `${where}: F`)
          }
        }
      }
      assert.isAtLeast(kbarChecks, 25, "k̄ compared in most of the 30 IAPTT-GM cases")
    }))

  it("tail statistics judge x over the last 100 steps by mean and largest deviation from x*", () => {
    const xs = [...Array.from({ length: 50 }, () => 1), ...Array.from({ length: 100 }, (_, i) => xStar + (i % 2 ? 0.1 : -0.1))]
    const tail = tailStatistics(xs)
    assert.strictEqual(tail.steps, 100)
    assert.approximately(tail.mean, xStar, 1e-12)
    assert.approximately(tail.maxDeviation, 0.1, 1e-12)
  })
})
