/**
 * Test-only tfjs setup: pick a backend, and a finite-difference gradient to check autodiff against.
 * The project's Backend layer owns backend selection in real runs; this stays small on purpose.
 */
import * as tf from "@tensorflow/tfjs-core"
import { createRequire } from "node:module"
import * as path from "node:path"

/** The backends every numerical test runs on. */
export const backendNames = ["cpu", "wasm"] as const
export type BackendName = typeof backendNames[number]

/**
 * Registers tfjs's stock kernel gradients and the backend `name` (loading its package), makes it the
 * active backend and waits until it is ready. Installing the second-order fixes is left to the caller.
 */
export const useBackend = async (name: BackendName): Promise<void> => {
  // tfjs-core's bundles register no gradients (the @tensorflow/tfjs umbrella does); its unbundled
  // module does, and vitest resolves its extensionless imports. Evaluated once per process.
  await import("@tensorflow/tfjs-core/dist/register_all_gradients.js")
  if (name === "cpu") {
    await import("@tensorflow/tfjs-backend-cpu")
  } else {
    const wasm = await import("@tensorflow/tfjs-backend-wasm")
    // In Node the default lookup does not find the .wasm binaries; point at the package's dist/.
    const entry = createRequire(import.meta.url).resolve("@tensorflow/tfjs-backend-wasm")
    wasm.setWasmPaths(path.dirname(entry) + path.sep)
  }
  if (!(await tf.setBackend(name))) throw new Error(`tfjs backend "${name}" failed to initialize`)
  await tf.ready()
}

/**
 * Central differences of a scalar function of one tensor, element by element, in float32.
 * Each step is divided by the perturbation float32 actually realized (x + h and x − h are rounded),
 * not by the nominal 2h, which removes most of the representation error at O(1) scales. Choose
 * `h` around 1e-2 relative to the scale of `x`: smaller steps drown in float32 rounding of `f`.
 */
export const finiteDifferenceGradient = (
  f: (x: tf.Tensor) => tf.Scalar,
  x: tf.Tensor,
  h: number
): Float32Array => {
  const base = x.dataSync() as Float32Array
  const at = (values: Float32Array): number =>
    tf.tidy(() => f(tf.tensor(values, x.shape, "float32")).dataSync()[0]!)
  return base.map((value, i) => {
    const plus = Float32Array.from(base)
    const minus = Float32Array.from(base)
    plus[i] = value + h
    minus[i] = value - h
    return (at(plus) - at(minus)) / (plus[i]! - minus[i]!)
  })
}

/** ‖a − b‖ / ‖b‖, with ‖b‖ floored so that a zero reference does not divide by zero. */
export const relativeError = (a: ArrayLike<number>, b: ArrayLike<number>): number => {
  let diff = 0
  let ref = 0
  for (let i = 0; i < b.length; i++) {
    diff += (a[i]! - b[i]!) ** 2
    ref += b[i]! ** 2
  }
  return Math.sqrt(diff) / Math.max(Math.sqrt(ref), 1e-12)
}

/** Reads a flat tensor to the host synchronously (cpu and wasm; the framework itself reads asynchronously). */
export const vectorValue = (t: tf.Tensor): Array<number> => Array.from(t.dataSync())
