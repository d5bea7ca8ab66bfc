/**
 * Upper-level optimizers, optax-style: a transformation is a pair of pure functions
 * (`init`, `update`) over a state of tensors, and `chain` threads the states of several.
 * SGD, Adam and Nesterov SGD are chains; projection is applied when updates are applied.
 */
import * as tf from "@tensorflow/tfjs-core"
import type { Layout } from "../domain/Blocks.ts"
import type { Vector } from "../domain/Problem.ts"
import { identity } from "../domain/tensors.ts"

/** A transformation's state: tensors, possibly nested (a chain holds its members' states). */
export type OptState = ReadonlyArray<tf.Tensor | OptState>

export interface GradientTransformation {
  readonly init: (params: Vector) => OptState
  /** Maps gradients to updates (to be added to the parameters) and the next state. */
  readonly update: (gradient: Vector, state: OptState, params: Vector) => readonly [Vector, OptState]
}

/** Multiplies updates by a constant (sgd is `scale(−lr)`). */
export const scale = (factor: number): GradientTransformation => ({
  init: () => [],
  update: (g, state) => [tf.mul(factor, g), state]
})

/** Adam's moment estimates with bias correction (Kingma & Ba), before the step size. */
export const scaleByAdam = (
  options: { readonly b1?: number; readonly b2?: number; readonly eps?: number } = {}
): GradientTransformation => {
  const { b1 = 0.9, b2 = 0.999, eps = 1e-8 } = options
  return {
    init: (p) => [tf.zerosLike(p), tf.zerosLike(p), tf.scalar(0)],
    update: (g, [m, v, count]) => {
      const c = tf.add(count as tf.Tensor, 1)
      const m1 = tf.add(tf.mul(b1, m as tf.Tensor), tf.mul(1 - b1, g))
      const v1 = tf.add(tf.mul(b2, v as tf.Tensor), tf.mul(1 - b2, tf.square(g)))
      const mHat = tf.div(m1, tf.sub(1, tf.pow(b1, c)))
      const vHat = tf.div(v1, tf.sub(1, tf.pow(b2, c)))
      return [tf.div(mHat, tf.add(tf.sqrt(vHat), eps)), [m1, v1, c]]
    }
  }
}

/** Heavy-ball trace of updates; `nesterov` looks ahead as PyTorch's SGD does. */
export const trace = (options: { readonly momentum: number; readonly nesterov: boolean }): GradientTransformation => ({
  init: (p) => [tf.zerosLike(p)],
  update: (g, [buffer]) => {
    const next = tf.add(tf.mul(options.momentum, buffer as tf.Tensor), g)
    return [options.nesterov ? tf.add(g, tf.mul(options.momentum, next)) : next, [next]]
  }
})

/** Applies transformations in order, each to the previous one's updates. */
export const chain = (...transformations: ReadonlyArray<GradientTransformation>): GradientTransformation => ({
  init: (p) => transformations.map((t) => t.init(p)),
  update: (g, states, p) => {
    const next: Array<OptState> = []
    const updates = transformations.reduce((u, t, i) => {
      const [out, state] = t.update(u, states[i] as OptState, p)
      next.push(state)
      return out
    }, g)
    return [updates, next]
  }
})

export const sgd = (lr: number): GradientTransformation => scale(-lr)

/**
 * Multiplies updates by −α/(t + 1)^p, t counting this transformation's own updates from 0 (optax's
 * `scale_by_schedule` for a polynomial decay): the decreasing UL step of SOBA's analysis.
 */
export const scaleByPolynomialDecay = (alpha: number, power: number): GradientTransformation => ({
  init: () => [tf.scalar(0)],
  update: (g, [count]) => [
    tf.mul(tf.div(-alpha, tf.pow(tf.add(count as tf.Tensor, 1), power)), g),
    [tf.add(count as tf.Tensor, 1)]
  ]
})

export const adam = (lr: number): GradientTransformation => chain(scaleByAdam(), scale(-lr))

export const nesterovSgd = (lr: number, momentum = 0.9): GradientTransformation =>
  chain(trace({ momentum, nesterov: true }), scale(-lr))

/** One optimizer step: params ← Proj(params + updates(gradient)). */
export const step = (
  transformation: GradientTransformation,
  params: Vector,
  gradient: Vector,
  state: OptState,
  project: (p: Vector) => Vector = identity
): readonly [Vector, OptState] => {
  const [updates, next] = transformation.update(gradient, state, params)
  return [project(tf.add(params, updates)), next]
}

/** Every tensor of a state, for disposal and checkpoints. */
export const stateTensors = (state: OptState): Array<tf.Tensor> =>
  state.flatMap((s) => s instanceof tf.Tensor ? [s] : stateTensors(s))

/**
 * Adds decoupled weight decay, λ·params, to the updates (AdamW's, before the step size: chain it
 * before `scale(−lr)`).
 */
export const addDecayedWeights = (decay: number): GradientTransformation => ({
  init: () => [],
  update: (g, state, p) => [tf.add(g, tf.mul(decay, p)), state]
})

/**
 * A transformation per block of a structured variable (optax's `multi_transform`): each block's
 * gradient goes through its own transformation — e.g. weight decay on convolutions but not on
 * batch-norm scales — and the updates are laid out again as one vector. Blocks not named use `rest`.
 */
export const partition = (
  layout: Layout,
  transformations: Readonly<Record<string, GradientTransformation>>,
  rest: GradientTransformation
): GradientTransformation => {
  const of = (name: string) => transformations[name] ?? rest
  const unknown = Object.keys(transformations).filter((name) => !layout.blocks.some((b) => b.name === name))
  if (unknown.length > 0) {
    throw new RangeError(`partition: no block named ${unknown.join(", ")}; the blocks are ${layout.blocks.map((b) => b.name).join(", ")}`)
  }
  const slices = (v: Vector) => layout.blocks.map((b) => tf.slice(v, b.offset, b.size))
  return {
    init: (p) => slices(p).map((block, i) => of(layout.blocks[i]!.name).init(block)),
    update: (g, states, p) => {
      const params = slices(p)
      const results = slices(g).map((block, i) => of(layout.blocks[i]!.name).update(block, states[i] as OptState, params[i]!))
      return [tf.concat(results.map(([u]) => u)), results.map(([, s]) => s)]
    }
  }
}
