/**
 * Reverse-mode hypergradients (RHG, T-RHG, PTT) as a stream of adjoints (docs/design.md):
 *
 *     α_k̄ = ∇_y F(x, y_k̄),  g_x = ∇_x F(x, y_k̄)
 *     k = k̄−1 … 0:  (α_k, Δg_x) = VJP of Φ_k at (y_k, x) with cotangent α_{k+1};  g_x += Δg_x
 *
 * The trajectory's selection decides where the stream starts (k̄ = K for RHG, the PTT index for
 * IAPTT-GM); `lastM` takes M elements of it (T-RHG), and only y_{k̄−M} … y_k̄ are kept. No method has
 * code of its own here.
 *
 * Each VJP is the dynamics' hand-written one where it has one for the problem (a gradient step on a
 * problem with a closed-form Hessian-vector product: no tape, a few products), autodiff of the step
 * otherwise. With `checkpointEvery: c` the selection keeps only every c-th iterate, and the reverse
 * pass recomputes each segment of c steps from its checkpoint when it reaches it: memory
 * O(K/c + c) iterates instead of O(K), for one more forward pass.
 */
import * as tf from "@tensorflow/tfjs-core"
import { Effect, Stream } from "effect"
import type { BilevelProblem, Draw, Vector } from "../domain/Problem.ts"
import { tidy } from "../domain/tensors.ts"
import type { Dynamics, StepVjp } from "../dynamics/Dynamics.ts"
import { type CostMeter, type Iterate, iterateTensors, iterateY, LowerLevel, type State } from "../dynamics/Iterate.ts"
import { nextIterate } from "../dynamics/iterates.ts"
import type { HypergradientStrategy } from "./Hypergradient.ts"
import { gradients, vjp } from "./vjp.ts"

/** One element of the reverse pass: the cotangent of the state at step k and g_x so far. */
export interface Adjoint {
  readonly k: number
  readonly cotangent: State
  readonly x: Vector
}

/** The step's VJP: the dynamics' closed form for this problem when it has one, else autodiff of `step`. */
export const stepVjp = (dynamics: Dynamics, problem: BilevelProblem): StepVjp =>
  dynamics.vjp?.(problem) ?? ((x, state, k, cotangent) => {
    const [dx, ...dState] = vjp((xx, ...s) => dynamics.step(problem, xx!, s, k), [x, ...state], cotangent)
    return { x: dx!, state: dState }
  })

/**
 * The iterates y_j of a prefix that may hold only checkpoints: a retained one as is, a missing one
 * recomputed forward from the nearest checkpoint below it, together with the rest of its segment
 * (up to the next retained iterate), which stays cached until the reverse pass leaves the segment.
 * Recomputation takes the same step the forward pass took (`nextIterate`), residuals included.
 */
const iteratesOf = (
  dynamics: Dynamics,
  draw: Draw,
  x: Vector,
  prefix: ReadonlyArray<Iterate>,
  meter: CostMeter
) => {
  const retained = new Map(prefix.map((iterate) => [iterate.k, iterate] as const))
  // A step may pass a tensor through unchanged: never release one a retained iterate holds.
  const owned = new Set(prefix.flatMap(iterateTensors))
  const next = nextIterate(dynamics, draw, x)
  let segment: Map<number, Iterate> | undefined
  const release = () => {
    if (segment !== undefined) {
      for (const iterate of segment.values()) tf.dispose(iterateTensors(iterate).filter((t) => !owned.has(t)))
    }
    segment = undefined
  }
  const at = (j: number): Iterate => {
    const kept = retained.get(j)
    if (kept !== undefined) return kept
    if (segment === undefined || !segment.has(j)) {
      release()
      const from = Math.max(...prefix.map((p) => p.k).filter((k) => k < j))
      const until = Math.min(...prefix.map((p) => p.k).filter((k) => k > j))
      const iterates = new Map<number, Iterate>()
      let iterate = retained.get(from)!
      for (let k = from; k + 1 < until; k++) {
        iterate = next(iterate)
        iterates.set(k + 1, iterate)
      }
      meter.sample()
      segment = iterates
    }
    return segment.get(j)!
  }
  return { at, release }
}

/**
 * The adjoint stream α_k̄, α_{k̄−1}, …, α_0 over a retained prefix (all of y_0 … y_k̄, or checkpoints
 * and y_k̄). Each VJP runs when its element is pulled, and an element's tensors are released when the
 * next one is computed: read an adjoint before pulling the next (as `runLast` and `take` do).
 */
