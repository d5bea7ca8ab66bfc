/**
 * A solver is a value composed from the parts of SPEC §2–§4, built by piping combinators:
 *
 *     const iapttGm = Solver.make(gradientDescent({ lr: 0.0005 })).pipe(   // dynamics
 *       Solver.auxiliaryInit,                                            // y_0 = z, learned
 *       Solver.take(40),                                                 // K inner steps
 *       Solver.truncatePessimistic,                                      // PTT selection
 *       Solver.hypergradient(reverse())                                  // back through y_0 … y_k̄
 *     )
 *
 * The named methods (`methods.ts`) are presets built exactly this way.
 */
import * as tf from "@tensorflow/tfjs-core"
import { Effect } from "effect"
import { type Pipeable, pipeArguments } from "effect/Pipeable"
import type { BilevelProblem, Vector } from "../domain/Problem.ts"
import { readScalar, tensorScope } from "../domain/tensors.ts"
import type { Dynamics } from "../dynamics/Dynamics.ts"
import { type CostMeter, iterateY, LowerLevel } from "../dynamics/Iterate.ts"
import * as Iterates from "../dynamics/iterates.ts"
import { last, minResidual, pessimistic, type Selection } from "../dynamics/selection.ts"
import type { Cost } from "../domain/Cost.ts"
import type { HypergradientStrategy } from "./Hypergradient.ts"
import { reverse } from "./reverse.ts"

export interface Solver extends Pipeable {
  readonly dynamics: Dynamics
  /** `fixed`: y_0 is the task's given init. `auxiliary`: y_0 = z, a variable the UL optimizer learns. */
  readonly initialization: "fixed" | "auxiliary"
  /** The inner loop's stream combinators (take, tolerance stops), composed left to right. */
  readonly inner: (iterates: Iterates.Iterates) => Iterates.Iterates
  readonly selection: Selection
  readonly hypergradient: HypergradientStrategy
}

/** What one hypergradient computation returns. Its tensors belong to the caller. */
export interface Solution {
  /** dF/dx. */
  readonly gradX: Vector
  /** dF/dz for auxiliary-init (dF/dy_0); zero when the strategy does not reach y_0. */
  readonly gradZ: Vector
  /** The LL iterate the UL objective used, y_k̄. */
  readonly y: Vector
  /** F(x, y_k̄). */
  readonly upper: number
  /** The selected index k̄. */
  readonly kbar: number
  readonly cost: Cost
}

const proto = {
  pipe() {
    return pipeArguments(this, arguments)
  }
}

const solver = (fields: Omit<Solver, "pipe">): Solver => Object.assign(Object.create(proto), fields)

/** A solver that unrolls `dynamics` to the end of its stream and differentiates the whole trajectory. */
export const make = (dynamics: Dynamics): Solver =>
  solver({ dynamics, initialization: "fixed", inner: (s) => s, selection: last, hypergradient: reverse() })

/** Initialization auxiliary (IA): y_0 = z, learned by the UL optimizer beside x. */
export const auxiliaryInit = (self: Solver): Solver => solver({ ...self, initialization: "auxiliary" })

/** Appends a combinator to the inner loop. */
export const iterates = (f: (iterates: Iterates.Iterates) => Iterates.Iterates) => (self: Solver): Solver =>
  solver({ ...self, inner: (s) => f(self.inner(s)) })

/** take(K): K inner steps. */
export const take = (innerSteps: number) => iterates(Iterates.take(innerSteps))

/** Tolerance stop on the projected-gradient residual. */
export const stopAtResidual = (options: { readonly tolerance: number; readonly alpha: number }) =>
  iterates(Iterates.stopAtResidual(options))

/** Uses `selection` to pick the iterate the UL objective sees. */
export const select = (selection: Selection) => (self: Solver): Solver => solver({ ...self, selection })

/** Pessimistic trajectory truncation (PTT). */
export const truncatePessimistic = select(pessimistic)

/** Truncate at the minimal projected-gradient residual. */
export const truncateAtMinResidual = (alpha: number) => select(minResidual(alpha))

/** Uses `strategy` to compute the hypergradient. */
export const hypergradient = (strategy: HypergradientStrategy) => (self: Solver): Solver =>
  solver({ ...self, hypergradient: strategy })

/** Peak tensor memory above what was allocated when the computation started: its own footprint. */
const makeMeter = (): CostMeter => {
  const base = tf.memory().numBytes
  let peak = base
  return {
    sample: () => {
      peak = Math.max(peak, tf.memory().numBytes)
    },
    peakBytes: () => peak - base
  }
}

/**
 * One hypergradient at (x, y_0): runs the inner loop, selects, differentiates. Every tensor made
 * on the way is released except those of the returned {@link Solution}.
 */
export const solve = (self: Solver, problem: BilevelProblem, x: Vector, y0: Vector): Effect.Effect<Solution> => {
  const meter = makeMeter()
  return tensorScope(Effect.gen(function*() {
    const trajectory = yield* self.selection.select(
      self.inner(Iterates.unroll(self.dynamics, y0)),
      self.hypergradient.needsPrefix
    )
    const parts = yield* self.hypergradient.compute(self.dynamics, trajectory)
    const y = iterateY(trajectory.selected)
    meter.sample()
    const upper = yield* readScalar(tf.tidy(() => problem.upper(x, y)))
    return {
      gradX: parts.x,
      gradZ: parts.y0,
      y,
      upper,
      kbar: trajectory.selected.k,
      cost: {
        innerSteps: trajectory.stepsTaken,
        reverseSteps: parts.reverseSteps,
        hvps: parts.hvps,
        peakBytes: meter.peakBytes()
      }
    } satisfies Solution
  })).pipe(Effect.provideService(LowerLevel, { problem, x, meter }))
}

/**
 * The pipeline's value alone, F(x, y_k̄(x, y_0)): the inner loop and the selection, no
 * hypergradient. Finite differences of this check any strategy that claims to differentiate it.
 */
export const upperAt = (self: Solver, problem: BilevelProblem, x: Vector, y0: Vector): Effect.Effect<number> =>
  tensorScope(Effect.gen(function*() {
    const trajectory = yield* self.selection.select(self.inner(Iterates.unroll(self.dynamics, y0)), false)
    return yield* readScalar(tf.tidy(() => problem.upper(x, iterateY(trajectory.selected))))
  })).pipe(Effect.provideService(LowerLevel, { problem, x, meter: makeMeter() }))
