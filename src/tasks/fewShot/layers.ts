/**
 * Convolutional layers with hand-written backward passes (NHWC images, [k, k, in, out] filters).
 *
 * The few-shot hypergradient differentiates twice only through the linear head; the backbone needs
 * first-order gradients alone, and writing them out is both what makes it run on every backend and
 * what makes it fast: tfjs's wasm backend has no Conv2DBackpropFilter kernel, its MaxPoolGrad is wrong
 * where a window's max is ≤ 0, tf.batchNorm cannot be differentiated at all in a tape that is itself
 * recorded, and a tape would keep every intermediate of every op. A layer's forward pass returns its
 * output and a backward closure over what it saved; the closures compose in reverse order.
 *
 * Batch norm uses the statistics of the batch it sees (an episode's support and query images
 * together), at meta-training and at test alike, as MAML does: no running averages to carry.
 */
import * as tf from "@tensorflow/tfjs-core"

/** Gradients of a layer's parameters, by block name. */
export type ParamGradients = Record<string, tf.Tensor>

/** A forward pass: its output and the backward pass from a cotangent of the output. */
export interface Pass {
  readonly output: tf.Tensor4D
  /** Cotangent of the input (undefined when not asked for) and of each parameter. */
  readonly backward: (dOutput: tf.Tensor4D, needInput: boolean) => {
    readonly input: tf.Tensor4D | undefined
    readonly params: ParamGradients
  }
}

/** Batch-norm variance floor (PyTorch's default). */
export const batchNormEpsilon = 1e-5

/**
 * A k×k convolution, stride 1, zero padding (k − 1)/2 ("same"), no bias (batch norm follows). Both
 * gradients are forward convolutions and matrix products, which every backend runs fast: the input
 * gradient is the convolution of the cotangent with the flipped, transposed filter (wasm's own
 * Conv2DBackpropInput is a plain loop, ≈ 10× slower), the filter gradient one product of the input's
 * k² shifted copies (im2col) with the cotangent.
 */
export const conv = (x: tf.Tensor4D, filter: tf.Tensor4D, name: string): Pass => ({
  output: tf.conv2d(x, filter, 1, "same"),
  backward: (dy, needInput) => ({
    input: needInput ? tf.conv2d(dy, tf.transpose(tf.reverse(filter, [0, 1]), [0, 1, 3, 2]), 1, "same") : undefined,
    params: { [name]: filterGradient(x, dy, filter.shape[0]) }
  })
})

/** ∂⟨conv(x, W), dy⟩/∂W as im2col(x)ᵀ · dy (transposed explicitly: wasm's transposed-operand product is slow). */
const filterGradient = (x: tf.Tensor4D, dy: tf.Tensor4D, k: number): tf.Tensor4D => {
  const [n, h, w, c] = x.shape
  const out = dy.shape[3]
  const rows = n * h * w
  const product = (columns: tf.Tensor) => tf.matMul(tf.transpose(columns), tf.reshape(dy, [rows, out]))
  return tf.reshape(product(tf.reshape(k === 1 ? x : patches(x, k), [rows, k * k * c])), [k, k, c, out])
}

/**
 * The k² shifted copies of x side by side, [n, h, w, k²c] in (i, j, channel) order, the filter's
 * [k, k, in] layout. With few channels (an image's) a convolution with a one-hot filter builds them
 * (each copy is a narrow column, which Concat moves slowly); otherwise slices of the padded input,
 * each n·h contiguous runs of w·c values.
 */
const patches = (x: tf.Tensor4D, k: number): tf.Tensor => {
  const [n, h, w, c] = x.shape
  if (c <= 4) return tf.conv2d(x, tf.reshape(tf.eye(k * k * c), [k, k, c, k * k * c]) as tf.Tensor4D, 1, "same")
  const p = (k - 1) / 2
  const padded = tf.reshape(tf.pad(x, [[0, 0], [p, p], [p, p], [0, 0]]), [n, h + 2 * p, (w + 2 * p) * c])
  const shifted: Array<tf.Tensor> = []
  for (let i = 0; i < k; i++) {
    for (let j = 0; j < k; j++) shifted.push(tf.reshape(tf.slice(padded, [0, i, j * c], [n, h, w * c]), [n * h * w, c]))
  }
  return tf.concat(shifted, 1)
}

/**
 * Per-channel sum of x [n, h, w, c] over the batch and spatial axes, as [c]: a product with a row of
 * ones, which wasm runs ≈ 10× faster than its Sum over a leading axis (a transpose, then a reduction).
 */
