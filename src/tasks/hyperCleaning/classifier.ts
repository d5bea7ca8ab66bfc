/**
 * The LL classifiers of data hyper-cleaning over a flat weight vector y, with the weighted
 * softmax cross-entropy f(x, y) = mean_i σ(x_i)·CE(net_y(a_i), b_i) and its gradient in closed form.
 *
 *   linear: logits = A W + b                    y = [vec W (d×c), b (c)]
 *   mlp:    logits = (A W₁ + b₁) W₂ + b₂         y = [vec W₁ (d×h), b₁ (h), vec W₂ (h×c), b₂ (c)]
 *
 * Without an activation the MLP's logits are A(W₁W₂) + (b₁W₂ + b₂): reassociated, each LL step makes
 * two skinny passes over the data (A V and Aᵀ G, with V and G c columns wide), like the linear
 * model, instead of two d×h products per example.
 *
 * Products with a data matrix go through {@link DataMatrix}: tfjs's `matMul` gradient multiplies by
 * the transposed data with `transposeA`, which the wasm backend runs ≈ 8× slower than a product with a
 * transposed copy, so each data matrix keeps that copy and supplies its own gradient. Every gradient
 * here is built from ops whose second order tfjs gets right once the Backend layer has installed
 * `installSecondOrderGradients` (matMul, softmax, sigmoid, sums, slices): hypergradients differentiate
 * the closed-form ∇_y f, and test/hyperCleaning.test.ts checks it against autodiff of f.
 */
import * as tf from "@tensorflow/tfjs-core"
import { Effect } from "effect"
import type { Residuals, Vector } from "../../domain/Problem.ts"
import type { RandomSource } from "../../domain/Rng.ts"
import { readData } from "../../domain/tensors.ts"
import { softmaxCrossEntropyPerExample } from "../losses.ts"

/**
 * A constant data matrix A [n, d] that multiplies weights, A V and Aᵀ G, with gradients that use the
 * stored transpose. Each product is linear in its argument, so its gradient (a product with a
 * constant) is exact at every order.
 */
export interface DataMatrix {
  readonly rows: number
  readonly columns: number
  /** A V for V [d, k]. */
  readonly times: (v: tf.Tensor) => tf.Tensor2D
  /** Aᵀ G for G [n, k]. */
  readonly transposeTimes: (g: tf.Tensor) => tf.Tensor2D
  /** The data matrix of some of its rows (a minibatch), in the caller's scope. */
  readonly select: (rows: tf.Tensor1D) => DataMatrix
  /** The tensors it owns (A and Aᵀ), for release. */
  readonly tensors: ReadonlyArray<tf.Tensor>
}

/** A [rows, columns] from row-major values; allocates A and Aᵀ. */
export const dataMatrix = (values: Float32Array, rows: number, columns: number): DataMatrix =>
  dataMatrixOf(tf.tensor2d(values, [rows, columns]))

/** A data matrix over the tensor A (a minibatch's rows, say); allocates Aᵀ. */
export const dataMatrixOf = (a: tf.Tensor2D): DataMatrix => {
  const [rows, columns] = a.shape
  const aT = tf.transpose(a)
  // M X as (Xᵀ Mᵀ)ᵀ, the constant second: the wasm backend's XNNPACK packs a product's second operand
  // once per tensor and reuses it, and thousands of columns fill its tiles where k ≈ 10 do not.
  // Measured on wasm (A 5000×784, k = 10): A V 7.0 → 4.8 ms, Aᵀ G 5.8 → 4.6 ms, transposes included.
  const leftMultiply = (transposedConstant: tf.Tensor) => (x: tf.Tensor) =>
    tf.transpose(tf.matMul(tf.transpose(x), transposedConstant))
  // The gradient closes over the constants and never reads the (unsaved) input.
  const product = (forward: (x: tf.Tensor) => tf.Tensor, backward: (dy: tf.Tensor) => tf.Tensor) =>
    tf.customGrad(((v: tf.Tensor) => ({
      value: forward(v),
      gradFunc: backward
    })) as (...inputs: Array<tf.Tensor | tf.GradSaveFunc>) => { value: tf.Tensor; gradFunc: (dy: tf.Tensor) => tf.Tensor })
  const timesA = leftMultiply(aT)
  const timesAT = leftMultiply(a)
  const times = product(timesA, timesAT)
  const transposeTimes = product(timesAT, timesA)
  return {
    rows,
    columns,
    times: (v) => times(v) as tf.Tensor2D,
    transposeTimes: (g) => transposeTimes(g) as tf.Tensor2D,
    select: (selected) => dataMatrixOf(tf.gather(a, selected)),
    tensors: [a, aT]
  }
}

