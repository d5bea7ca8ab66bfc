/**
 * Kernel gradients that can themselves be differentiated, so that a hypergradient (a gradient of a
 * function of gradients) is right on tfjs 4.22. See docs/second-order.md.
 *
 * Why the stock ones fail: the engine clones the tensors a gradient saves while the kernel runs, and
 * records the clone of an *output* on the tape before the kernel's own node; the outer tape therefore
 * sees that clone as a constant. Gradients built from the saved output (Exp, Sigmoid, Tanh, Softmax,
 * Elu, Pow's exponent) lose a term at second order. Saved *inputs* are recorded after the node that
 * produced them and stay differentiable, so every gradient below is rebuilt from inputs alone.
 */
import * as tf from "@tensorflow/tfjs-core"
import { UnsupportedOp } from "../domain/errors.ts"

/**
 * Replaces the gradients listed here in tfjs's global registry. Idempotent; call it whenever a
 * backend is acquired. The registry is per process and shared by all backends.
 */
export const installSecondOrderGradients = (): void => {
  for (const config of secondOrderGradients) {
    const current = tf.getGradient(config.kernelName) as tf.GradConfig | undefined
    if (current === config) continue
    // registerGradient warns about overriding in DEBUG mode; replacing is the point here.
    if (current !== undefined) tf.unregisterGradient(config.kernelName)
    tf.registerGradient(config)
  }
}

/** dy ⊙ derivative(x) for a unary kernel whose input is named `x`. */
const unaryFromInput = (kernelName: string, derivative: (x: tf.Tensor) => tf.Tensor): tf.GradConfig => ({
  kernelName,
  inputsToSave: ["x"],
  gradFunc: (dy, [x]) => ({ x: () => tf.mul(dy as tf.Tensor, derivative(x!)) })
})

/** Sums a broadcast gradient back to the shape of the input it flows to. */
const sumToShape = (gradient: tf.Tensor, shape: Array<number>): tf.Tensor => {
  const axes = tf.broadcast_util.getReductionAxes(shape, gradient.shape)
  return tf.reshape(axes.length > 0 ? tf.sum(gradient, axes) : gradient, shape)
}

const softmax: tf.GradConfig = {
  kernelName: tf.Softmax,
  inputsToSave: ["logits"],
  gradFunc: (dy, [logits], attrs) => {
    const { dim } = attrs as unknown as tf.SoftmaxAttrs
    return {
      logits: () => {
        const y = tf.softmax(logits!, dim)
        const dyY = tf.mul(dy as tf.Tensor, y)
        return tf.sub(dyY, tf.mul(tf.sum(dyY, dim, true), y))
      }
    }
  }
}

const pow: tf.GradConfig = {
  kernelName: tf.Pow,
  inputsToSave: ["a", "b"],
  gradFunc: (dy, [a, b]) => {
    const base = a!
    const exponent = tf.cast(b!, "float32")
    return {
      a: () => sumToShape(tf.mul(dy as tf.Tensor, tf.mul(exponent, tf.pow(base, tf.sub(exponent, 1)))), base.shape),
      // d/db aᵇ = aᵇ log a, taken as 0 where a ≤ 0 (as tfjs does), without a NaN in the unused branch.
      b: () => {
        const logBase = tf.log(tf.where(tf.greater(base, 0), base, tf.onesLike(base)))
        return sumToShape(tf.mul(dy as tf.Tensor, tf.mul(tf.pow(base, exponent), logBase)), b!.shape)
      }
    }
  }
}

/**
 * Comparisons and logical ops are piecewise constant: zero gradient. tfjs registers none for most of
 * them, so a gradient that *uses* one (max, min, minimum, maximum, clipByValue, …) cannot be
 * differentiated again. Zeros are float32 of each input's shape, as backprop requires.
 */
const zeroGradient = (kernelName: string, inputs: ReadonlyArray<string>): tf.GradConfig => ({
  kernelName,
  inputsToSave: [...inputs],
  gradFunc: (_dy, saved) =>
    Object.fromEntries(inputs.map((name, i) => [name, () => tf.zeros(saved[i]!.shape)]))
})

/**
 * `tf.logSoftmax` and `tf.losses.softmaxCrossEntropy` are `customGrad` ops: their gradient sees only
 * saved copies, never the inputs, so it cannot be rebuilt. A customGrad node is recorded under its
 * op's scope name (`<op>__op`), which the registry consults, so a config under that name replaces it:
 * it gives the stock first-order gradient, and throws `UnsupportedOp` when the gradient is itself
 * being recorded (the tape is on during backprop only inside an enclosing `tf.grad`).
 */
const guardedCustomGrad = (
  scope: string,
  unsupported: { readonly op: string; readonly use: string },
  firstOrder: (dy: tf.Tensor, saved: Array<tf.Tensor>) => Record<string, () => tf.Tensor>
): tf.GradConfig => ({
  kernelName: `${scope}${tf.OP_SCOPE_SUFFIX}`,
  gradFunc: (dy, saved) => {
    if (tf.engine().isTapeOn()) throw new UnsupportedOp(unsupported)
    return firstOrder(dy as tf.Tensor, saved)
  }
})

const secondOrderGradients: ReadonlyArray<tf.GradConfig> = [
  unaryFromInput(tf.Exp, tf.exp),
  unaryFromInput(tf.Sigmoid, (x) => {
    const s = tf.sigmoid(x)
    return tf.mul(s, tf.sub(1, s))
  }),
  unaryFromInput(tf.Tanh, (x) => tf.sub(1, tf.square(tf.tanh(x)))),
  // elu' = 1 for x > 0, eˣ otherwise: exactly exp(min(x, 0)), which never overflows.
  unaryFromInput(tf.Elu, (x) => tf.exp(tf.minimum(x, 0))),
  softmax,
  pow,
  ...[tf.Equal, tf.NotEqual, tf.Greater, tf.GreaterEqual, tf.Less, tf.LessEqual, tf.LogicalAnd, tf.LogicalOr]
    .map((kernel) => zeroGradient(kernel, ["a", "b"])),
  zeroGradient(tf.LogicalNot, ["x"]),
  // Saved: [logSoftmax(x)] over the last axis, the only one tf.logSoftmax supports.
  guardedCustomGrad(
    "logSoftmax",
    { op: "tf.logSoftmax", use: "logSoftmax from src/tasks/losses.ts" },
    (dy, [value]) => ({ 0: () => tf.sub(dy, tf.mul(tf.sum(dy, -1, true), tf.exp(value!))) })
  ),
  // Saved: [labels, logSoftmax(logits)]; inputs are (labels, logits); dy holds one value per row.
  guardedCustomGrad(
    "softmaxCrossEntropy",
    { op: "tf.losses.softmaxCrossEntropy", use: "softmaxCrossEntropy from src/tasks/losses.ts" },
    (dy, [labels, logResult]) => {
      const dyRow = tf.expandDims(dy, -1)
      const residual = tf.sub(tf.exp(logResult!), tf.cast(labels!, "float32"))
      return { 0: () => tf.neg(tf.mul(dyRow, residual)), 1: () => tf.mul(dyRow, residual) }
    }
  )
]
