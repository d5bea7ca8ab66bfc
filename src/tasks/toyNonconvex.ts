/**
 * The non-convex toy of IAPTT-GM (paper Eq. 10):
 *
 *     min_{x ∈ [1, 10]} x + x·y   s.t.   y ∈ argmin_{y ∈ [−2, 2]} −sin(x·y)
 *
 * The LL has many minimizers y = (2kπ + π/2)/x; the unique bilevel solution is x* = 11π/4, y* = −2.
 * Defaults are the paper's (T = 500, K = 40, LL step 0.0005, UL step 0.1, init (1, 2)).
 */
import * as tf from "@tensorflow/tfjs-core"
import { Effect, Schema } from "effect"
import type { BilevelProblem, Vector } from "../domain/Problem.ts"
import { between, count, positive } from "../domain/settings.ts"
import { readScalar } from "../domain/tensors.ts"
import { sgd } from "../solvers/optimizers.ts"
import { erase } from "./Task.ts"

export const xStar = 11 * Math.PI / 4
export const yStar = -2

/** Over how many final outer steps x's mean and spread are judged (x oscillates by one UL step). */
export const tailLength = 100

const Settings = Schema.Struct({
  x0: between(1, 10, 1, "initial UL variable x_0, in X = [1, 10]"),
  y0: between(-2, 2, 2, "initial LL variable y_0 (= z_0 under auxiliary-init), in Y = [-2, 2]"),
  outerSteps: count(500, "outer (UL) steps T"),
  innerSteps: count(40, "inner (LL) steps K"),
  innerLr: positive(0.0005, "LL gradient step α"),
  outerLr: positive(0.1, "UL SGD step for x and z")
})

const problem: BilevelProblem = {
  upper: (x: Vector, y: Vector) => tf.sum(tf.add(x, tf.mul(x, y))),
  lower: (x: Vector, y: Vector) => tf.neg(tf.sum(tf.sin(tf.mul(x, y)))),
  projectX: (x: Vector) => tf.clipByValue(x, 1, 10),
  projectY: (y: Vector) => tf.clipByValue(y, -2, 2)
}

/** Mean of the last `tailLength` x values and their largest deviation from x*. */
export const tailStatistics = (xs: ReadonlyArray<number>) => {
  const tail = xs.slice(-tailLength)
  const mean = tail.reduce((a, b) => a + b, 0) / Math.max(tail.length, 1)
  return { steps: tail.length, mean, maxDeviation: Math.max(...tail.map((x) => Math.abs(x - xStar))) }
}

export const toyNonconvex = erase<typeof Settings.Type>({
  name: "toy-nonconvex",
  description: "IAPTT-GM Eq. 10: min x + xy s.t. y ∈ argmin −sin(xy), many LL minimizers; x* = 11π/4, y* = −2",
  settings: Settings,
  size: () => ({ y: 1, residuals: 1, dataBytes: 0 }),
  make: (settings) =>
    Effect.sync(() => ({
      problem,
      x0: tf.tensor1d([settings.x0]),
      y0: tf.tensor1d([settings.y0]),
      optimizers: { x: sgd(settings.outerLr), z: sgd(settings.outerLr) },
      metrics: (step) =>
        Effect.map(
          Effect.all([readScalar(step.before.x), readScalar(step.solution.y), readScalar(step.before.z)]),
          ([x, y, z]) => ({ x, y, z, xError: Math.abs(x - xStar), yError: Math.abs(y - yStar) })
        ),
      summarize: (steps) => {
        const last = steps[steps.length - 1] ?? {}
        return {
          F: last["F"],
          x: last["x"],
          y: last["y"],
          xTail: tailStatistics(steps.map((s) => s["x"] as number))
        }
      }
    }))
})
