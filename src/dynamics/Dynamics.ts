/**
 * LL dynamics: a pure, differentiable step y_{k+1} = Φ_k(x, y_k), carried as a value.
 *
 * A dynamics is data, like an optax transformation: `init` builds the state from y_0 and `step`
 * maps a state to the next. Both must be differentiable in (x, state), since every reverse-mode
 * hypergradient takes vector-Jacobian products of them.
 */
import * as tf from "@tensorflow/tfjs-core"
import type { BilevelProblem, Vector } from "../domain/Problem.ts"
import { identity } from "../domain/tensors.ts"
import type { State, StepResiduals } from "./Iterate.ts"
import { type StepSize, stepSizeAt, stepSizeName } from "./schedules.ts"

export interface Dynamics {
  readonly name: string
  /** State [y_0, ...aux_0] from the initial iterate. */
  readonly init: (y0: Vector) => State
  /** One step at index k = 0, 1, …; pure and differentiable. */
  readonly step: (problem: BilevelProblem, x: Vector, state: State, k: number) => State
  /**
   * The step's vector-Jacobian product written by hand for `problem`, where it has a cheap closed
   * form; `undefined` (or absent) and reverse mode takes it by autodiff of `step`. It must equal
   * autodiff's (test/handwrittenVjp.test.ts).
   */
  readonly vjp?: (problem: BilevelProblem) => StepVjp | undefined
  /**
   * The same step, also returning the residuals its hand-written `vjp` reuses (the problem's
   * `lowerLinearization` at y_k, and `upperLinearization` for BDA), where both exist for `problem`;
   * the iterate stream then keeps them.
   */
  readonly linearizedStep?: (problem: BilevelProblem) => LinearizedStep | undefined
}

/** A step that also returns what its VJP will reuse; the next state equals `step`'s. */
export type LinearizedStep = (
  x: Vector,
  state: State,
  k: number
) => { readonly state: State; readonly residuals: StepResiduals }

/**
 * Cotangents of (x, state_k) for ⟨Φ_k(x, state_k), cotangent⟩: one element of the reverse pass.
 * Tensors it allocates belong to the caller's scope.
 */
export type StepVjp = (
  x: Vector,
  state: State,
  k: number,
  cotangent: State,
  residuals?: StepResiduals
) => { readonly x: Vector; readonly state: State }

/**
 * ⟨∇_y f(x, y), v⟩'s gradients in (x, y) by the problem's closed-form Hessian-vector product, when
 * it has one and Y is unconstrained (a projection's Jacobian needs the pre-projection point, which
 * only the step's own tape has).
 */
const closedFormHvp = (problem: BilevelProblem) =>
  problem.projectY === undefined ? problem.lowerHessianVectorProduct : undefined

/** f's linearization, where the closed-form product that reuses its residuals applies (see above). */
const closedFormLinearization = (problem: BilevelProblem) =>
  closedFormHvp(problem) === undefined ? undefined : problem.lowerLinearization

/** A descent direction at y: ∇_y f by default; BDA aggregates ∇_y F into it. */
export type Direction = (problem: BilevelProblem, x: Vector, y: Vector, k: number) => Vector

/**
 * ∇_y f(x, y), itself differentiable (its tape is recorded by any enclosing gradient): the
 * problem's closed form when it has one, autodiff otherwise.
 */
export const lowerGradient: Direction = (problem, x, y) =>
  problem.lowerGradient ? problem.lowerGradient(x, y) : tf.grad((v: Vector) => problem.lower(x, v))(y)

/** ∇_y F(x, y): the problem's closed form when it has one, autodiff otherwise. */
export const upperGradientY: Direction = (problem, x, y) =>
  problem.upperGradient ? problem.upperGradient(x, y) : tf.grad((v: Vector) => problem.upper(x, v))(y) as Vector

const projectY = (problem: BilevelProblem) => problem.projectY ?? identity

