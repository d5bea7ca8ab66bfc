/**
 * The exact hypergradient of L2-regularized logistic-regression HPO, in float64 plain JS: the ground
 * truth stochastic hypergradients are measured against.
 *
 *     f(λ, w) = (1/n) Σ_i softplus(−b_i a_iᵀw) + ½ Σ_j e^{λ_j} w_j²     (λ scalar: every λ_j = λ)
 *     F(w)    = (1/m) Σ_i softplus(−b'_i a'_iᵀw)                          (validation loss)
 *
 * w*(λ) by Newton's method, each Newton system H d = ∇f solved by conjugate gradient with
 * Hessian-vector products (H = Aᵀ diag(s) A / n + diag(e^λ), s = σ(z)σ(−z), z = b ⊙ Aw), so a
 * training set of 200k rows costs O(n·p) per product and nothing of size p² or n². Then, by the
 * implicit function theorem, H q = ∇_w F(w*) and dF/dλ_j = −e^{λ_j} w*_j q_j (summed over j for a
 * scalar λ). f is e^λ-strongly convex, so both solves are well posed.
 */

/** Rows of a ±1-labelled design matrix, row-major, float64 (the float32 data widened exactly). */
export interface LabelledData {
  readonly features: Float64Array
  readonly labels: Float64Array
  readonly n: number
  readonly p: number
}

/** z_i = b_i a_iᵀw. */
const margins = (data: LabelledData, w: ArrayLike<number>): Float64Array => {
  const z = new Float64Array(data.n)
  for (let i = 0; i < data.n; i++) {
    let s = 0
    const row = i * data.p
    for (let j = 0; j < data.p; j++) s += data.features[row + j]! * w[j]!
    z[i] = data.labels[i]! * s
  }
  return z
}

/** (1/n) Aᵀ (b ⊙ u). */
const pullBack = (data: LabelledData, u: Float64Array): Float64Array => {
  const g = new Float64Array(data.p)
  for (let i = 0; i < data.n; i++) {
    const c = data.labels[i]! * u[i]! / data.n
    if (c === 0) continue
    const row = i * data.p
    for (let j = 0; j < data.p; j++) g[j] += c * data.features[row + j]!
  }
  return g
}

const sigmoid = (z: number) => z >= 0 ? 1 / (1 + Math.exp(-z)) : Math.exp(z) / (1 + Math.exp(z))
const softplus = (z: number) => z > 0 ? z + Math.log1p(Math.exp(-z)) : Math.log1p(Math.exp(z))
const dot = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  let s = 0
  for (let i = 0; i < a.length; i++) s += a[i]! * b[i]!
  return s
}

/** The mean logistic loss (1/n) Σ softplus(−z_i). */
export const logisticLoss = (data: LabelledData, w: ArrayLike<number>): number =>
  margins(data, w).reduce((s, z) => s + softplus(-z), 0) / data.n

/** ∇_w of the mean logistic loss: −(1/n) Aᵀ(b ⊙ σ(−z)). */
const lossGradient = (data: LabelledData, w: ArrayLike<number>): Float64Array =>
  pullBack(data, margins(data, w).map((z) => -sigmoid(-z)))

/** e^λ per feature. */
export const decays = (lambda: ReadonlyArray<number>, p: number): Float64Array =>
  Float64Array.from({ length: p }, (_, j) => Math.exp(lambda.length === 1 ? lambda[0]! : lambda[j]!))

/** f(λ, w) in float64. */
export const lowerObjective = (data: LabelledData, lambda: ReadonlyArray<number>, w: ArrayLike<number>): number => {
  const d = decays(lambda, data.p)
  let penalty = 0
  for (let j = 0; j < data.p; j++) penalty += 0.5 * d[j]! * w[j]! * w[j]!
  return logisticLoss(data, w) + penalty
}

/** Conjugate gradient on the SPD system H x = b to ‖r‖ ≤ tolerance·‖b‖. */
const conjugateGradient = (hvp: (v: Float64Array) => Float64Array, b: Float64Array, tolerance: number): Float64Array => {
  const x = new Float64Array(b.length)
  const r = Float64Array.from(b)
  const d = Float64Array.from(b)
  let rr = dot(r, r)
  const stop = tolerance * tolerance * rr
  for (let it = 0; it < 10 * b.length + 100 && rr > stop; it++) {
    const hd = hvp(d)
    const step = rr / dot(d, hd)
    for (let j = 0; j < x.length; j++) {
      x[j] += step * d[j]!
      r[j] -= step * hd[j]!
    }
    const next = dot(r, r)
    for (let j = 0; j < d.length; j++) d[j] = r[j]! + (next / rr) * d[j]!
    rr = next
  }
  return x
}

/** v ↦ H v at w, H = Aᵀ diag(σ(z)σ(−z)) A / n + diag(e^λ). */
export const hessianAt = (data: LabelledData, d: Float64Array, w: ArrayLike<number>) => {
  const curvature = margins(data, w).map((z) => sigmoid(z) * sigmoid(-z))
  return (v: Float64Array): Float64Array => {
    const av = margins(data, v) // b_i a_iᵀv; b_i² = 1 so the labels cancel below
    const hv = pullBack(data, av.map((u, i) => curvature[i]! * u))
    for (let j = 0; j < hv.length; j++) hv[j] += d[j]! * v[j]!
    return hv
  }
}

/** ∇_w f(λ, w). */
const lowerGradient = (data: LabelledData, d: Float64Array, w: ArrayLike<number>): Float64Array => {
  const g = lossGradient(data, w)
  for (let j = 0; j < g.length; j++) g[j] += d[j]! * w[j]!
  return g
}

/** w*(λ) by Newton–CG from w = 0 until ‖∇_w f‖ ≤ tolerance (float64; quadratic convergence near w*). */
export const lowerSolution = (
  data: LabelledData,
  lambda: ReadonlyArray<number>,
  tolerance = 1e-13
): Float64Array => {
  const d = decays(lambda, data.p)
  const w = new Float64Array(data.p)
  for (let it = 0; it < 100; it++) {
    const g = lowerGradient(data, d, w)
    if (Math.sqrt(dot(g, g)) <= tolerance) return w
    const step = conjugateGradient(hessianAt(data, d, w), g, 1e-14)
    // Damped when a full step does not decrease f (far from w*, where the logistic loss is not yet quadratic).
    let t = 1
    const f0 = lowerObjective(data, lambda, w)
    while (t > 1e-8 && lowerObjective(data, lambda, w.map((wj, j) => wj - t * step[j]!)) > f0) t /= 2
    for (let j = 0; j < w.length; j++) w[j] -= t * step[j]!
  }
  return w
}

/** dF(w*(λ))/dλ in float64, with w*(λ) (shaped like λ: one entry, or one per feature). */
export const exactHypergradient = (
  train: LabelledData,
  validation: LabelledData,
  lambda: ReadonlyArray<number>
): Array<number> => {
  const d = decays(lambda, train.p)
  const w = lowerSolution(train, lambda)
  const q = conjugateGradient(hessianAt(train, d, w), lossGradient(validation, w), 1e-15)
  const perFeature = Array.from({ length: train.p }, (_, j) => -d[j]! * w[j]! * q[j]!)
  return lambda.length === 1 ? [perFeature.reduce((s, g) => s + g, 0)] : perFeature
}

/** F(w*(λ)), the validation loss at the exact LL solution (for central differences). */
export const exactUpper = (train: LabelledData, validation: LabelledData, lambda: ReadonlyArray<number>): number =>
  logisticLoss(validation, lowerSolution(train, lambda))