export type NetKind = "linear" | "mlp"

export interface Classifier {
  readonly kind: NetKind
  readonly inputs: number
  readonly classes: number
  /** Size of the flat weight vector y. */
  readonly size: number
  /** logits [n, c] of the net with weights y on data A. */
  readonly logits: (data: DataMatrix, y: Vector) => tf.Tensor2D
  /**
   * ∇_y of Σ_i G-weighted CE given G = ∂loss/∂logits [n, c] — the backward pass of {@link logits},
   * written so each step costs one skinny pass over A — and that pass, S = Aᵀ G [d, c].
   */
  readonly backward: (data: DataMatrix, y: Vector, g: tf.Tensor2D) => { readonly gradient: Vector; readonly dataGradient: tf.Tensor2D }
  /** The logits' derivative along v, D = J(y)·v [n, c]: one product of A with c columns. */
  readonly tangent: (data: DataMatrix, y: Vector, v: Vector) => tf.Tensor2D
  /**
   * Jᵀ G₂ + ∂_y ⟨G, J(y)·v⟩ for G, G₂ [n, c], given S = Aᵀ G: the backward pass of a Hessian-vector
   * product, the Gauss–Newton term and the net's own curvature (zero for the linear net, linear in y).
   */
  readonly hessianBackward: (
    data: DataMatrix,
    y: Vector,
    v: Vector,
    g: { readonly g: tf.Tensor2D; readonly dataGradient: tf.Tensor2D },
    g2: tf.Tensor2D
  ) => Vector
  /** Initial weights y_0: PyTorch's nn.Linear default, U(−1/√fan_in, 1/√fan_in), as the official code. */
  readonly initialWeights: (rng: RandomSource) => Float32Array
}

const uniformInit = (rng: RandomSource, count: number, fanIn: number) => {
  const bound = 1 / Math.sqrt(fanIn)
  return rng.array(count, () => (2 * rng.uniform() - 1) * bound)
}

const concat = (parts: ReadonlyArray<Float32Array>) => {
  const out = new Float32Array(parts.reduce((n, p) => n + p.length, 0))
  let at = 0
  for (const p of parts) {
    out.set(p, at)
    at += p.length
  }
  return out
}

const flat = (t: tf.Tensor) => tf.reshape(t, [-1])

export const linear = (inputs: number, classes: number): Classifier => {
  const unflatten = (y: Vector) => ({
    w: tf.reshape(tf.slice(y, 0, inputs * classes), [inputs, classes]) as tf.Tensor2D,
    b: tf.slice(y, inputs * classes, classes) as tf.Tensor1D
  })
  return {
    kind: "linear",
    inputs,
    classes,
    size: inputs * classes + classes,
    logits: (data, y) => {
      const { b, w } = unflatten(y)
      return tf.add(data.times(w), b)
    },
    backward: (data, _y, g) => {
      const dataGradient = data.transposeTimes(g)
      return { gradient: tf.concat([flat(dataGradient), tf.sum(g, 0)]), dataGradient }
    },
    // Linear in y: D = A V_w + v_b, and no curvature term.
    tangent: (data, _y, v) => {
      const d = unflatten(v)
      return tf.add(data.times(d.w), d.b)
    },
    hessianBackward: (data, _y, _v, _g, g2) => tf.concat([flat(data.transposeTimes(g2)), tf.sum(g2, 0)]),
    initialWeights: (rng) => concat([uniformInit(rng, inputs * classes, inputs), uniformInit(rng, classes, inputs)])
  }
}