/**
 * An update rule on a direction g: (g, y, aux, k) → [y', aux']. Projection onto Y is applied after
 * it. Any differentiable rule works (momentum, Adam-style, …): that is how a user plugs in new LL
 * optimizers.
 */
export interface UpdateRule {
  readonly name: string
  /** Auxiliary state at y_0 (e.g. a zero momentum buffer). */
  readonly initAux: (y0: Vector) => ReadonlyArray<Vector>
  readonly update: (
    g: Vector,
    y: Vector,
    aux: ReadonlyArray<Vector>,
    k: number
  ) => readonly [Vector, ReadonlyArray<Vector>]
}

/** Dynamics from an update rule applied to a direction, then projected onto Y. */
export const fromUpdate = (rule: UpdateRule, direction: Direction = lowerGradient): Dynamics => ({
  name: rule.name,
  init: (y0) => [y0, ...rule.initAux(y0)],
  step: (problem, x, [y, ...aux], k) => {
    const [next, nextAux] = rule.update(direction(problem, x, y!, k), y!, aux, k)
    return [projectY(problem)(next), ...nextAux]
  }
})

/**
 * `fromUpdate(rule)`'s step keeping the problem's linearization at y_k, for the dynamics below whose
 * hand-written VJP reuses it: where the problem has one and no projection (where that VJP applies).
 */
const linearizedUpdate = (rule: UpdateRule) => (problem: BilevelProblem): LinearizedStep | undefined => {
  const linearize = closedFormLinearization(problem)
  return linearize !== undefined
    ? (x, [y, ...aux], k) => {
      const { gradient, residuals } = linearize(x, y!)
      const [next, nextAux] = rule.update(gradient, y!, aux, k)
      return { state: [next, ...nextAux], residuals: [residuals] }
    }
    : undefined
}

/**
 * Projected gradient descent: y_{k+1} = Proj_Y(y_k − α_k ∇_y f(x, y_k)), α_k constant or a
 * schedule; on a sampled problem, ∇_y f of step k's minibatch (SGD).
 */
export const gradientDescent = (options: { readonly lr: StepSize }): Dynamics => {
  const lr = (k: number) => stepSizeAt(options.lr, k)
  const rule: UpdateRule = {
    name: `gd(lr=${stepSizeName(options.lr)})`,
    initAux: () => [],
    update: (g, y, _aux, k) => [tf.sub(y, tf.mul(lr(k), g)), []]
  }
  return {
    ...fromUpdate(rule),
    linearizedStep: linearizedUpdate(rule),
    // y' = y − α∇_y f: ā_y = a − α∇²_yy f·a, ā_x = −α∇²_xy f·a.
    vjp: (problem) => {
      const hvp = closedFormHvp(problem)
      return hvp && ((x, [y], k, [a], residuals) => {
        const h = hvp(x, y!, a!, residuals?.[0])
        return { x: tf.mul(-lr(k), h.x), state: [tf.sub(a!, tf.mul(lr(k), h.y))] }
      })
    }
  }
}

/**
 * SGD with Nesterov momentum, as PyTorch writes it (the official IAPTT-GM code's "accelerated" LL):
 * v' = μ v + g, y' = y − α (g + μ v').
 */
export const nesterovMomentum = (options: { readonly lr: number; readonly momentum: number }): Dynamics => {
  const rule: UpdateRule = {
    name: `nesterov-momentum(lr=${options.lr}, μ=${options.momentum})`,
    initAux: (y0) => [tf.zerosLike(y0)],
    update: (g, y, [v]) => {
      const next = tf.add(tf.mul(options.momentum, v!), g)
      return [tf.sub(y, tf.mul(options.lr, tf.add(g, tf.mul(options.momentum, next)))), [next]]
    }
  }
  return {
    ...fromUpdate(rule),
    linearizedStep: linearizedUpdate(rule),
    // y' = y − α(1+μ)g − αμ²v, v' = μv + g with g = ∇_y f(x, y): with w = a_v − α(1+μ)a_y,
    // ā_y = a_y + ∇²_yy f·w, ā_v = μa_v − αμ²a_y, ā_x = ∇²_xy f·w.
    vjp: (problem) => {
      const hvp = closedFormHvp(problem)
      const { lr, momentum: mu } = options
      return hvp && ((x, [y], _k, [ay, av], residuals) => {
        const w = tf.sub(av!, tf.mul(lr * (1 + mu), ay!))
        const h = hvp(x, y!, w, residuals?.[0])
        return { x: h.x, state: [tf.add(ay!, h.y), tf.sub(tf.mul(mu, av!), tf.mul(lr * mu * mu, ay!))] }
      })
    }
  }
}

