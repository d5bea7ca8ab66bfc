/**
 * The convex-LL toy without LL singleton (IAPTT-GM paper Eq. 13, from the BDA paper):
 *
 *     min_{x ∈ [−100, 100]^n} ‖x − y₂‖⁴ + ‖y₁ − e‖⁴   s.t.   (y₁, y₂) ∈ argmin ½‖y₁‖² − xᵀy₁
 *
 * y₂ does not enter f, so the LL solution set {y₁ = x, y₂ anything} is not a singleton; the bilevel
 * solution is x* = y₁* = y₂* = e. y = (y₁, y₂) is one flat vector of 2n.
 *
 * Settings are the paper's Table 7 (T = 1000, K = 20, UL SGD step 0.005 for x and z) except the LL
 * step, which the paper lost: with α = 1/L = 1 the LL is solved in one step and GD and Nesterov runs
 * coincide, so α = 0.1 by default. Inits are not given either: x_0 and z_0 are drawn
 * uniformly in [0, 2]^n (zero init diverges for the quartic F at step 0.005).
 */
import * as tf from "@tensorflow/tfjs-core"
import { Effect, Schema } from "effect"
import type { BilevelProblem, Vector } from "../domain/Problem.ts"
import { Rng } from "../domain/Rng.ts"
import { count, positive } from "../domain/settings.ts"
import { readVector } from "../domain/tensors.ts"
import { sgd } from "../solvers/optimizers.ts"
import { erase } from "./Task.ts"

/** `xError` below this counts as converged (the first step it happens is `reachedAt`). */
export const reachThreshold = 0.05

const Settings = Schema.Struct({
  n: count(50, "dimension n of x, y₁ and y₂ (y is one flat vector of 2n)"),
  outerSteps: count(1000, "outer (UL) steps T"),
  innerSteps: count(20, "inner (LL) steps K"),
  innerLr: positive(0.1, "LL step α (the paper's was lost; α = 1 solves the LL in one step, so GD = Nesterov)"),
  outerLr: positive(0.005, "UL SGD step for x and z")
})

const squaredNorm = (v: tf.Tensor) => tf.sum(tf.square(v))

/** F, f and Proj_X for dimension n; y = (y₁, y₂) is split with `slice`. */
export const toyLlcProblem = (n: number): BilevelProblem => {
  const y1 = (y: Vector) => tf.slice(y, 0, n)
  const y2 = (y: Vector) => tf.slice(y, n, n)
  return {
    upper: (x, y) => tf.add(tf.square(squaredNorm(tf.sub(x, y2(y)))), tf.square(squaredNorm(tf.sub(y1(y), 1)))),
    lower: (x, y) => tf.sub(tf.mul(0.5, squaredNorm(y1(y))), tf.sum(tf.mul(x, y1(y)))),
    projectX: (x) => tf.clipByValue(x, -100, 100)
  }
}

/** ‖v − e‖ of host values. */
const distanceToOnes = (v: ReadonlyArray<number>) => Math.hypot(...v.map((vi) => vi - 1))

export const toyLlc = erase<typeof Settings.Type>({
  name: "toy-llc",
  description: "IAPTT-GM Eq. 13: min ‖x − y₂‖⁴ + ‖y₁ − e‖⁴ s.t. y ∈ argmin ½‖y₁‖² − xᵀy₁, LL solution set not a singleton; x* = e",
  settings: Settings,
  size: ({ n }) => ({ y: 2 * n, residuals: 2 * n, dataBytes: 0 }),
  make: (settings) =>
    Effect.gen(function*() {
      const rng = yield* Rng
      const uniform02 = () => 2 * rng.uniform()
      const x0 = rng.array(settings.n, uniform02)
      const z0 = rng.array(2 * settings.n, uniform02)
      return {
        problem: toyLlcProblem(settings.n),
        x0: tf.tensor1d(x0),
        y0: tf.tensor1d(z0),
        optimizers: { x: sgd(settings.outerLr), z: sgd(settings.outerLr) },
        metrics: (step) =>
          Effect.map(Effect.all([readVector(step.before.x), readVector(step.solution.y), readVector(step.before.z)]), ([x, y, z]) => ({
            xError: distanceToOnes(x) / Math.sqrt(settings.n),
            yError: distanceToOnes(y),
            // How far the learned init z = (z₁, z₂) sits from (e, e): IA-GM's z₁ compensates for an x away from e.
            zError: distanceToOnes(z)
          })),
        summarize: (steps) => {
          const last = steps.at(-1) ?? {}
          const reached = steps.find((s) => (s["xError"] as number) < reachThreshold)
          return {
            F: last["F"],
            xError: last["xError"],
            yError: last["yError"],
            reachedAt: reached === undefined ? null : reached["t"]
          }
        }
      }
    })
})
