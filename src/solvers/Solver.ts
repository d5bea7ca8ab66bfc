/**
 * A solver is a value composed from LL dynamics, iterate-stream combinators and a hypergradient
 * strategy, built by piping combinators:
 *
 *     const iapttGm = Solver.make(gradientDescent({ lr: 0.0005 })).pipe(   // dynamics
 *       Solver.auxiliaryInit,                                            // y_0 = z, learned
 *       Solver.take(40),                                                 // K inner steps
 *       Solver.truncatePessimistic,                                      // PTT selection
 *       Solver.hypergradient(reverse())                                  // back through y_0 … y_k̄
 *     )
 *
 * The named methods (`methods.ts`) are presets built exactly this way.
 *
 * Compositions that make no sense do not type-check: `solve` takes only a solver whose inner stream
 * ends (`take` or a tolerance stop), and auxiliary-init takes only a strategy that reaches y_0
 * (`InitGradient`). `solve` checks both again for callers the types do not reach (plain JS, a
 * composition built from a dynamic choice) and fails with `InvalidSolver`.
 */
import * as tf from "@tensorflow/tfjs-core"
import { Effect } from "effect"
import { type Pipeable, pipeArguments } from "effect/Pipeable"
import { HypergradientFailed, InvalidSolver, UnsupportedOp } from "../domain/errors.ts"
import { type BilevelProblem, draws, type Vector } from "../domain/Problem.ts"
import * as Random from "../domain/Random.ts"
import { readScalar, tensorScope } from "../domain/tensors.ts"
import { type Dynamics, shift } from "../dynamics/Dynamics.ts"
import { type CostMeter, iterateY, LowerLevel } from "../dynamics/Iterate.ts"
import * as Iterates from "../dynamics/iterates.ts"
import { last, minResidual, pessimistic, type Selection } from "../dynamics/selection.ts"
import type { Cost } from "../domain/Cost.ts"
import type { HypergradientStrategy, InitGradient } from "./Hypergradient.ts"
import { reverse } from "./reverse.ts"

/**
 * How y_0 is chosen: `fixed`, the task's given init; `auxiliary`, y_0 = z, a variable the UL
 * optimizer learns (IA); `warm`, y_0 = the previous outer step's selected iterate y_k̄, a constant
 * carried in the UL state (what BOAT, Betty and hypertorch's examples do).
 */
export type Initialization = "fixed" | "auxiliary" | "warm"

/**
 * A solver; its type parameters record what the types can check: whether the inner stream ends
 * (`Bounded`), how y_0 is chosen (`Init`) and what its strategy gives for dF/dy_0 (`Reach`).
 */
export interface Solver<
  Bounded extends boolean = boolean,
  Init extends Initialization = Initialization,
  Reach extends InitGradient = InitGradient
> extends Pipeable {
  readonly dynamics: Dynamics
  readonly initialization: Init
  /** The inner loop's stream combinators (take, tolerance stops), composed left to right. */
  readonly inner: (iterates: Iterates.Iterates) => Iterates.Iterates
  /** Whether a combinator ends the inner stream (`take`, a tolerance stop): only then can it be solved. */
  readonly bounded: Bounded
  readonly selection: Selection
  readonly hypergradient: HypergradientStrategy<Reach>
  /**
   * How the adjoint v of an amortized strategy starts: `cold`, from 0 at every outer step; `warm`,
   * from the previous outer step's v, carried in the UL state beside the warm-started y (AmIGO, SOBA).
   */
  readonly adjoint: "cold" | "warm"
  /**
   * LL steps per solve: a count `take(K)` fixes in advance, `"variable"` after a tolerance stop or
   * any other combinator that may end the stream earlier, `"unbounded"` before either.
   */
  readonly steps: number | "variable" | "unbounded"
  /**
   * Where step-size schedules count from: `solve`, every outer step restarts them at k = 0; `run`,
   * the warm-started iterations continue one count over the run (`continueSchedules`).
   */
  readonly schedules: "solve" | "run"
}

/** What a solve may carry in from the outer loop. */
export interface SolveContext {
  /** Under `warmAdjoint`: the v the amortized strategy starts from (the caller's; zero when absent). */
  readonly adjoint?: Vector
  /** The outer step t, which `continueSchedules` counts from (0 when absent). */
  readonly outerStep?: number
}