export const adjoints = (dynamics: Dynamics, prefix: ReadonlyArray<Iterate>) =>
  Stream.unwrap(Effect.map(Effect.service(LowerLevel), ({ at: draw, meter, x }) => {
    const iterates = iteratesOf(dynamics, draw, x, prefix, meter)
    const step = (previous: Adjoint): Adjoint => {
      const k = previous.k - 1
      // Outside the tidy: a recomputed segment outlives this element. Step k's residuals (its
      // linearization at y_k) sit on the iterate it made, y_{k+1}.
      const { state } = iterates.at(k)
      const { residuals } = iterates.at(k + 1)
      return tidy(() => {
        // Step k's VJP on step k's draw, regenerated: the sample the forward step saw.
        const pulled = stepVjp(dynamics, draw("lower", k))(x, state, k, previous.cotangent, residuals)
        return { k, x: tf.add(previous.x, pulled.x), cotangent: pulled.state }
      })
    }
    return Stream.unfold(undefined as Adjoint | undefined, (previous) =>
      Effect.sync(() => {
        if (previous !== undefined && previous.k === 0) return undefined
        const next = previous === undefined ? start(draw, x, prefix[prefix.length - 1]!) : step(previous)
        if (previous !== undefined) tf.dispose([previous.x, ...previous.cotangent])
        meter.sample()
        return [next, next] as const
      })
    ).pipe(Stream.ensuring(Effect.sync(iterates.release)))
  }))

/** α_k̄ = ∇_y F(x, y_k̄) on the LL variable (zero on auxiliary state) and g_x = ∇_x F(x, y_k̄). */
const start = (draw: Draw, x: Vector, top: Iterate): Adjoint =>
  tf.tidy(() => {
    const { upper } = draw("upper", 0)
    const [gx, gy] = gradients((xx, yy) => upper(xx!, yy!), [x, iterateY(top)])
    return { k: top.k, x: gx!, cotangent: [gy!, ...top.state.slice(1).map((t) => tf.zerosLike(t))] }
  })

const nameOf = (options: { readonly lastM?: number; readonly checkpointEvery?: number }) => {
  const parts = [
    ...(options.lastM === undefined ? [] : [`last ${options.lastM}`]),
    ...(options.checkpointEvery === undefined ? [] : [`checkpoint every ${options.checkpointEvery}`])
  ]
  return parts.length === 0 ? "reverse" : `reverse(${parts.join(", ")})`
}

/**
 * Reverse through the trajectory y_0 → y_k̄, or only its last `lastM` steps. The gradient reaches
 * y_0 (and so an auxiliary-init z) only when the whole prefix is differentiated. `checkpointEvery`
 * trades time for memory: keep every c-th iterate only and recompute the others segment by segment.
 */
export function reverse(options?: { readonly checkpointEvery?: number }): HypergradientStrategy<"exact">
export function reverse(options: { readonly lastM: number; readonly checkpointEvery?: number }): HypergradientStrategy<"none">
export function reverse(
  options: { readonly lastM?: number; readonly checkpointEvery?: number } = {}
): HypergradientStrategy {
  const truncated = options.lastM !== undefined
  return {
    name: nameOf(options),
    // Truncated, it reaches y_0 only when M ≥ k̄, which no composition can promise: declared `none`.
    initGradient: truncated ? "none" : "exact",
    exact: !truncated,
    // Checkpoints bound memory by themselves; otherwise T-RHG keeps only the M + 1 iterates it reads.
    needsPrefix: options.checkpointEvery !== undefined
      ? { checkpointEvery: options.checkpointEvery }
      : options.lastM !== undefined
      ? { window: options.lastM }
      : true,
    compute: (dynamics, trajectory) =>
      Effect.gen(function*() {
        const { x } = yield* LowerLevel
        const stream = adjoints(dynamics, trajectory.prefix)
        const end = yield* Stream.runLast(
          options.lastM === undefined ? stream : Stream.take(stream, options.lastM + 1)
        )
        const adjoint = end._tag === "Some" ? end.value : undefined
        const y0 = trajectory.prefix[0]!
        const reachedStart = adjoint !== undefined && adjoint.k === 0
        return {
          x: adjoint?.x ?? tf.zerosLike(x),
          y0: reachedStart
            ? vjp((y) => dynamics.init(y!), [iterateY(y0)], adjoint.cotangent)[0]!
            : tf.zerosLike(iterateY(y0)),
          reverseSteps: trajectory.selected.k - (adjoint?.k ?? trajectory.selected.k),
          hvps: 0
        }
      })
  }
}
