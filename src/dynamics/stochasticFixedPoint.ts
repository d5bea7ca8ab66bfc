/**
 * Stochastic fixed-point dynamics (SID, Grazzi, Pontil, Salzo, AISTATS 2021, Eq. 5):
 *
 *     w_{t+1} = (1 − η_t) w_t + η_t Φ̂(w_t, x; ξ_t)
 *
 * with Φ̂ any LL map (a dynamics) on step t's draw ξ_t of a sampled problem, and η_t a step size:
 * constant, or β/(γ + t) (src/dynamics/schedules.ts), under which the iterates converge in mean
 * square to the fixed point of the expected map when Φ̂ contracts in expectation. With Φ̂ the
 * minibatch GD map w − α∇_w f̂, this is SGD with steps αη_t. Every part of the state is averaged.
 */
import * as tf from "@tensorflow/tfjs-core"
import type { Dynamics } from "./Dynamics.ts"
import { type StepSize, stepSizeAt, stepSizeName } from "./schedules.ts"

export const averaged = (map: Dynamics, stepSize: StepSize): Dynamics => ({
  name: `averaged(${map.name}, η=${stepSizeName(stepSize)})`,
  init: map.init,
  step: (problem, x, state, k) => {
    const eta = stepSizeAt(stepSize, k)
    const next = map.step(problem, x, state, k)
    return state.map((s, i) => tf.add(tf.mul(1 - eta, s), tf.mul(eta, next[i]!)))
  }
})