export const mlp = (inputs: number, hidden: number, classes: number): Classifier => {
  const sizes = [inputs * hidden, hidden, hidden * classes, classes] as const
  const unflatten = (y: Vector) => {
    const [w1, b1, w2, b2] = tf.split(y, [...sizes])
    return {
      w1: tf.reshape(w1!, [inputs, hidden]) as tf.Tensor2D,
      b1: b1 as tf.Tensor1D,
      w2: tf.reshape(w2!, [hidden, classes]) as tf.Tensor2D,
      b2: b2 as tf.Tensor1D
    }
  }
  // The end-to-end linear map V = W₁W₂ [d, c] and offset u = b₁W₂ + b₂ [c]: logits = A V + u.
  const affine = (y: Vector) => {
    const p = unflatten(y)
    return {
      v: tf.matMul(p.w1, p.w2),
      u: tf.add(tf.squeeze(tf.matMul(tf.reshape(p.b1, [1, hidden]), p.w2), [0]), p.b2)
    }
  }
  return {
    kind: "mlp",
    inputs,
    classes,
    size: sizes.reduce((a, b) => a + b, 0),
    logits: (data, y) => {
      const { u, v } = affine(y)
      return tf.add(data.times(v), u)
    },
    backward: (data, y, g) => {
      const { b1, w1, w2 } = unflatten(y)
      const aTg = data.transposeTimes(g) // Aᵀ G [d, c]: the one pass over the data
      const gSum = tf.sum(g, 0) // 1ᵀ G [c]
      // Transposed copies: tfjs's transposeA/transposeB products are slow on wasm (module doc).
      const w2T = tf.transpose(w2)
      const gW1 = tf.matMul(aTg, w2T) // Aᵀ G W₂ᵀ
      const gB1 = tf.matMul(tf.reshape(gSum, [1, classes]), w2T) // 1ᵀ G W₂ᵀ
      // H = A W₁ + 1 b₁ᵀ, ∇W₂ = Hᵀ G = W₁ᵀ (Aᵀ G) + b₁ (1ᵀ G); W₁ᵀ(AᵀG) as ((AᵀG)ᵀ W₁)ᵀ: XNNPACK
      // packs W₁ as the product's second operand, faster than multiplying by W₁ᵀ as the first.
      const gW2 = tf.add(
        tf.transpose(tf.matMul(tf.transpose(aTg), w1)),
        tf.mul(tf.reshape(b1, [hidden, 1]), tf.reshape(gSum, [1, classes]))
      )
      return { gradient: tf.concat([flat(gW1), flat(gB1), flat(gW2), gSum]), dataGradient: aTg }
    },
    // Z = A W₁W₂ + u, so D = A (V₁W₂ + W₁V₂) + (v_b₁W₂ + b₁V₂ + v_b₂).
    tangent: (data, y, v) => {
      const p = unflatten(y)
      const d = unflatten(v)
      const row = (b: tf.Tensor, m: tf.Tensor) => tf.squeeze(tf.matMul(tf.reshape(b, [1, hidden]), m), [0])
      const tangentMap = tf.add(tf.matMul(d.w1, p.w2), tf.matMul(p.w1, d.w2))
      const tangentOffset = tf.add(tf.add(row(d.b1, p.w2), row(p.b1, d.w2)), d.b2)
      return tf.add(data.times(tangentMap), tangentOffset)
    },
    // With S = AᵀG, t = 1ᵀG (S given) and S₂ = AᵀG₂, t₂ = 1ᵀG₂ (one pass over the data):
    // Jᵀ G₂ = [S₂W₂ᵀ, t₂W₂ᵀ, W₁ᵀS₂ + b₁t₂ᵀ, t₂]; ∂_y⟨G, J(y)v⟩ = [SV₂ᵀ, tV₂ᵀ, V₁ᵀS + v_b₁tᵀ, 0].
    hessianBackward: (data, y, v, { dataGradient: s, g }, g2) => {
      const p = unflatten(y)
      const d = unflatten(v)
      const s2 = data.transposeTimes(g2)
      const t2 = tf.sum(g2, 0)
      const t = tf.sum(g, 0)
      const weightsT = tf.transpose(tf.concat([p.w2, d.w2], 1)) // [W₂ | V₂]ᵀ [2c, h]
      const gW1 = tf.matMul(tf.concat([s2, s], 1), weightsT)
      const gB1 = tf.matMul(tf.reshape(tf.concat([t2, t]), [1, 2 * classes]), weightsT)
      const outer = (b: tf.Tensor, c: tf.Tensor) => tf.mul(tf.reshape(b, [hidden, 1]), tf.reshape(c, [1, classes]))
      // W₁ᵀS₂ + V₁ᵀS as (S₂ᵀW₁ + SᵀV₁)ᵀ (see backward).
      const gW2 = tf.add(
        tf.transpose(tf.add(tf.matMul(tf.transpose(s2), p.w1), tf.matMul(tf.transpose(s), d.w1))),
        tf.add(outer(p.b1, t2), outer(d.b1, t))
      )
      return tf.concat([flat(gW1), flat(gB1), flat(gW2), t2])
    },
    initialWeights: (rng) =>
      concat([
        uniformInit(rng, inputs * hidden, inputs),
        uniformInit(rng, hidden, inputs),
        uniformInit(rng, hidden * classes, hidden),
        uniformInit(rng, classes, hidden)
      ])
  }
}