/**
 * FISTA / Nesterov's accelerated projected gradient (paper Eq. 9, with the standard t-rule):
 * y_{k+1} = Proj_Y(u_k − α ∇f(u_k)), u_{k+1} = y_{k+1} + ((t_k − 1)/t_{k+1}) (y_{k+1} − y_k).
 * State [y_k, u_k]; t_k depends on k alone, so it is computed on the host.
 */
export const fista = (options: { readonly lr: StepSize }): Dynamics => {
  const lr = (k: number) => stepSizeAt(options.lr, k)
  const momentum = (k: number) => (fistaT(k) - 1) / fistaT(k + 1)
  /** [y_{k+1}, u_{k+1}] from g = ∇f(x, u_k). */
  const advance = (g: Vector, [y, u]: State, k: number, project: (y: Vector) => Vector): State => {
    const next = project(tf.sub(u!, tf.mul(lr(k), g)))
    return [next, tf.add(next, tf.mul(momentum(k), tf.sub(next, y!)))]
  }
  return {
    name: `fista(lr=${stepSizeName(options.lr)})`,
    init: (y0) => [y0, y0],
    step: (problem, x, state, k) => advance(lowerGradient(problem, x, state[1]!, k), state, k, projectY(problem)),
    // The linearization is taken at u_k, where the gradient is.
    linearizedStep: (problem) => {
      const linearize = closedFormLinearization(problem)
      return linearize !== undefined
        ? (x, state, k) => {
          const { gradient, residuals } = linearize(x, state[1]!)
          return { state: advance(gradient, state, k, identity), residuals: [residuals] }
        }
        : undefined
    },
    // y' = u − α∇f(x, u), u' = (1 + β)y' − βy: with c = a_y' + (1 + β)a_u', the cotangent of y',
    // ā_y = −βa_u', ā_u = c − α∇²_uu f·c, ā_x = −α∇²_xu f·c.
    vjp: (problem) => {
      const hvp = closedFormHvp(problem)
      return hvp && ((x, [_y, u], k, [ay, au], residuals) => {
        const beta = momentum(k)
        const c = tf.add(ay!, tf.mul(1 + beta, au!))
        const h = hvp(x, u!, c, residuals?.[0])
        return { x: tf.mul(-lr(k), h.x), state: [tf.mul(-beta, au!), tf.sub(c, tf.mul(lr(k), h.y))] }
      })
    }
  }
}

const fistaTs: Array<number> = [1]
/** t_0 = 1, t_{k+1} = (1 + √(1 + 4 t_k²)) / 2. */
const fistaT = (k: number): number => {
  while (fistaTs.length <= k) {
    const t = fistaTs[fistaTs.length - 1]!
    fistaTs.push((1 + Math.sqrt(1 + 4 * t * t)) / 2)
  }
  return fistaTs[k]!
}

/** BDA's initial aggregation weight μ_0 and the step sizes s_u of ∇_y F and s_l of ∇_y f. */
export interface BdaOptions {
  readonly mu0: number
  readonly upperLr: number
  readonly lowerLr: number
}

/**
 * BDA's aggregated direction: μ_k s_u ∇_y F + (1 − μ_k) s_l ∇_y f with μ_k = μ_0 / (k + 1).
 * BDA is plain projected descent (step 1) along it.
 */
