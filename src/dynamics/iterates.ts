/**
 * The LL iterate stream and its combinators. Each combinator is a data-last function
 * from iterate stream to iterate stream, so a solver's inner loop reads top to bottom in `pipe`.
 */
import * as tf from "@tensorflow/tfjs-core"
import type { Draw, Vector } from "../domain/Problem.ts"
import { Effect, Stream } from "effect"
import { norm, readScalar, tidy } from "../domain/tensors.ts"
import type { Dynamics } from "./Dynamics.ts"
import { residual } from "./Dynamics.ts"
import { type Iterate, iterateY, LowerLevel } from "./Iterate.ts"
import { iterateLazily } from "./iterateLazily.ts"

export type Iterates = Stream.Stream<Iterate, never, LowerLevel>

/**
 * y_0, y_1, y_2, … of `dynamics` from `y0` at the current x: infinite and lazy — y_{k+1} is
 * computed only when element k + 1 is pulled, so `take(K)` runs exactly K steps. Where the dynamics
 * has a linearized step for the problem, each iterate also holds its step's residuals.
 */
export const unroll = (dynamics: Dynamics, y0: Vector): Iterates =>
  Stream.unwrap(Effect.map(Effect.service(LowerLevel), ({ at, meter, x }) => {
    const next = nextIterate(dynamics, at, x)
    return iterateLazily(
      (): Iterate => ({ k: 0, state: tidy(() => dynamics.init(y0)) }),
      (previous): Iterate => {
        const iterate = next(previous)
        meter.sample()
        return iterate
      }
    )
  }))

/**
 * One step of `dynamics` from an iterate, in its own tidy, on the problem drawn for it
 * (`at("lower", k)`, which also draws its minibatch): the linearized step (keeping residuals) where
 * the dynamics has one for that problem, the plain step otherwise. The reverse pass recomputes
 * checkpointed segments with it, so they hold, and sample, what the forward pass did.
 */
export const nextIterate = (dynamics: Dynamics, at: Draw, x: Vector) => (previous: Iterate): Iterate =>
  ({
    k: previous.k + 1,
    ...tidy(() => {
      const problem = at("lower", previous.k)
      const linearized = dynamics.linearizedStep?.(problem)
      return linearized === undefined
        ? { state: dynamics.step(problem, x, previous.state, previous.k) }
        : linearized(x, previous.state, previous.k)
    })
  })

/** take(K): the initial iterate and K steps, y_0 … y_K. */
export const take = (innerSteps: number) => (self: Iterates): Iterates => Stream.take(self, innerSteps + 1)

/**
 * Tolerance stop: ends at the first iterate whose projected-gradient residual ‖R_α(x, y_k)‖ ≤ ε
 * (that iterate included). Costs one host sync per step.
 */
export const stopAtResidual = (options: { readonly tolerance: number; readonly alpha: number }) =>
(self: Iterates): Iterates =>
  Stream.takeUntilEffect(self, (iterate) =>
    Effect.flatMap(Effect.service(LowerLevel), ({ at, x }) =>
      Effect.map(
        readScalar(tf.tidy(() => norm(residual(at("lower", iterate.k), x, iterateY(iterate), options.alpha)))),
        (r) => r <= options.tolerance
      )
    ))

/** Tolerance stop on the step length: ends once ‖y_k − y_{k−1}‖ ≤ ε. */
export const stopAtStep = (tolerance: number) => (self: Iterates): Iterates =>
  self.pipe(
    Stream.mapAccumEffect(() => undefined as Iterate | undefined, (previous, iterate) =>
      Effect.map(
        previous === undefined
          ? Effect.succeed(false)
          : Effect.map(readScalar(tf.tidy(() => norm(tf.sub(iterateY(iterate), iterateY(previous))))), (d) => d <= tolerance),
        (small) => [iterate, [{ iterate, small }]] as const
      )),
    Stream.takeUntil(({ small }) => small),
    Stream.map(({ iterate }) => iterate)
  )