/** Per-example cross-entropy [n] of the net y on data A against one-hot labels [n, c]. */
export const crossEntropies = (net: Classifier, data: DataMatrix, oneHot: tf.Tensor, y: Vector): tf.Tensor1D =>
  softmaxCrossEntropyPerExample(net.logits(data, y), oneHot)

/** f(x, y) = mean_i σ(x_i)·CE_i: the weighted training loss, by ops autodiff can take twice. */
export const weightedLoss = (net: Classifier, data: DataMatrix, oneHot: tf.Tensor, x: Vector, y: Vector): tf.Scalar =>
  tf.mean(tf.mul(tf.sigmoid(x), crossEntropies(net, data, oneHot, y)))

/**
 * ∇_y f in closed form, with what a Hessian-vector product at (x, y) reuses: ∂f/∂logits =
 * G = diag(σ(x)/n)(P − Y) with P = softmax(logits), then the net's backward pass, which makes
 * S = Aᵀ G. Residuals [P, S]. `tf.softmax` is safe here: its gradient is rebuilt from its input by
 * `installSecondOrderGradients`.
 */
export const weightedLossLinearization = (
  net: Classifier,
  data: DataMatrix,
  oneHot: tf.Tensor,
  x: Vector,
  y: Vector
): { readonly gradient: Vector; readonly residuals: Residuals } => linearization(net, data, oneHot, sigmoidRows(data, x), y)

/** ∇_y f in closed form (differentiable: hypergradients by autodiff differentiate it). */
export const weightedLossGradient = (net: Classifier, data: DataMatrix, oneHot: tf.Tensor, x: Vector, y: Vector): Vector =>
  weightedLossLinearization(net, data, oneHot, x, y).gradient

/**
 * ∂/∂x and ∂/∂y of ⟨∇_y f(x, y), v⟩ for the weighted loss, in closed form (the problem's
 * `lowerHessianVectorProduct`). With P = softmax(Z), r = σ(x)/n, D = J(y)·v:
 *
 *     ⟨∇_y f, v⟩ = Σ_i r_i ⟨P_i − Y_i, D_i⟩
 *     ∂/∂x_i = σ'(x_i)/n · ⟨P_i − Y_i, D_i⟩
 *     ∂/∂y   = Jᵀ G₂ + ∂_y⟨G, J(y)·v⟩,  G = diag(r)(P − Y),  G₂ = diag(r)(P ⊙ D − P ⊙ rowsum(P ⊙ D))
 *
 * Given the residuals [P, S = AᵀG] of {@link weightedLossLinearization} at (x, y), two passes over
 * the data, c columns each (D and AᵀG₂), and no tape: a reverse-mode hypergradient step then costs
 * about one forward step. Without them it computes them first (two passes more). Used only to first
 * order, so any op may appear; the tests check it against autodiff of {@link weightedLossGradient}.
 */
