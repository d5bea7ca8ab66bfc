/**
 * The named methods — presets written only with the public builders of `Solver.ts`,
 * the same way a user composes a new solver. Each declares the settings it adds to the task's
 * `innerSteps` and `innerLr`.
 */
import { Schema } from "effect"
import { choice, count, fixedFlag, flag, nonNegative, positive, rate } from "../domain/settings.ts"
import { bda, fista, gradientDescent, nesterovMomentum } from "../dynamics/Dynamics.ts"
import { constant, decreasing, polynomial, type StepSize } from "../dynamics/schedules.ts"
import { averaged } from "../dynamics/stochasticFixedPoint.ts"
import { firstOrder } from "./firstOrder.ts"
import { amortized, fixedPoint, fixedPointOf, implicit, stationarity } from "./implicit.ts"
import { conjugateGradient, neumann, stochasticFixedPoint } from "./linearSolvers.ts"
import { reverse } from "./reverse.ts"
import * as Solver from "./Solver.ts"

/** What every method reads from the task's settings. */
export interface InnerSettings {
  readonly innerSteps: number
  readonly innerLr: number
}

export interface Method<S = any> {
  readonly name: string
  readonly description: string
  readonly settings: Schema.Codec<S, unknown>
  readonly build: (inner: InnerSettings, settings: S) => Solver.Bounded
}

const warmStartDescription = "start each outer step's LL from the previous step's y_K instead of the fixed y_0 (a constant)"

/** A preset as written below: its own settings, and a solver built from them with y_0 chosen as `I` says. */
interface Definition<F extends Schema.Struct.Fields, I extends Solver.Initialization> {
  readonly name: string
  readonly description: string
  readonly settings: Schema.Struct<F>
  readonly build: (inner: InnerSettings, settings: Schema.Struct<F>["Type"]) => Solver.Solver<true, I>
}

/** A method whose LL starts at a fixed y_0, and so may warm-start (`--set warmStart=true`). */
const define = <F extends Schema.Struct.Fields>(method: Definition<F, "fixed">): Method => ({
  ...method,
  settings: Schema.Struct({ ...method.settings.fields, warmStart: flag(false, warmStartDescription) }),
  build: (inner: InnerSettings, { warmStart, ...settings }: { readonly warmStart: boolean }) => {
    const solver = method.build(inner, settings as Schema.Struct<F>["Type"])
    return warmStart ? Solver.warmStart(solver) : solver
  }
}) as unknown as Method

/** A method whose initialization leaves it one warmStart value: the other is refused with `reason`. */
const withFixedWarmStart = <F extends Schema.Struct.Fields, I extends Solver.Initialization>(
  method: Definition<F, I>,
  value: boolean,
  reason: string
): Method => ({
  ...method,
  settings: Schema.Struct({ ...method.settings.fields, warmStart: fixedFlag(value, warmStartDescription, reason) }),
  build: (inner: InnerSettings, { warmStart: _, ...settings }: { readonly warmStart: boolean }) =>
    method.build(inner, settings as Schema.Struct<F>["Type"])
}) as unknown as Method

/** A method that learns y_0 = z (auxiliary-init): warm start would take z's place, so it refuses it, saying why. */
const defineAuxiliary = <F extends Schema.Struct.Fields>(method: Definition<F, "auxiliary">): Method =>
  withFixedWarmStart(
    method,
    false,
    `${method.name} learns its LL initialization z (auxiliary-init), which warm start would replace: ` +
      "use a fixed-init method (rhg, t-rhg, bda, ls, ns, aid-fp, first-order) to warm-start"
  )

/**
 * A method that carries its whole inner state, y and the adjoint v, from outer step to outer step
 * (warm start and warm adjoint are what it is: its warmStart setting is always true, and false is refused saying why).
 */
const defineAmortized = <F extends Schema.Struct.Fields>(method: Definition<F, "warm">): Method =>
  withFixedWarmStart(
    method,
    true,
    `${method.name} always carries y and its adjoint v from one outer step to the next (it is amortized): it has no cold start`
  )

const none = Schema.Struct({})

const descent = ({ innerLr, innerSteps }: InnerSettings) =>
  Solver.make(gradientDescent({ lr: innerLr })).pipe(Solver.take(innerSteps))

export const rhg = define({
  name: "rhg",
  description: "Reverse hypergradient: K projected GD steps from a fixed y_0, backpropagated through all of them",
  settings: none,
  build: descent
})

export const tRhg = define({
  name: "t-rhg",
  description: "Truncated RHG: as RHG, differentiating only the last M of the K steps",
  settings: Schema.Struct({ lastM: count(10, "reverse steps M differentiated through (T-RHG)") }),
  build: (inner, { lastM }) => descent(inner).pipe(Solver.hypergradient(reverse({ lastM })))
})

