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

/**
 * α_k = α / (k + 1)^p: SOBA's decreasing steps (benchmark_bilevel takes p = ½ for y, v and x; the
 * SOBA paper's analysis p = 2/5 for y and v, 3/5 for x). p = 0 is the constant α.
 */
export const polynomial = (options: { readonly alpha: number; readonly power: number }): Schedule => ({
  name: `${options.alpha}/(k+1)^${options.power}`,
  at: (k) => options.alpha / Math.pow(k + 1, options.power)
})

/** The step size at step k. */
export const stepSizeAt = (stepSize: StepSize, k: number): number =>
  typeof stepSize === "number" ? stepSize : stepSize.at(k)

/** A step size's name in a dynamics' name. */
export const stepSizeName = (stepSize: StepSize): string =>
  typeof stepSize === "number" ? `${stepSize}` : stepSize.name
