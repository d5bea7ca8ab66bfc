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
 * Conv2DBackpropInput is a plain loop, ≈ 10× slower), the filter gradient a convolution too (below).
 */
export const conv = (x: tf.Tensor4D, filter: tf.Tensor4D, name: string): Pass => ({
  output: tf.conv2d(x, filter, 1, "same"),
  backward: (dy, needInput) => ({
    input: needInput ? tf.conv2d(dy, tf.transpose(tf.reverse(filter, [0, 1]), [0, 1, 3, 2]), 1, "same") : undefined,
    params: { [name]: filterGradient(x, dy, filter.shape[0]) }
  })
})

/**
 * ∂⟨conv(x, W), dy⟩/∂W [k, k, c, out], W[i, j, c, o] = Σ_{n,h,w} x_pad[n, h + i, w + j, c] dy[n, h, w, o]:
 * itself a convolution, of x with its batch axis as channels ([c, h, w, n]) by dy as an h × w filter
 * ([h, w, n, out]), which wasm runs ≈ 2.5× faster than an explicit im2col product at 14 × 14 × 32.
 * With few input channels (an image's) the im2col product wins instead: the k² shifted copies are
 * one convolution with a one-hot filter, and there are few of them.
 */
const filterGradient = (x: tf.Tensor4D, dy: tf.Tensor4D, k: number): tf.Tensor4D => {
  const [n, h, w, c] = x.shape
  const out = dy.shape[3]
  if (c > 4) {
    const byImage = tf.conv2d(tf.transpose(x, [3, 1, 2, 0]), tf.transpose(dy, [1, 2, 0, 3]), 1, (k - 1) / 2)
    return tf.transpose(byImage, [1, 2, 0, 3])
  }
  const rows = n * h * w
  const copies = tf.conv2d(x, tf.reshape(tf.eye(k * k * c), [k, k, c, k * k * c]) as tf.Tensor4D, 1, "same")
  // Transposed explicitly: wasm's transposed-operand product is slow.
  return tf.reshape(tf.matMul(tf.transpose(tf.reshape(copies, [rows, k * k * c])), tf.reshape(dy, [rows, out])), [k, k, c, out])
}

/**
 * Per-channel mean of x [n, h, w, c] over the batch and spatial axes, as [c]: an average pooling over
 * each image's h × w window, then over the n images. Pooling reduces with the channels innermost, the
 * layout; wasm's Sum over the leading axes transposes first, and a product with a row of ones packs
 * all of x as a weight matrix (each ≈ 5–10× slower at 80 × 28 × 28 × 32).
 */
const channelMean = (x: tf.Tensor4D): tf.Tensor => {
  const [n, h, w, c] = x.shape
  const perImage = tf.reshape(tf.avgPool(x, [h, w], [h, w], "valid"), [1, n, 1, c]) as tf.Tensor4D
  return tf.reshape(tf.avgPool(perImage, [n, 1], [n, 1], "valid"), [c])
}

/**
 * Batch norm over the batch and spatial axes, with a learned scale γ and shift β per channel:
 * y = (x − μ) r γ + β, r = 1/√(σ² + ε). The backward pass needs two channel reductions of the
 * cotangent, Σ dy = ∂β and Σ dy ⊙ x̂ = ∂γ, since mean(dy γ) = γ ∂β/m and mean(dy γ ⊙ x̂) = γ ∂γ/m:
 *
 *     dx = r γ (dy − ∂β/m − x̂ ∂γ/m),   x̂ = (x − μ) r,   m = n h w.
 */
export const batchNorm = (x: tf.Tensor4D, scale: tf.Tensor, shift: tf.Tensor, names: readonly [string, string]): Pass => {
  const centered = tf.sub(x, channelMean(x)) as tf.Tensor4D
  const inverseStd = tf.rsqrt(tf.add(channelMean(tf.square(centered) as tf.Tensor4D), batchNormEpsilon))
  const gain = tf.mul(inverseStd, scale)
  const m = x.size / x.shape[3]
  return {
    output: tf.add(tf.mul(centered, gain), shift) as tf.Tensor4D,
    backward: (dy, needInput) => {
      const meanDy = channelMean(dy)
      // mean(dy ⊙ (x − μ)) = ∂γ/(m r).
      const meanDyCentered = channelMean(tf.mul(dy, centered) as tf.Tensor4D)
      const dShift = tf.mul(meanDy, m)
      const dScale = tf.mul(meanDyCentered, tf.mul(inverseStd, m))
      const input = needInput
        ? tf.mul(gain, tf.sub(tf.sub(dy, meanDy), tf.mul(centered, tf.mul(tf.square(inverseStd), meanDyCentered)))) as tf.Tensor4D
        : undefined
      return { input, params: { [names[0]]: dScale, [names[1]]: dShift } }
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