/** A solver `solve` accepts: its inner stream ends. */
export type Bounded = Solver<true>

/** What one hypergradient computation returns. Its tensors belong to the caller. */
export interface Solution {
  /** dF/dx. */
  readonly gradX: Vector
  /** dF/dz for auxiliary-init (dF/dy_0); zero when the strategy does not reach y_0. */
  readonly gradZ: Vector
  /** The LL iterate the UL objective used, y_k̄ (for a meta-batch, the episodes' y_k̄ stacked, [B, dim y]). */
  readonly y: Vector
  /** F(x, y_k̄). */
  readonly upper: number
  /** The selected index k̄ (for a meta-batch, the mean over its episodes). */
  readonly kbar: number
  /** For a meta-batch: each episode's k̄, in episode order. */
  readonly kbars?: ReadonlyArray<number>
  /** Under `warmAdjoint`: the amortized strategy's new adjoint v, the next outer step's start. */
  readonly adjoint?: Vector
  readonly cost: Cost
}

const proto = {
  pipe() {
    return pipeArguments(this, arguments)
  }
}

const solver = <B extends boolean, I extends Initialization, R extends InitGradient>(
  fields: Omit<Solver<B, I, R>, "pipe">
): Solver<B, I, R> => Object.assign(Object.create(proto), fields)

/**
 * A solver that unrolls `dynamics` and differentiates the whole trajectory. Its stream never ends
 * until `take` or a tolerance stop cuts it.
 */
export const make = (dynamics: Dynamics): Solver<false, "fixed", "exact"> =>
  solver({
    dynamics,
    initialization: "fixed",
    inner: (s) => s,
    bounded: false,
    selection: last,
    hypergradient: reverse(),
    adjoint: "cold",
    steps: "unbounded",
    schedules: "solve"
  })

/**
 * Initialization auxiliary (IA): y_0 = z, learned by the UL optimizer beside x. Only with a strategy
 * that gives dF/dy_0 (exact, or first-order's documented approximation).
 */
export const auxiliaryInit = <B extends boolean, R extends "exact" | "approximate">(
  self: Solver<B, "fixed", R>
): Solver<B, "auxiliary", R> => solver({ ...self, initialization: "auxiliary" })

/**
 * Warm start: y_0 of outer step t + 1 is y_k̄ of step t (y_K under the `last` selection), not
 * differentiated, kept in the UL state so checkpoints and replay carry it. It takes the place that
 * auxiliary-init gives a learned z, so the two do not compose (neither type-checks after the other),
 * and it needs one LL variable per run: a meta-batch of episodes refuses it when solved.
 */
export const warmStart = <B extends boolean, R extends InitGradient>(self: Solver<B, "fixed", R>): Solver<B, "warm", R> =>
  solver({ ...self, initialization: "warm" })

/**
 * Warm adjoint: an amortized strategy's adjoint solve starts from the previous outer step's v
 * (zero at the first), kept in the UL state like warm start's y so checkpoints and replay carry it.
 * With `warmStart` this carries the whole inner state (y, v) of AmIGO and SOBA from step to step.
 * Like warm start, one adjoint per run: a meta-batch of episodes refuses it when solved, and so does
 * `solve` for a strategy that is not amortized.
 */
export const warmAdjoint = <B extends boolean, I extends Initialization, R extends InitGradient>(
  self: Solver<B, I, R>
): Solver<B, I, R> => solver({ ...self, adjoint: "warm" })

/**
 * Schedules over the run: the warm-started iterations continue one count across outer steps, so LL
 * step k of outer step t is step tK + k of one long SGD run, and an amortized adjoint's step j is
 * tM + j. A decreasing step size (SOBA's ρ/√(t + 1)) then decreases over the run instead of
 * restarting at every outer step. Draws stay keyed by (t, k). Needs a count known in advance,
 * take(K) with no tolerance stop: `solve` refuses it otherwise.
 */
export const continueSchedules = <B extends boolean, I extends Initialization, R extends InitGradient>(
  self: Solver<B, I, R>
): Solver<B, I, R> => solver({ ...self, schedules: "run" })

/** The adjoint v_0 a run starts from: zero, shaped like y, under `warmAdjoint`; none otherwise. */
export const initialAdjoint = (self: Solver, y0: Vector): Vector | undefined =>
  self.adjoint === "warm" ? tf.zerosLike(y0) : undefined