export const bdaMethod = define({
  name: "bda",
  description: "Bi-level descent aggregation: K steps along μ_k s ∇_y F + (1 − μ_k) s ∇_y f, μ_k = μ_0/(k+1), reverse mode",
  settings: Schema.Struct({ bdaMu0: rate(0.5, "initial aggregation weight μ_0 of the UL gradient (BDA)") }),
  build: ({ innerLr, innerSteps }, { bdaMu0 }) =>
    Solver.make(bda({ mu0: bdaMu0, upperLr: innerLr, lowerLr: innerLr })).pipe(Solver.take(innerSteps))
})

export const ls = define({
  name: "ls",
  description: "Implicit hypergradient, linear system ∇²_yy f v = ∇_y F solved by conjugate gradient (LS)",
  settings: Schema.Struct({
    cgIters: count(20, "conjugate-gradient iterations (LS)"),
    cgIndefinite: choice(
      ["fail", "skip"],
      "fail",
      "when ∇²_yy f is indefinite at y_K (no LL minimum): fail with HypergradientFailed, or skip its negative curvature (LS)"
    )
  }),
  build: (inner, { cgIndefinite, cgIters }) =>
    descent(inner).pipe(
      Solver.hypergradient(implicit(stationarity, conjugateGradient({ iterations: cgIters, indefinite: cgIndefinite })))
    )
})

export const ns = define({
  name: "ns",
  description: "Implicit hypergradient, inverse Hessian by a Neumann series with the LL step α (NS)",
  settings: Schema.Struct({ neumannTerms: count(20, "Neumann-series terms J (NS)") }),
  build: (inner, { neumannTerms }) =>
    descent(inner).pipe(
      Solver.hypergradient(implicit(stationarity, neumann({ terms: neumannTerms, alpha: inner.innerLr })))
    )
})

export const aidFp = define({
  name: "aid-fp",
  description: "Implicit hypergradient by the fixed-point adjoint iteration v ← (∂_yΦ)ᵀ v + ∇_y F of the GD map Φ",
  settings: Schema.Struct({ fpIters: count(20, "fixed-point adjoint iterations (AID-FP)") }),
  build: (inner, { fpIters }) =>
    descent(inner).pipe(
      Solver.hypergradient(implicit(fixedPoint(inner.innerLr), neumann({ terms: fpIters, alpha: 1 })))
    )
})

/**
 * SID's step sizes: η_t = β/(γ + t), or the constant β/γ (its first step), for both the LL
 * iterations and the adjoint's.
 */
const sidSteps = (settings: { readonly sidSchedule: "decreasing" | "constant"; readonly sidBeta: number; readonly sidGamma: number }) =>
  settings.sidSchedule === "decreasing"
    ? decreasing({ beta: settings.sidBeta, gamma: settings.sidGamma })
    : constant(settings.sidBeta / settings.sidGamma)

export const sid = define({
  name: "sid",
  description: "Stochastic implicit differentiation (SID, AISTATS 2021): t averaged minibatch GD steps " +
    "w ← (1−η)w + ηΦ̂(w), then k stochastic adjoint steps v ← (1−η)v + η((∂_wΦ̂)ᵀv + ∇_w F) on fresh draws " +
    "(minibatch: the task's lowerBatch)",
  settings: Schema.Struct({
    sidSchedule: choice(["decreasing", "constant"], "decreasing", "η_t = β/(γ + t), or the constant β/γ (SID)"),
    sidBeta: positive(8, "β of η_t = β/(γ + t) (SID); the O(1/t) rate needs β(1 − q²) > 1"),
    sidGamma: positive(16, "γ of η_t = β/(γ + t) (SID); η_0 = β/γ ≤ 1"),
    adjointSteps: count(200, "stochastic adjoint iterations k (SID)")
  }),
  build: ({ innerLr, innerSteps }, settings) => {
    const map = gradientDescent({ lr: innerLr })
    return Solver.make(averaged(map, sidSteps(settings))).pipe(
      Solver.take(innerSteps),
      Solver.hypergradient(implicit(fixedPointOf(map), stochasticFixedPoint({ iterations: settings.adjointSteps, stepSize: sidSteps(settings) })))
    )
  }
})

export const stocbio = define({
  name: "stocbio",
  description: "StocBiO (ICML 2021): K minibatch SGD steps, then a Neumann series α Σ_q Π (I − α∇²_yy f̂) ∇_y F " +
    "with the LL step α and a fresh Hessian draw per factor; the paper warm-starts y (--set warmStart=true)",
  settings: Schema.Struct({ stocbioTerms: count(20, "Neumann-series terms Q, each a fresh Hessian draw (StocBiO)") }),
  build: (inner, { stocbioTerms }) =>
    descent(inner).pipe(
      Solver.hypergradient(implicit(stationarity, neumann({ terms: stocbioTerms, alpha: inner.innerLr, draws: "fresh" })))
    )
})