const channelSum = (x: tf.Tensor): tf.Tensor => {
  const rows = x.size / x.shape[3]!
  return tf.reshape(tf.matMul(tf.ones([1, rows]), tf.reshape(x, [rows, x.shape[3]!])), [x.shape[3]!])
}

/** Per-channel mean over the batch and spatial axes. */
const channelMean = (x: tf.Tensor): tf.Tensor => tf.div(channelSum(x), x.size / x.shape[3]!)

/** Batch norm over the batch and spatial axes, with a learned scale and shift per channel. */
export const batchNorm = (x: tf.Tensor4D, scale: tf.Tensor, shift: tf.Tensor, names: readonly [string, string]): Pass => {
  const centered = tf.sub(x, channelMean(x))
  const inverseStd = tf.rsqrt(tf.add(channelMean(tf.square(centered)), batchNormEpsilon))
  const normalized = tf.mul(centered, inverseStd) as tf.Tensor4D
  return {
    output: tf.add(tf.mul(normalized, scale), shift),
    backward: (dy, needInput) => {
      const dNormalized = tf.mul(dy, scale)
      // dx = r · (dx̂ − mean(dx̂) − x̂ · mean(dx̂ ⊙ x̂)), the batch-statistics form.
      const input = needInput
        ? tf.mul(
          inverseStd,
          tf.sub(tf.sub(dNormalized, channelMean(dNormalized)), tf.mul(normalized, channelMean(tf.mul(dNormalized, normalized))))
        ) as tf.Tensor4D
        : undefined
      return {
        input,
        params: {
          [names[0]]: channelSum(tf.mul(dy, normalized)),
          [names[1]]: channelSum(dy)
        }
      }
    }
  }
}

/** max(x, 0). */
export const relu = (x: tf.Tensor4D): Pass => {
  const output = tf.relu(x)
  return {
    output,
    backward: (dy) => ({ input: tf.mul(dy, tf.step(x)), params: {} })
  }
}

/**
 * 2×2 max-pooling, stride 2, dropping an odd last row or column (PyTorch's MaxPool2d(2)), of x ≥ 0
 * (pool only after a ReLU). The backward pass scatters the cotangent to where each window's max came
 * from. wasm's pooling kernels that track that position start each window at FLT_MIN, not −∞: a window
 * of zeros gets FLT_MIN as its max (whose products with the next filter are subnormal floats, ≈ 8×
 * slower to multiply) and flat index 0 as its position. So the output is the plain MaxPool (exact
 * zeros), and windows whose max is 0 pass no cotangent, which is right after a ReLU: the ReLU's own
 * gradient is zero at every position of such a window.
 */
export const maxPool = (x: tf.Tensor4D): Pass => {
  const output = tf.maxPool(x, 2, 2, "valid")
  return {
    output,
    backward: (dy) => {
      const { indexes } = tf.maxPoolWithArgmax(x, 2, 2, "valid", true)
      const passed = tf.mul(dy, tf.step(output))
      return {
        input: tf.reshape(tf.scatterND(tf.reshape(indexes, [-1, 1]), tf.reshape(passed, [-1]), [x.size]), x.shape),
        params: {}
      }
    }
  }
}

/** Layers applied in turn: their backward passes in reverse, parameter gradients merged. */
export const sequence = (x: tf.Tensor4D, layers: ReadonlyArray<(input: tf.Tensor4D) => Pass>): Pass => {
  const passes: Array<Pass> = []
  let output = x
  for (const layer of layers) {
    const pass = layer(output)
    passes.push(pass)
    output = pass.output
  }
  return {
    output,
    backward: (dy, needInput) => {
      const params: ParamGradients = {}
      let d: tf.Tensor4D | undefined = dy
      for (let i = passes.length - 1; i >= 0; i--) {
        const step = passes[i]!.backward(d!, needInput || i > 0)
        Object.assign(params, step.params)
        d = step.input
      }
      return { input: d, params }
    }
  }
}

/** relu(body(x) + shortcut(x)): a residual connection, the cotangent shared by both branches. */
export const residual = (
  x: tf.Tensor4D,
  body: (input: tf.Tensor4D) => Pass,
  shortcut: (input: tf.Tensor4D) => Pass
): Pass => {
  const main = body(x)
  const side = shortcut(x)
  const sum = relu(tf.add(main.output, side.output) as tf.Tensor4D)
  return {
    output: sum.output,
    backward: (dy, needInput) => {
      const dSum = sum.backward(dy, true).input!
      const a = main.backward(dSum, needInput)
      const b = side.backward(dSum, needInput)
      return {
        input: needInput ? tf.add(a.input!, b.input!) as tf.Tensor4D : undefined,
        params: { ...a.params, ...b.params }
      }
    }
  }
}