export const bdaDirection = (options: BdaOptions): Direction =>
(problem, x, y, k) => aggregate(options, k, upperGradientY(problem, x, y, k), lowerGradient(problem, x, y, k))

/**
 * Step k's aggregation μ_k s_u u + (1 − μ_k) s_l l of an F-term u and an f-term l: the direction
 * from the two gradients, and (being linear) its VJP from the two Hessian-vector products.
 */
const aggregate = (options: BdaOptions, k: number, upper: Vector, lower: Vector) => {
  const mu = options.mu0 / (k + 1)
  return tf.add(tf.mul(mu * options.upperLr, upper), tf.mul((1 - mu) * options.lowerLr, lower))
}

/**
 * BDA aggregation dynamics. Where the problem has both objectives' closed-form products (and no
 * projection), its step keeps both linearizations and its VJP is two products at them.
 */
export const bda = (options: BdaOptions): Dynamics => ({
  ...fromUpdate({
    name: `bda(μ0=${options.mu0}, su=${options.upperLr}, sl=${options.lowerLr})`,
    initAux: () => [],
    update: (g, y) => [tf.sub(y, g), []]
  }, bdaDirection(options)),
  // The step of `fromUpdate` above, op for op, from both linearizations.
  linearizedStep: (problem) => {
    const { lowerLinearization, upperLinearization } = problem
    return lowerLinearization && upperLinearization && closedFormHvp(problem) && problem.upperHessianVectorProduct
      ? (x, [y], k) => {
        const lower = lowerLinearization(x, y!)
        const upper = upperLinearization(x, y!)
        const direction = aggregate(options, k, upper.gradient, lower.gradient)
        return { state: [tf.sub(y!, direction)], residuals: [lower.residuals, upper.residuals] }
      }
      : undefined
  },
  // y' = y − aggregate(∇_y F, ∇_y f): ā_y = a − aggregate(∇²_yy F·a, ∇²_yy f·a),
  // ā_x = −aggregate(∇²_xy F·a, ∇²_xy f·a), from both closed-form products.
  vjp: (problem) => {
    const lowerHvp = closedFormHvp(problem)
    const upperHvp = problem.upperHessianVectorProduct
    return lowerHvp && upperHvp && ((x, [y], k, [a], residuals) => {
      const upper = upperHvp(x, y!, a!, residuals?.[1])
      const lower = lowerHvp(x, y!, a!, residuals?.[0])
      return { x: tf.neg(aggregate(options, k, upper.x, lower.x)), state: [tf.sub(a!, aggregate(options, k, upper.y, lower.y))] }
    })
  }
})

/**
 * The same dynamics with step k taken as step `offset` + k of a longer run: its step sizes and other
 * k-dependent terms continue from there (the caller keys the draws). How a warm-started solver
 * continues its schedules across outer steps (`Solver.continueSchedules`).
 */
export const shift = (dynamics: Dynamics, offset: number): Dynamics => {
  const { linearizedStep, vjp } = dynamics
  return {
    ...dynamics,
    step: (problem, x, state, k) => dynamics.step(problem, x, state, offset + k),
    ...(vjp === undefined ? {} : {
      vjp: (problem) => {
        const stepVjp = vjp(problem)
        return stepVjp && ((x, state, k, cotangent, residuals) => stepVjp(x, state, offset + k, cotangent, residuals))
      }
    }),
    ...(linearizedStep === undefined ? {} : {
      linearizedStep: (problem) => {
        const linearized = linearizedStep(problem)
        return linearized && ((x, state, k) => linearized(x, state, offset + k))
      }
    })
  }
}

/** The projected-gradient residual R_α(x, y) = y − Proj_Y(y − α ∇_y f(x, y)) (paper Lemma 3.1). */
export const residual = (problem: BilevelProblem, x: Vector, y: Vector, alpha: number): Vector =>
  tf.sub(y, projectY(problem)(tf.sub(y, tf.mul(alpha, lowerGradient(problem, x, y, 0)))))
