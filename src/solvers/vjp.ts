/**
 * Vector-Jacobian products by reverse mode on tfjs's tape. Everything a hypergradient strategy
 * needs (adjoint steps, Hessian-vector products, mixed second derivatives) is one of these.
 */
import * as tf from "@tensorflow/tfjs-core"
import { dot } from "../domain/tensors.ts"

/**
 * Cotangents of `primals` for f(primals) → outputs and output cotangents `cotangents`:
 * returns ∂⟨f(p), c⟩/∂p_i for every i, zeros where an input does not reach an output.
 */
export const vjp = (
  f: (...primals: Array<tf.Tensor>) => ReadonlyArray<tf.Tensor>,
  primals: ReadonlyArray<tf.Tensor>,
  cotangents: ReadonlyArray<tf.Tensor>
): Array<tf.Tensor> =>
  tf.tidy(() => {
    // tfjs keys gradients by tensor: a tensor passed twice (FISTA's state [y_0, y_0]) would get the
    // sum of both cotangents in each place, so repeated primals are distinct copies here.
    const inputs = primals.map((p, i) => (primals.indexOf(p) < i ? tf.clone(p) : p))
    const { grads } = tf.engine().gradients(
      () => {
        const outputs = f(...inputs)
        return outputs.map((o, i) => dot(o, cotangents[i]!)).reduce((a, b) => tf.add(a, b))
      },
      inputs,
      undefined,
      true
    )
    return inputs.map((p, i) => grads[i] ?? tf.zerosLike(p))
  })

/** Gradient of a scalar function with respect to each argument (zeros where it does not depend). */
export const gradients = (
  f: (...args: Array<tf.Tensor>) => tf.Tensor,
  args: ReadonlyArray<tf.Tensor>
): Array<tf.Tensor> => vjp((...a) => [f(...a)], args, [tf.scalar(1)])
