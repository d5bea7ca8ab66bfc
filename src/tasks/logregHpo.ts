/**
 * Hyperparameter optimization of L2-regularized logistic regression (the SID paper's experiment,
 * SPEC §6): x = λ, one scalar or one per feature, and
 *
 *     f(λ, w) = mean_i softplus(−b_i a_iᵀw) + ½ Σ_j e^{λ_j} w_j²     (training loss)
 *     F(λ, w) = mean_i softplus(−b'_i a'_iᵀw)                         (validation loss)
 *
 * built from softplus, exp, matMul and products, whose second order tfjs gets right
 * (docs/second-order.md). With `lowerBatch` = B > 0 the problem is sampled: each draw takes f on B
 * distinct training rows drawn uniformly (an unbiased minibatch gradient, the SID paper's ξ; B = n is
 * the full batch), and F likewise on `upperBatch` validation rows.
 *
 * Data: synthetic rows of any size from `dataSeed` (so the problem stays fixed while the run seed
 * varies the minibatches), or two classes of FashionMNIST/MNIST through the IDX loader. The exact
 * hypergradient (float64 Newton–CG and an adjoint solve, src/tasks/logreg/exact.ts) is the task's
 * ground truth.
 */
import * as tf from "@tensorflow/tfjs-core"
import { Effect, Schema } from "effect"
import { DatasetError } from "../domain/errors.ts"
import type { BilevelProblem, Vector } from "../domain/Problem.ts"
import { make as makeRandom, type RandomSource } from "../domain/Rng.ts"
import { atMost, choice, count, finite, natural, nonNegative, positive, rate } from "../domain/settings.ts"
import { readScalar, readVector, tensorScope } from "../domain/tensors.ts"
import { adam, scaleByPolynomialDecay } from "../solvers/optimizers.ts"
import { classPair, type LogregData, type LogregSplit, pairSize, synthetic, widen } from "./logreg/data.ts"
import { exactHypergradient, exactUpper } from "./logreg/exact.ts"
import { datasetDir, loadMnistLike } from "./mnistLike.ts"
import { erase } from "./Task.ts"

const Settings = Schema.Struct({
  dataset: choice(["synthetic", "fashion-mnist", "mnist"], "synthetic", "synthetic rows with a planted model, or two classes of an MNIST-format dataset"),
  dataDir: Schema.optionalKey(
    Schema.String.annotate({
      description: "directory of the IDX files (default for fashion-mnist: /usr/share/datasets/fashion-mnist; required for mnist)"
    })
  ),
  positiveClass: natural(0, "class labelled +1 (FashionMNIST 0: T-shirt/top)"),
  negativeClass: natural(6, "class labelled −1 (FashionMNIST 6: shirt)"),
  dataSeed: natural(0, "seed of the synthetic data and of the split of the two classes (the run seed draws minibatches)"),
  trainSize: count(1000, "training examples n (the LL's empirical risk)"),
  valSize: count(500, "validation examples (the UL objective)"),
  testSize: count(1000, "test examples (test loss and accuracy metrics)"),
  features: count(20, "synthetic features p"),
  labelNoise: rate(0.1, "synthetic: probability that a label is flipped"),
  signal: positive(3, "synthetic: scale of the planted weights (larger: more separable)"),
  regularization: choice(["scalar", "per-feature"], "scalar", "one λ for all of w, or one λ_j per feature"),
  lambda0: finite(-2, "initial λ (every λ_j), the log of the L2 weight e^λ"),
  lowerBatch: natural(0, "LL minibatch size B: each draw of f takes B distinct training rows (0: the full batch; at most trainSize)"),
  upperBatch: natural(0, "UL minibatch size: each draw of F takes this many distinct validation rows (0: all; at most valSize)"),
  outerSteps: count(100, "outer (UL) steps tuning λ"),
  innerSteps: count(200, "LL steps t"),
  innerLr: positive(4, "LL step α of the map Φ(w) = w − α∇_w f: contractive while α(e^λ + L_loss) < 2 (synthetic: L_loss ≈ 0.02, so λ < −0.7 at α = 4)"),
  outerLr: positive(0.05, "UL step for λ: Adam's, or SGD's α of α/(t+1)^p"),
  outerOptimizer: choice(["adam", "sgd"], "adam", "UL optimizer for λ: Adam, or SGD with the step outerLr/(t+1)^outerDecay"),
  outerDecay: nonNegative(0, "outerOptimizer=sgd: p of the UL step outerLr/(t+1)^p (SOBA's analysis: ½; 0: constant)"),
  metricsEvery: count(10, "record validation and test loss and accuracy every this many outer steps (and at the last)")
}).check(atMost([["lowerBatch", "trainSize"], ["upperBatch", "valSize"]]))
export type LogregSettings = typeof Settings.Type

