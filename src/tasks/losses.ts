/**
 * Losses and regularizers for task objectives. Hypergradients differentiate their gradients, so each
 * is written only from ops whose second order test/secondOrder.test.ts verifies (with
 * `installSecondOrderGradients` in place). Never `tf.logSoftmax` or `tf.losses.softmaxCrossEntropy`:
 * their gradients cannot be differentiated correctly (docs/second-order.md).
 */
import * as tf from "@tensorflow/tfjs-core"

/**
 * log Σ exp(logits) along `axis`. Subtracting the max first keeps `exp` finite. The max needs no
 * stop-gradient: its contributions cancel, and its gradient differentiates to zero once
 * `installSecondOrderGradients` has given comparison kernels their zero gradients.
 */
export const logSumExp = (logits: tf.Tensor, axis = -1, keepDims = false): tf.Tensor => {
  const shift = tf.max(logits, axis, true)
  const sumExp = tf.sum(tf.exp(tf.sub(logits, shift)), axis, keepDims)
  return tf.add(keepDims ? shift : tf.squeeze(shift, [axis]), tf.log(sumExp))
}

/** log softmax over the last axis, as logits − logSumExp(logits): stable, and twice differentiable. */
export const logSoftmax = (logits: tf.Tensor): tf.Tensor => tf.sub(logits, logSumExp(logits, -1, true))

/**
 * Softmax cross-entropy of each row of `logits` [n, k] against `labels` [n, k], one-hot (any row
 * distribution works, e.g. smoothed labels): logSumExp(z) − ⟨y, z⟩, a vector [n]. One-hot rather than
 * class indices keeps the loss to sums and products, and lets a caller weight rows (hyper-cleaning).
 */
export const softmaxCrossEntropyPerExample = (logits: tf.Tensor, labels: tf.Tensor): tf.Tensor1D =>
  tf.sub(logSumExp(logits, -1), tf.sum(tf.mul(labels, logits), -1)) as tf.Tensor1D

/** Mean over rows of {@link softmaxCrossEntropyPerExample}. */
export const softmaxCrossEntropy = (logits: tf.Tensor, labels: tf.Tensor): tf.Scalar =>
  tf.mean(softmaxCrossEntropyPerExample(logits, labels))

/**
 * Mean binary cross-entropy of logits against targets in [0, 1], as softplus(z) − t·z: one smooth
 * kernel whose gradient (a sigmoid of the input) is built from its input, rather than tfjs's
 * relu(z) + log1p(exp(−|z|)) form with a kink in each term.
 */
export const sigmoidCrossEntropy = (logits: tf.Tensor, targets: tf.Tensor): tf.Scalar =>
  tf.mean(tf.sub(tf.softplus(logits), tf.mul(targets, logits)))

/**
 * Σ (w² + eps)^{q/2}: a smooth surrogate of the non-convex ‖w‖_q^q (q < 1) used as the few-shot
 * regularizer; `eps` removes the kink at 0 so that the lower-level Hessian exists everywhere.
 */
export const lqPenalty = (w: tf.Tensor, q = 0.5, eps = 0.1): tf.Scalar =>
  tf.sum(tf.pow(tf.add(tf.square(w), eps), q / 2))