/**
 * The amortized adjoint of AmIGO and SOBA: SGD steps v ← v − ρ(∇²_yy f̂ v − ∇_y F̂) on the quadratic
 * ½vᵀ∇²_yy f v − ∇_y Fᵀv, whose Hessian is that of y's SGD, so the LL step ρ (innerLr) suits both, as
 * benchmark_bilevel's reference code takes it; then the hypergradient ∇_x F̂ − ∇²_xy f̂ v.
 */
const amortizedAdjoint = (stepSize: StepSize, steps: number, at: "selected" | "start") =>
  amortized(stationarity, stochasticFixedPoint({ iterations: steps, stepSize }), { at })

export const soba = defineAmortized({
  name: "soba",
  description: "SOBA (NeurIPS 2022), single loop: per outer step one SGD step on y, one on the adjoint v and one on x, " +
    "all from (y_t, v_t, x_t) on one LL draw, y and v carried across steps, steps ρ_t = innerLr/(t+1)^p (innerSteps unused)",
  settings: Schema.Struct({
    sobaDecay: nonNegative(0.5, "p of SOBA's steps ρ_t = innerLr/(t+1)^p on y and v over the outer steps t (0: constant)")
  }),
  build: ({ innerLr }, { sobaDecay }) => {
    const rho = sobaDecay === 0 ? innerLr : polynomial({ alpha: innerLr, power: sobaDecay })
    return Solver.make(gradientDescent({ lr: rho })).pipe(
      Solver.take(1),
      Solver.warmStart,
      Solver.hypergradient(amortizedAdjoint(rho, 1, "start")),
      Solver.warmAdjoint,
      Solver.continueSchedules
    )
  }
})

export const amigo = defineAmortized({
  name: "amigo",
  description: "AmIGO (ICLR 2022): T warm-started SGD steps on y, then M warm-started SGD steps on the adjoint " +
    "v ← v − ρ(∇²_yy f̂ v − ∇_y F̂) on fresh draws, hypergradient ∇_x F̂ − ∇²_xy f̂ v (step ρ = innerLr)",
  settings: Schema.Struct({ amigoAdjointSteps: count(10, "SGD steps M on the adjoint v per outer step, from the previous v (AmIGO)") }),
  build: ({ innerLr, innerSteps }, { amigoAdjointSteps }) =>
    Solver.make(gradientDescent({ lr: innerLr })).pipe(
      Solver.take(innerSteps),
      Solver.warmStart,
      Solver.hypergradient(amortizedAdjoint(innerLr, amigoAdjointSteps, "selected")),
      Solver.warmAdjoint
    )
})

export const iaGm = defineAuxiliary({
  name: "ia-gm",
  description: "Initialization auxiliary: y_0 = z learned beside x, K projected GD steps, full reverse (IA-GM)",
  settings: none,
  build: (inner) => descent(inner).pipe(Solver.auxiliaryInit)
})

export const iaGmA = defineAuxiliary({
  name: "ia-gm-a",
  description: "IA-GM with accelerated LL dynamics: FISTA (paper Eq. 9) or SGD with Nesterov momentum (official code)",
  settings: Schema.Struct({
    acceleration: choice(["fista", "nesterov"], "fista", "accelerated LL dynamics of IA-GM(A)"),
    momentum: rate(0.9, "momentum μ when acceleration = nesterov")
  }),
  build: ({ innerLr, innerSteps }, { acceleration, momentum }) =>
    Solver.make(acceleration === "fista" ? fista({ lr: innerLr }) : nesterovMomentum({ lr: innerLr, momentum })).pipe(
      Solver.auxiliaryInit,
      Solver.take(innerSteps)
    )
})

export const iapttGm = defineAuxiliary({
  name: "iaptt-gm",
  description: "IA-GM with pessimistic trajectory truncation: backpropagate to k̄ = argmax_k F(x, y_k) only (IAPTT-GM)",
  settings: none,
  build: (inner) => descent(inner).pipe(Solver.auxiliaryInit, Solver.truncatePessimistic)
})

export const firstOrderMethod = define({
  name: "first-order",
  description: "First-order approximation: dF/dx ≈ ∇_x F(x, y_K), no second-order terms (cheapest baseline)",
  settings: none,
  build: (inner) => descent(inner).pipe(Solver.hypergradient(firstOrder))
})

export const methods: ReadonlyArray<Method> = [
  rhg,
  tRhg,
  bdaMethod,
  ls,
  ns,
  aidFp,
  sid,
  stocbio,
  soba,
  amigo,
  iaGm,
  iaGmA,
  iapttGm,
  firstOrderMethod
]

/** Settings of a method whose names clash with none of the tasks' (checked by a test). */
export const methodSettingNames = (method: Method): ReadonlyArray<string> =>
  Object.keys((method.settings as unknown as Schema.Struct<Schema.Struct.Fields>).fields)