/** A split's tensors: features [n, p] and labels [n, 1]. */
export interface SplitTensors {
  readonly features: tf.Tensor2D
  readonly labels: tf.Tensor2D
}

const toTensors = (split: LogregSplit): SplitTensors => ({
  features: tf.tensor2d(split.features, [split.n, split.p]),
  labels: tf.tensor2d(split.labels, [split.n, 1])
})

/** mean_i softplus(−b_i a_iᵀw). */
export const logisticLoss = (split: SplitTensors, w: Vector): tf.Scalar =>
  tf.mean(tf.softplus(tf.neg(tf.mul(split.labels, tf.matMul(split.features, tf.reshape(w, [-1, 1]))))))

/** ½ Σ_j e^{λ_j} w_j² (λ of length 1 broadcasts). */
const penalty = (lambda: Vector, w: Vector): tf.Scalar => tf.mul(0.5, tf.sum(tf.mul(tf.exp(lambda), tf.square(w))))

const problemOn = (train: SplitTensors, validation: SplitTensors): BilevelProblem => ({
  lower: (x, y) => tf.add(logisticLoss(train, y), penalty(x, y)),
  upper: (_x, y) => logisticLoss(validation, y)
})

/**
 * `size` distinct rows of 0 … n−1, uniformly (Floyd's algorithm: O(size) draws, not the O(n) of a
 * permutation, which would dominate an LL step of a large training set), in increasing order.
 */
export const distinctRows = (random: RandomSource, n: number, size: number): Int32Array => {
  const chosen = new Set<number>()
  for (let j = n - size; j < n; j++) {
    const t = random.int(0, j)
    chosen.add(chosen.has(t) ? j : t)
  }
  return Int32Array.from(chosen).sort()
}

/** `size` rows of a split drawn without replacement (all of it when size is 0). */
const rowsOf = (split: SplitTensors, random: RandomSource, size: number): SplitTensors => {
  if (size === 0) return split
  const rows = tf.tensor1d(distinctRows(random, split.features.shape[0], size), "int32")
  return { features: tf.gather(split.features, rows), labels: tf.gather(split.labels, rows) }
}

/** The problem on the full splits, or sampled: f on `lowerBatch` training rows, F on `upperBatch` validation rows. */
export const logregProblem = (
  train: SplitTensors,
  validation: SplitTensors,
  batches: { readonly lowerBatch: number; readonly upperBatch: number }
): BilevelProblem => {
  const full = problemOn(train, validation)
  return batches.lowerBatch === 0 && batches.upperBatch === 0 ? full : {
    ...full,
    sample: (random) => problemOn(rowsOf(train, random, batches.lowerBatch), rowsOf(validation, random, batches.upperBatch))
  }
}

