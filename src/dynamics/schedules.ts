/**
 * Step-size schedules, values like the other dynamics parameters: a dynamics' `lr` is a number (a
 * constant step) or a schedule of the step index, e.g. the decreasing η_k = β/(γ + k) under which
 * stochastic iterations converge (SID, AISTATS 2021, Thm. 3.2).
 */
export interface Schedule {
  readonly name: string
  readonly at: (k: number) => number
}

/** A step size: constant, or a schedule of the step index k. */
export type StepSize = number | Schedule

/** α_k = α. */
export const constant = (alpha: number): Schedule => ({ name: `${alpha}`, at: () => alpha })

/** η_k = β / (γ + k). */
export const decreasing = (options: { readonly beta: number; readonly gamma: number }): Schedule => ({
  name: `${options.beta}/(${options.gamma}+k)`,
  at: (k) => options.beta / (options.gamma + k)
})

/** The step size at step k. */
export const stepSizeAt = (stepSize: StepSize, k: number): number =>
  typeof stepSize === "number" ? stepSize : stepSize.at(k)

/** A step size's name in a dynamics' name. */
export const stepSizeName = (stepSize: StepSize): string =>
  typeof stepSize === "number" ? `${stepSize}` : stepSize.name