/** Appends a combinator to the inner loop (one that may not end it: use `take` or a stop for that). */
export const iterates = (f: (iterates: Iterates.Iterates) => Iterates.Iterates) =>
<B extends boolean, I extends Initialization, R extends InitGradient>(self: Solver<B, I, R>): Solver<B, I, R> =>
  solver({ ...self, inner: (s) => f(self.inner(s)), steps: "variable" })

/** Appends a combinator that ends the inner loop, and what it makes of the step count. */
const ending = (
  f: (iterates: Iterates.Iterates) => Iterates.Iterates,
  steps: (before: Solver["steps"]) => Solver["steps"]
) =>
<B extends boolean, I extends Initialization, R extends InitGradient>(self: Solver<B, I, R>): Solver<true, I, R> =>
  solver({ ...self, inner: (s) => f(self.inner(s)), bounded: true, steps: steps(self.steps) })

/** take(K): K inner steps. */
export const take = (innerSteps: number) =>
  ending(Iterates.take(innerSteps), (before) =>
    before === "unbounded" ? innerSteps : before === "variable" ? before : Math.min(before, innerSteps))

/** Tolerance stop on the projected-gradient residual. */
export const stopAtResidual = (options: { readonly tolerance: number; readonly alpha: number }) =>
  ending(Iterates.stopAtResidual(options), () => "variable")

/** Uses `selection` to pick the iterate the UL objective sees. */
export const select = (selection: Selection) =>
<B extends boolean, I extends Initialization, R extends InitGradient>(self: Solver<B, I, R>): Solver<B, I, R> =>
  solver({ ...self, selection })

/** Pessimistic trajectory truncation (PTT). */
export const truncatePessimistic = select(pessimistic)

/** Truncate at the minimal projected-gradient residual. */
export const truncateAtMinResidual = (alpha: number) => select(minResidual(alpha))

/**
 * Uses `strategy` to compute the hypergradient. A strategy that never reaches y_0 (`none`) does not
 * type-check on an auxiliary-init solver.
 */
export const hypergradient = <R extends InitGradient>(strategy: HypergradientStrategy<R>) =>
<B extends boolean, I extends (R extends "none" ? Exclude<Initialization, "auxiliary"> : Initialization)>(
  self: Solver<B, I, InitGradient>
): Solver<B, I, R> => solver({ ...self, hypergradient: strategy })

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

/** What `solve` checks that the types may not have: an inner loop that ends, a z that is reached. */
export const validate = (self: Solver): Effect.Effect<Bounded, InvalidSolver> =>
  !self.bounded
    ? Effect.fail(
      new InvalidSolver({
        solver: describe(self),
        problem: "its inner loop never ends (no take and no tolerance stop)",
        hint: "Pipe Solver.take(K) or Solver.stopAtResidual(...) into it."
      })
    )
    : self.initialization === "auxiliary" && self.hypergradient.initGradient === "none"
    ? Effect.fail(
      new InvalidSolver({
        solver: describe(self),
        problem: `auxiliary-init learns z from dF/dy_0, which ${self.hypergradient.name} never computes`,
        hint: "Use a strategy that differentiates back to y_0 (reverse() without lastM), or drop auxiliaryInit."
      })
    )
    : self.adjoint === "warm" && self.hypergradient.amortized !== true
    ? Effect.fail(
      new InvalidSolver({
        solver: describe(self),
        problem: `warmAdjoint carries an amortized adjoint v from step to step, and ${self.hypergradient.name} keeps none`,
        hint: "Use the amortized strategy (amortized(...)) or drop warmAdjoint."
      })
    )
    : self.schedules === "run" && typeof self.steps !== "number"
    ? Effect.fail(
      new InvalidSolver({
        solver: describe(self),
        problem: "continueSchedules counts LL steps over the run, and this inner loop's count is not known in advance",
        hint: "Cut the inner loop with Solver.take(K) alone, or drop continueSchedules."
      })
    )
    : Effect.succeed(self as Bounded)

/** One line naming a solver's parts, for messages. */
export const describe = (self: Solver): string =>
  [
    self.dynamics.name,
    self.initialization === "fixed" ? undefined : `${self.initialization}-init`,
    self.selection.name,
    self.hypergradient.name,
    self.adjoint === "warm" ? "warm-adjoint" : undefined,
    self.schedules === "run" ? "schedules over the run" : undefined
  ]
    .filter((part) => part !== undefined)
    .join(" ∘ ")