/** Loads the task's data: synthetic from `dataSeed`, or the class pair of the dataset's training file. */
export const logregData = (settings: LogregSettings) =>
  Effect.gen(function*() {
    const rng = makeRandom(settings.dataSeed)
    if (settings.dataset === "synthetic") {
      return synthetic(rng, { ...settings, noise: settings.labelNoise, scale: settings.signal })
    }
    const dir = yield* datasetDir(settings.dataset, settings.dataDir)
    if (settings.positiveClass === settings.negativeClass) {
      return yield* new DatasetError({
        file: `${dir} (train split)`,
        problem: `positiveClass and negativeClass are both ${settings.positiveClass}, so every label would be +1`,
        hint: "Pick two different classes, e.g. --set positiveClass=0 --set negativeClass=6 (T-shirt vs shirt)."
      })
    }
    const source = yield* loadMnistLike({ dataDir: dir, split: "train", dataset: settings.dataset })
    const available = pairSize(source, settings.positiveClass, settings.negativeClass)
    const wanted = settings.trainSize + settings.valSize + settings.testSize
    if (wanted > available) {
      return yield* new DatasetError({
        file: `${dir} (train split)`,
        problem: `holds ${available} examples of classes ${settings.positiveClass} and ${settings.negativeClass}, ` +
          `fewer than trainSize + valSize + testSize = ${wanted}`,
        hint: "Lower trainSize, valSize or testSize (the three splits are disjoint draws from the two classes)."
      })
    }
    return classPair(source, rng, { ...settings, positive: settings.positiveClass, negative: settings.negativeClass })
  })

/** Accuracy of sign(a_iᵀw) against b_i. */
const accuracyOf = (split: SplitTensors, w: Vector): tf.Scalar =>
  tf.mean(tf.cast(tf.greater(tf.mul(split.labels, tf.matMul(split.features, tf.reshape(w, [-1, 1]))), 0), "float32"))

export const logregHpo = erase<LogregSettings>({
  name: "logreg-hpo",
  description: "L2-regularized logistic regression, λ (scalar or per feature) tuned on the validation loss " +
    "(SID, AISTATS 2021); synthetic or two FashionMNIST classes, float64 exact hypergradient",
  settings: Settings,
  make: (settings) =>
    Effect.gen(function*() {
      const data: LogregData = yield* logregData(settings)
      const p = data.train.p
      const dimX = settings.regularization === "scalar" ? 1 : p
      const tensors = yield* Effect.acquireRelease(
        Effect.sync(() => ({
          train: toTensors(data.train),
          validation: toTensors(data.validation),
          test: toTensors(data.test),
          x0: tf.fill([dimX], settings.lambda0),
          y0: tf.zeros([p])
        })),
        (t) => Effect.sync(() => tf.dispose([t.train, t.validation, t.test].flatMap((s): Array<tf.Tensor> => [s.features, s.labels]).concat([t.x0, t.y0])))
      )
      const problem = logregProblem(tensors.train, tensors.validation, settings)
      const [train64, validation64] = [widen(data.train), widen(data.validation)]
      const recordsAt = (step: number) => step % settings.metricsEvery === 0 || step === settings.outerSteps - 1
      return {
        problem,
        x0: tensors.x0,
        y0: tensors.y0,
        optimizers: {
          x: settings.outerOptimizer === "adam" ? adam(settings.outerLr) : scaleByPolynomialDecay(settings.outerLr, settings.outerDecay),
          z: adam(settings.outerLr)
        },
        exactHypergradient: (x) => exactHypergradient(train64, validation64, x),
        metrics: (step, train) =>
          recordsAt(step.before.t)
            ? tensorScope(Effect.gen(function*() {
              const { x, z } = step.after
              const w = yield* train(x, z)
              const lambda = yield* readVector(x)
              return {
                lambda: lambda.reduce((s, l) => s + l, 0) / lambda.length,
                // The UL objective F(λ, w*(λ)) itself, free of the method's own LL error: what methods are compared on.
                exactF: exactUpper(train64, validation64, lambda),
                valLoss: yield* readScalar(tf.tidy(() => logisticLoss(tensors.validation, w))),
                valAccuracy: yield* readScalar(tf.tidy(() => accuracyOf(tensors.validation, w))),
                testLoss: yield* readScalar(tf.tidy(() => logisticLoss(tensors.test, w))),
                testAccuracy: yield* readScalar(tf.tidy(() => accuracyOf(tensors.test, w)))
              }
            }))
            : Effect.succeed({}),
        summarize: (steps) => {
          const last = steps.filter((s) => typeof s["testAccuracy"] === "number").at(-1) ?? {}
          return Object.fromEntries(
            ["t", "lambda", "exactF", "valLoss", "valAccuracy", "testLoss", "testAccuracy"].filter((k) => last[k] !== undefined).map((k) => [k, last[k]])
          )
        }
      }
    })
})