export const weightedLossHessianVectorProduct = (
  net: Classifier,
  data: DataMatrix,
  oneHot: tf.Tensor,
  x: Vector,
  y: Vector,
  v: Vector,
  residuals?: Residuals
): { readonly x: Vector; readonly y: Vector } => {
  const rowWeights = sigmoidRows(data, x)
  const atY = residuals ?? linearization(net, data, oneHot, rowWeights, y).residuals
  const p = atY[0]!
  const tangent = net.tangent(data, y, v)
  const weights = tf.sigmoid(x)
  const sigmoidPrime = tf.div(tf.mul(weights, tf.sub(1, weights)), data.rows)
  return {
    x: tf.mul(tf.sum(tf.mul(tf.sub(p, oneHot), tangent), 1), sigmoidPrime),
    y: hessianVectorProduct(net, data, oneHot, rowWeights, y, v, tangent, atY)
  }
}

/** F(y) = mean_i CE_i, the unweighted loss (the validation loss): its gradient in closed form, with residuals [P, S]. */
export const meanLossLinearization = (
  net: Classifier,
  data: DataMatrix,
  oneHot: tf.Tensor,
  y: Vector
): { readonly gradient: Vector; readonly residuals: Residuals } => linearization(net, data, oneHot, uniformRows(data), y)

/** ∇_y F for the unweighted loss. */
export const meanLossGradient = (net: Classifier, data: DataMatrix, oneHot: tf.Tensor, y: Vector): Vector =>
  meanLossLinearization(net, data, oneHot, y).gradient

/**
 * ∇²_yy F · v for the unweighted loss, in closed form (as {@link weightedLossHessianVectorProduct}
 * with r = 1/n), from the residuals of {@link meanLossLinearization} at y where given.
 */
export const meanLossHessianVectorProduct = (
  net: Classifier,
  data: DataMatrix,
  oneHot: tf.Tensor,
  y: Vector,
  v: Vector,
  residuals?: Residuals
): Vector => hessianVectorProduct(net, data, oneHot, uniformRows(data), y, v, net.tangent(data, y, v), residuals)

/** Row weights r = σ(x)/n, as a column [n, 1]. */
const sigmoidRows = (data: DataMatrix, x: Vector) => tf.reshape(tf.div(tf.sigmoid(x), data.rows), [data.rows, 1])

/** Row weights r = 1/n, as a column [n, 1]. */
const uniformRows = (data: DataMatrix) => tf.fill([data.rows, 1], 1 / data.rows)

/** ∇_y of Σ_i r_i CE_i with its residuals [P, S = AᵀG], G = diag(r)(P − Y). */
const linearization = (net: Classifier, data: DataMatrix, oneHot: tf.Tensor, rowWeights: tf.Tensor, y: Vector) => {
  const p = tf.softmax(net.logits(data, y))
  const g = tf.mul(tf.sub(p, oneHot), rowWeights) as tf.Tensor2D
  const { dataGradient, gradient } = net.backward(data, y, g)
  return { gradient, residuals: [p, dataGradient] as Residuals }
}

/** ∂/∂y of ⟨∇_y Σ_i r_i CE_i, v⟩ with r fixed, given the tangent D = J(y)·v (and the residuals at y, or recomputed). */
const hessianVectorProduct = (
  net: Classifier,
  data: DataMatrix,
  oneHot: tf.Tensor,
  rowWeights: tf.Tensor,
  y: Vector,
  v: Vector,
  tangent: tf.Tensor,
  residuals?: Residuals
): Vector => {
  const [p, dataGradient] = (residuals ?? linearization(net, data, oneHot, rowWeights, y).residuals) as readonly [
    tf.Tensor2D,
    tf.Tensor2D
  ]
  const pd = tf.mul(p, tangent)
  const g2 = tf.mul(tf.sub(pd, tf.mul(p, tf.sum(pd, 1, true))), rowWeights) as tf.Tensor2D
  const g = tf.mul(tf.sub(p, oneHot), rowWeights) as tf.Tensor2D
  return net.hessianBackward(data, y, v, { g, dataGradient }, g2)
}

/** Predicted classes (argmax of the logits) of the net y on data A. */
export const predict = (net: Classifier, data: DataMatrix, y: Vector): Effect.Effect<Int32Array> =>
  Effect.suspend(() => {
    const classes = tf.tidy(() => tf.argMax(net.logits(data, y), 1))
    return readData<"int32">(classes).pipe(Effect.ensuring(Effect.sync(() => classes.dispose())))
  })