/** The root key of a run's draws, for callers without a run (full-batch problems ignore it). */
const unkeyed = Random.key(0)

/**
 * One hypergradient at (x, y_0): runs the inner loop, selects, differentiates. Every tensor made
 * on the way is released except those of the returned {@link Solution}. A sampled problem draws its
 * minibatches below `key` (an outer step's, or an episode's): the same key, the same samples. The
 * outer loop's `context` gives a warm adjoint its v and `continueSchedules` its outer step.
 */
export const solve = (
  self: Bounded,
  problem: BilevelProblem,
  x: Vector,
  y0: Vector,
  key: Random.Key = unkeyed,
  context: SolveContext = {}
): Effect.Effect<Solution, InvalidSolver | HypergradientFailed> => {
  const meter = makeMeter()
  const at = draws(problem, key)
  return tensorScope(Effect.gen(function*() {
    yield* validate(self)
    const outerStep = self.schedules === "run" ? context.outerStep ?? 0 : 0
    const dynamics = outerStep === 0 ? self.dynamics : shift(self.dynamics, outerStep * (self.steps as number))
    const trajectory = yield* self.selection.select(
      self.inner(Iterates.unroll(dynamics, y0)),
      self.hypergradient.needsPrefix
    )
    const adjoint = self.adjoint === "warm" ? context.adjoint : undefined
    const parts = yield* self.hypergradient.compute(dynamics, trajectory, { ...(adjoint === undefined ? {} : { adjoint }), outerStep }).pipe(
      // tfjs throws from inside a gradient; an op without a trustworthy second order is a failure of
      // this strategy on this problem, which the caller can act on, not a defect.
      Effect.catchDefect((defect) =>
        defect instanceof UnsupportedOp
          ? Effect.fail(
            new HypergradientFailed({
              strategy: self.hypergradient.name,
              problem: defect.message,
              hint: "Rewrite the objective with the ops docs/second-order.md lists as verified, or use first-order."
            })
          )
          : Effect.die(defect)
      )
    )
    const y = iterateY(trajectory.selected)
    meter.sample()
    const upper = yield* readScalar(tf.tidy(() => at("upper", 0).upper(x, y)))
    return {
      gradX: parts.x,
      gradZ: parts.y0,
      y,
      upper,
      kbar: trajectory.selected.k,
      ...(self.adjoint === "warm" && parts.adjoint !== undefined ? { adjoint: parts.adjoint } : {}),
      cost: {
        innerSteps: trajectory.stepsTaken,
        reverseSteps: parts.reverseSteps,
        hvps: parts.hvps,
        peakBytes: meter.peakBytes()
      }
    } satisfies Solution
  })).pipe(Effect.provideService(LowerLevel, { at, x, meter }))
}

/**
 * The LL iterate the pipeline selects, y_k̄(x, y_0), and its index k̄, with no hypergradient: what
 * the method's own inner loop produces (its dynamics, stops and selection). Its tensor belongs to the
 * caller.
 */
export const lowerSolution = (
  self: Bounded,
  problem: BilevelProblem,
  x: Vector,
  y0: Vector,
  key: Random.Key = unkeyed
): Effect.Effect<{ readonly y: Vector; readonly k: number }, InvalidSolver> =>
  tensorScope(Effect.gen(function*() {
    yield* validate(self)
    const trajectory = yield* self.selection.select(self.inner(Iterates.unroll(self.dynamics, y0)), false)
    return { y: iterateY(trajectory.selected), k: trajectory.selected.k }
  })).pipe(Effect.provideService(LowerLevel, { at: draws(problem, key), x, meter: makeMeter() }))

/**
 * The pipeline's value alone, F(x, y_k̄(x, y_0)): the inner loop and the selection, no
 * hypergradient. Finite differences of this check any strategy that claims to differentiate it;
 * with the same `key` they see the same samples.
 */
export const upperAt = (
  self: Bounded,
  problem: BilevelProblem,
  x: Vector,
  y0: Vector,
  key: Random.Key = unkeyed
): Effect.Effect<number, InvalidSolver> =>
  tensorScope(Effect.gen(function*() {
    const { y } = yield* lowerSolution(self, problem, x, y0, key)
    return yield* readScalar(tf.tidy(() => draws(problem, key)("upper", 0).upper(x, y)))
  }))
