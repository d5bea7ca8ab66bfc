/**
 * Reverse-mode hypergradients (RHG, T-RHG, PTT) as a stream of adjoints (DESIGN.md):
 *
 *     α_k̄ = ∇_y F(x, y_k̄),  g_x = ∇_x F(x, y_k̄)
 *     k = k̄−1 … 0:  (α_k, Δg_x) = VJP of Φ_k at (y_k, x) with cotangent α_{k+1};  g_x += Δg_x
 *
 * The trajectory's selection decides where the stream starts (k̄ = K for RHG, the PTT index for
 * IAPTT-GM); `lastM` takes M elements of it (T-RHG). No method has code of its own here.
 */
import * as tf from "@tensorflow/tfjs-core"
import { Effect, Stream } from "effect"
import type { BilevelProblem, Vector } from "../domain/Problem.ts"
import type { Dynamics } from "../dynamics/Dynamics.ts"
import { type Iterate, iterateY, LowerLevel, type State } from "../dynamics/Iterate.ts"
import type { HypergradientStrategy } from "./Hypergradient.ts"
import { gradients, vjp } from "./vjp.ts"

/** One element of the reverse pass: the cotangent of the state at step k and g_x so far. */
export interface Adjoint {
  readonly k: number
  readonly cotangent: State
  readonly x: Vector
}

/**
 * The adjoint stream α_k̄, α_{k̄−1}, …, α_0 over a retained prefix y_0 … y_k̄. Each VJP runs when its
 * element is pulled, and an element's tensors are released when the next one is computed: read an
 * adjoint before pulling the next (as `runLast` and `take` do).
 */
export const adjoints = (dynamics: Dynamics, prefix: ReadonlyArray<Iterate>) =>
  Stream.unwrap(Effect.map(Effect.service(LowerLevel), ({ meter, problem, x }) =>
    Stream.unfold(undefined as Adjoint | undefined, (previous) =>
      Effect.sync(() => {
        if (previous !== undefined && previous.k === 0) return undefined
        const next = previous === undefined ? start(problem.upper, x, prefix[prefix.length - 1]!) : tf.tidy(() => {
          const from = prefix[previous.k - 1]!
          const [dx, ...dState] = vjp(
            (xx, ...state) => dynamics.step(problem, xx!, state, from.k),
            [x, ...from.state],
            previous.cotangent
          )
          return { k: from.k, x: tf.add(previous.x, dx!), cotangent: dState } satisfies Adjoint
        })
        if (previous !== undefined) tf.dispose([previous.x, ...previous.cotangent])
        meter.sample()
        return [next, next] as const
      })
    )
  ))

/** α_k̄ = ∇_y F(x, y_k̄) on the LL variable (zero on auxiliary state) and g_x = ∇_x F(x, y_k̄). */
const start = (upper: BilevelProblem["upper"], x: Vector, top: Iterate): Adjoint =>
  tf.tidy(() => {
    const [gx, gy] = gradients((xx, yy) => upper(xx!, yy!), [x, iterateY(top)])
    return { k: top.k, x: gx!, cotangent: [gy!, ...top.state.slice(1).map((t) => tf.zerosLike(t))] }
  })

/**
 * Reverse through the trajectory y_0 → y_k̄, or only its last `lastM` steps. The gradient reaches
 * y_0 (and so an auxiliary-init z) only when the whole prefix is differentiated.
 */
export const reverse = (options: { readonly lastM?: number } = {}): HypergradientStrategy => ({
  name: options.lastM === undefined ? "reverse" : `reverse(last ${options.lastM})`,
  needsPrefix: true,
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
})
