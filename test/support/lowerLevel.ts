/**
 * Runs LL streams and selections on hand-checkable problems: 1-D problems whose iterates can be
 * written down, so every combinator's contract is checked against numbers computed by hand.
 */
import * as tf from "@tensorflow/tfjs-core"
import { Effect, Stream } from "effect"
import type { BilevelProblem } from "../../src/domain/Problem.ts"
import { vectorValue } from "./tf.ts"
import type { Dynamics } from "../../src/dynamics/Dynamics.ts"
import { type Iterate, iterateY, LowerLevel } from "../../src/dynamics/Iterate.ts"
import { type Iterates, unroll } from "../../src/dynamics/iterates.ts"

export const meter = { sample: () => {}, peakBytes: () => 0 }

/** Runs `effect` as the LL computation of `problem` at x. */
export const atPoint = <A, E>(problem: BilevelProblem, x: number, effect: Effect.Effect<A, E, LowerLevel>) =>
  Effect.provideService(effect, LowerLevel, { at: () => problem, x: tf.tensor1d([x]), meter })

/** The y values of the iterates `transform(unroll(dynamics, y0))` emits at x. */
export const trajectory = (
  problem: BilevelProblem,
  dynamics: Dynamics,
  x: number,
  y0: number,
  transform: (s: Iterates) => Iterates
) =>
  atPoint(
    problem,
    x,
    Stream.runCollect(transform(unroll(dynamics, tf.tensor1d([y0])))).pipe(
      Effect.map((all) => all.map((it: Iterate) => vectorValue(iterateY(it))[0]!))
    )
  )

/** f(x, y) = ½(y − x)², F(x, y) = −(y − c)²: GD with step α gives y_k = x + (1 − α)^k (y_0 − x). */
export const pulledTowards = (c: number): BilevelProblem => ({
  lower: (x, y) => tf.mul(0.5, tf.sum(tf.square(tf.sub(y, x)))),
  upper: (_x, y) => tf.neg(tf.sum(tf.square(tf.sub(y, c))))
})

/** A dynamics that ignores f and emits the given values, counting its steps. */
export const scripted = (values: ReadonlyArray<number>) => {
  const calls = { steps: 0 }
  const dynamics: Dynamics = {
    name: "scripted",
    init: (y0) => [y0],
    step: (_problem, _x, _state, k) => {
      calls.steps++
      return [tf.tensor1d([values[k + 1]!])]
    }
  }
  return { dynamics, calls }
}
