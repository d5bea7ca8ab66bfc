/**
 * Classification and data-cleaning metrics, on host arrays.
 *
 * Cleaning (data hyper-cleaning): an example is *kept* (predicted positive) when its weight
 * σ(x_i) ≥ threshold, and it is truly positive when its label is clean. Then
 *
 *     precision = |kept ∩ clean| / |kept|,   recall = |kept ∩ clean| / |clean|,   F1 = 2PR / (P + R)
 *
 * with 0 for a ratio whose denominator is 0 (nothing kept, nothing clean, P = R = 0).
 */

/** Fraction of `predicted` equal to `labels` (0 for empty arrays). */
export const accuracy = (predicted: ArrayLike<number>, labels: ArrayLike<number>): number => {
  if (predicted.length !== labels.length) {
    throw new RangeError(`accuracy: ${predicted.length} predictions for ${labels.length} labels`)
  }
  let right = 0
  for (let i = 0; i < labels.length; i++) if (predicted[i] === labels[i]) right++
  return labels.length === 0 ? 0 : right / labels.length
}

export interface CleaningScores {
  readonly precision: number
  readonly recall: number
  readonly f1: number
  /** Fraction of examples kept. */
  readonly keptFraction: number
}

const ratio = (a: number, b: number) => (b === 0 ? 0 : a / b)

/** The logistic function on the host. */
export const sigmoid = (v: number): number => 1 / (1 + Math.exp(-v))

/**
 * Cleaning scores of example weights `x` (σ(x_i) is the weight; kept when σ(x_i) ≥ `threshold`)
 * against `clean` (whether each label is right).
 */
export const cleaningScores = (
  x: ArrayLike<number>,
  clean: ArrayLike<boolean>,
  threshold = 0.5
): CleaningScores => {
  if (x.length !== clean.length) {
    throw new RangeError(`cleaningScores: ${x.length} weights for ${clean.length} examples`)
  }
  let kept = 0
  let cleanCount = 0
  let keptClean = 0
  for (let i = 0; i < x.length; i++) {
    const keep = sigmoid(x[i]!) >= threshold
    if (keep) kept++
    if (clean[i]) cleanCount++
    if (keep && clean[i]) keptClean++
  }
  const precision = ratio(keptClean, kept)
  const recall = ratio(keptClean, cleanCount)
  return { precision, recall, f1: ratio(2 * precision * recall, precision + recall), keptFraction: ratio(kept, x.length) }
}
