/**
 * Data hyper-cleaning (IAPTT-GM paper Eq. 12): a fraction of the training labels is
 * corrupted, and x ∈ R^{trainSize} learns a weight σ(x_i) per training example so that the net
 * trained on the weighted loss does well on clean validation data.
 *
 *     F(x, y) = mean CE(net_y(a_j), b_j) over validation,   f(x, y) = mean_i σ(x_i)·CE(net_y(a_i), b_i)
 *
 * Data: `--set dataset=fashion-mnist|mnist`, `--set dataDir=DIR` (FashionMNIST defaults to Debian's
 * /usr/share/datasets/fashion-mnist). The train / validation / test splits are all drawn from the
 * dataset's training file with the run's Rng; tests point `dataDir` at tiny IDX files they write.
 *
 * Defaults follow Table 6 and the official code where the paper is silent: K = 50, LL SGD step 0.03,
 * Adam 0.01 for x, z stepped by SGD at the LL step (the code), 1000 outer steps (Table 6's 3000 is a
 * setting), corrupted labels drawn from the *other* classes (the paper; `corruption=any` is the code's),
 * LL weights initialized as PyTorch's nn.Linear (U(±1/√fan_in), drawn from the Rng) as in the code.
 *
 * Metrics, every `metricsEvery` outer steps and at the last, describe the state after the step's
 * update, (x_{t+1}, z_{t+1}), as the official code logs it: test accuracy of the net after K LL
 * gradient steps from the current initialization (`testAccuracy`), at z itself under auxiliary-init
 * (`testAccuracyZ`, the official code's number), the validation loss after those K steps, and the
 * cleaning precision, recall and F1 of σ(x) ≥ threshold (src/tasks/metrics.ts).
 */
import * as tf from "@tensorflow/tfjs-core"
import { Effect, Schema } from "effect"
import { DatasetError } from "../domain/errors.ts"
import type { BilevelProblem, Vector } from "../domain/Problem.ts"
import { type RandomSource, Rng } from "../domain/Rng.ts"
import { atMost, choice, count, natural, positive, rate } from "../domain/settings.ts"
import { readScalar, readVector, tensorScope } from "../domain/tensors.ts"
import { gradientDescent } from "../dynamics/Dynamics.ts"
import { adam, type GradientTransformation, nesterovSgd, sgd } from "../solvers/optimizers.ts"
import * as Solver from "../solvers/Solver.ts"
import * as Classifier from "./hyperCleaning/classifier.ts"
import { type CleaningData, drawCleaningData } from "./hyperCleaning/split.ts"
import { accuracy, cleaningScores } from "./metrics.ts"
import { datasetDir, loadMnistLike } from "./mnistLike.ts"
import { erase, type TaskInstance } from "./Task.ts"

export const classes = 10

const Settings = Schema.Struct({
  dataset: choice(["fashion-mnist", "mnist"], "fashion-mnist", "MNIST-format dataset the splits are drawn from"),
  dataDir: Schema.optionalKey(
    Schema.String.annotate({
      description: "directory of the IDX files {train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz] " +
        "(default for fashion-mnist: /usr/share/datasets/fashion-mnist; required for mnist)"
    })
  ),
  trainSize: count(5000, "training examples (each gets a weight x_i)"),
  valSize: count(5000, "validation examples (UL objective)"),
  testSize: count(10000, "test examples (accuracy metric)"),
  corruptionRate: rate(0.5, "fraction of training labels corrupted"),
  corruption: choice(
    ["different", "any"],
    "different",
    "corrupted label: a uniformly random other class (paper), or any class (official code: ≈ 10% stay right)"
  ),
  net: choice(["linear", "mlp"], "linear", "LL net: linear 784→10 (convex) or mlp 784→hidden→10 without activation"),
  hidden: count(300, "hidden width of the mlp net"),
  init: choice(["uniform", "zeros"], "uniform", "LL weights y_0: PyTorch's nn.Linear U(±1/√fan_in) from the seed, or zeros"),
  outerSteps: count(1000, "outer (UL) steps T (the paper's Table 6: 3000)"),
  innerSteps: count(50, "inner (LL) steps K"),
  innerLr: positive(0.03, "LL SGD step α"),
  outerLr: positive(0.01, "UL Adam step for x"),
  zOptimizer: choice(
    ["sgd", "nesterov", "adam"],
    "sgd",
    "optimizer of z under auxiliary-init: sgd (official code), nesterov (the code's --nestrov), adam (the paper's Table 6)"
  ),
  zLr: Schema.optionalKey(
    Schema.Finite.check(Schema.isGreaterThan(0)).annotate({
      description: "step of z (default: innerLr for sgd and nesterov, as the official code; outerLr for adam)"
    })
  ),
  zMomentum: rate(0.9, "momentum of zOptimizer=nesterov"),
  threshold: rate(0.5, "an example is kept when σ(x_i) ≥ threshold (cleaning precision / recall / F1)"),
  lowerBatch: natural(0, "LL minibatch size: each LL step's f on this many training examples drawn afresh (0: all of them; at most trainSize)"),
  upperBatch: natural(0, "UL minibatch size: each outer step's F on this many validation examples drawn afresh (0: all of them; at most valSize)"),
  metricsEvery: count(10, "record test accuracy and cleaning F1 every this many outer steps (and at the last)"),
  convergedEvery: natural(
    0,
    "also train the LL to convergence at the current x (GD from the method's own y_0 until ‖∇_y f‖ ≤ convergedTolerance) " +
      "and record that net's test accuracy (convergedTestAccuracy; from the fixed y_0 too, convergedFromY0TestAccuracy, where the method's y_0 has moved), " +
      "every this many outer steps and at the last; 0: never"
  ),
  convergedTolerance: positive(1e-3, "‖∇_y f‖ at which the converged-training metric stops"),
  convergedMaxSteps: count(2000, "LL steps at most of the converged-training metric (convergedSteps says how many it took)")
}).check(atMost([["lowerBatch", "trainSize"], ["upperBatch", "valSize"]]))
export type HyperCleaningSettings = typeof Settings.Type

/** The optimizer that steps z under auxiliary-init. */
export const zOptimizer = (s: HyperCleaningSettings): GradientTransformation => {
  switch (s.zOptimizer) {
    case "sgd":
      return sgd(s.zLr ?? s.innerLr)
    case "nesterov":
      return nesterovSgd(s.zLr ?? s.innerLr, s.zMomentum)
    case "adam":
      return adam(s.zLr ?? s.outerLr)
  }
}

const oneHot = (labels: Int32Array) => tf.cast(tf.oneHot(tf.tensor1d(labels, "int32"), classes), "float32")

/** The tensors of one instance: data matrices (with transposed copies) and one-hot labels. */
interface Tensors {
  readonly train: Classifier.DataMatrix
  readonly validation: Classifier.DataMatrix
  readonly test: Classifier.DataMatrix
  readonly trainLabels: tf.Tensor
  readonly validationLabels: tf.Tensor
  readonly x0: Vector
  readonly y0: Vector
}

const allocate = (data: CleaningData, y0: Float32Array): Tensors => ({
  train: Classifier.dataMatrix(data.train.features, data.train.n, data.inputs),
  validation: Classifier.dataMatrix(data.validation.features, data.validation.n, data.inputs),
  test: Classifier.dataMatrix(data.test.features, data.test.n, data.inputs),
  trainLabels: tf.tidy(() => oneHot(data.train.labels)),
  validationLabels: tf.tidy(() => oneHot(data.validation.labels)),
  x0: tf.zeros([data.train.n]),
  y0: tf.tensor1d(y0)
})

const release = (t: Tensors) =>
  tf.dispose([...t.train.tensors, ...t.validation.tensors, ...t.test.tensors, t.trainLabels, t.validationLabels, t.x0, t.y0])

/** Training or validation examples with their one-hot labels. */
interface Split {
  readonly data: Classifier.DataMatrix
  readonly labels: tf.Tensor
}

/**
 * The bilevel problem on training rows `train` (their weights x_i picked by `weights`, with `spread`
 * mapping a cotangent of those weights back onto x) and validation rows `validation`, with ∇_y f,
 * ∇_y F and their Hessian-vector products in closed form; a gradient step keeps its class
 * probabilities and Aᵀ G for the reverse pass's product at the same point.
 */
const problemOn = (
  net: Classifier.Classifier,
  train: Split,
  validation: Split,
  weights: (x: Vector) => Vector = (x) => x,
  spread: (cotangent: Vector) => Vector = (c) => c
): BilevelProblem => ({
  upper: (_x, y) => tf.mean(Classifier.crossEntropies(net, validation.data, validation.labels, y)),
  lower: (x, y) => Classifier.weightedLoss(net, train.data, train.labels, weights(x), y),
  lowerGradient: (x, y) => Classifier.weightedLossGradient(net, train.data, train.labels, weights(x), y),
  lowerLinearization: (x, y) => Classifier.weightedLossLinearization(net, train.data, train.labels, weights(x), y),
  lowerHessianVectorProduct: (x, y, v, residuals) => {
    const product = Classifier.weightedLossHessianVectorProduct(net, train.data, train.labels, weights(x), y, v, residuals)
    return { x: spread(product.x), y: product.y }
  },
  upperGradient: (_x, y) => Classifier.meanLossGradient(net, validation.data, validation.labels, y),
  upperLinearization: (_x, y) => Classifier.meanLossLinearization(net, validation.data, validation.labels, y),
  // F does not depend on x: ∇²_xy F = 0.
  upperHessianVectorProduct: (x, y, v, residuals) => ({
    x: tf.zerosLike(x),
    y: Classifier.meanLossHessianVectorProduct(net, validation.data, validation.labels, y, v, residuals)
  })
})

/** `size` of `n` rows drawn without replacement, or all of them when size is 0. */
const rowsOf = (random: RandomSource, n: number, size: number): tf.Tensor1D | undefined =>
  size === 0 ? undefined : tf.tensor1d(random.permutation(n).subarray(0, size), "int32")

/** The rows `rows` of a split (all of it when undefined). */
const subset = (split: Split, rows: tf.Tensor1D | undefined): Split =>
  rows === undefined ? split : {
    data: split.data.select(rows),
    labels: tf.gather(split.labels, rows)
  }

/**
 * The hyper-cleaning problem: full batch, or with `lowerBatch` / `upperBatch` a sampler whose draw
 * takes f on that many training rows (mean of σ(x_i)·CE_i over them, their gradient in x scattered
 * back onto all of x) and F on that many validation rows.
 */
export const cleaningProblem = (
  net: Classifier.Classifier,
  t: Tensors,
  batches: { readonly lowerBatch: number; readonly upperBatch: number } = { lowerBatch: 0, upperBatch: 0 }
): BilevelProblem => {
  const train = { data: t.train, labels: t.trainLabels }
  const validation = { data: t.validation, labels: t.validationLabels }
  const full = problemOn(net, train, validation)
  if (batches.lowerBatch === 0 && batches.upperBatch === 0) return full
  return {
    ...full,
    sample: (random) => {
      const lower = rowsOf(random, t.train.rows, batches.lowerBatch)
      const upper = rowsOf(random, t.validation.rows, batches.upperBatch)
      return lower === undefined
        ? problemOn(net, train, subset(validation, upper))
        : problemOn(
          net,
          subset(train, lower),
          subset(validation, upper),
          (x) => tf.gather(x, lower),
          (c) => tf.scatterND(tf.expandDims(lower, 1), c, [t.train.rows])
        )
    }
  }
}

export const hyperCleaning = erase<HyperCleaningSettings>({
  name: "hyper-cleaning",
  description: "Data hyper-cleaning (IAPTT-GM Eq. 12): learn a weight σ(x_i) per corrupted training example; " +
    "linear or MLP net on (Fashion)MNIST",
  settings: Settings,
  size: (s) => {
    const pixels = 28 * 28
    const width = s.net === "mlp" ? s.hidden : 0
    return {
      y: s.net === "mlp" ? (pixels + 1) * s.hidden + (s.hidden + 1) * classes : (pixels + 1) * classes,
      // Per training example of an LL step: the class probabilities, and the hidden activations of the mlp.
      residuals: (s.lowerBatch > 0 ? s.lowerBatch : s.trainSize) * (classes + width),
      // The training file (60 000 bytes-per-pixel images) and the three splits in float32.
      dataBytes: 60_000 * pixels + 4 * pixels * (s.trainSize + s.valSize + s.testSize)
    }
  },
  make: (settings) =>
    Effect.gen(function*() {
      const rng = yield* Rng
      const dir = yield* datasetDir(settings.dataset, settings.dataDir)
      const source = yield* loadMnistLike({ dataDir: dir, split: "train", dataset: settings.dataset })
      const wanted = settings.trainSize + settings.valSize + settings.testSize
      if (wanted > source.n) {
        return yield* new DatasetError({
          file: `${dir} (train split)`,
          problem: `holds ${source.n} examples, fewer than trainSize + valSize + testSize = ${wanted}`,
          hint: "Lower trainSize, valSize or testSize (the three splits are disjoint draws from the training file)."
        })
      }
      const data = drawCleaningData(source, rng, { ...settings, classes })
      const net = settings.net === "linear"
        ? Classifier.linear(data.inputs, classes)
        : Classifier.mlp(data.inputs, settings.hidden, classes)
      const weights = settings.init === "zeros" ? new Float32Array(net.size) : net.initialWeights(rng)
      const t = yield* Effect.acquireRelease(Effect.sync(() => allocate(data, weights)), (t) => Effect.sync(() => release(t)))
      const problem = cleaningProblem(net, t, settings)
      const testAccuracy = (y: Vector) => Effect.map(Classifier.predict(net, t.test, y), (p) => accuracy(p, data.test.labels))
      const recordsAt = (step: number) => step % settings.metricsEvery === 0 || step === settings.outerSteps - 1
      const convergesAt = (step: number) =>
        settings.convergedEvery > 0 && (step % settings.convergedEvery === 0 || step === settings.outerSteps - 1)
      // A measure that does not depend on the protocol's K: the net trained until its LL gradient vanishes
      // (‖R_α‖ = α‖∇_y f‖ for GD with step α), capped at convergedMaxSteps.
      const converging = Solver.make(gradientDescent({ lr: settings.innerLr })).pipe(
        Solver.stopAtResidual({ tolerance: settings.convergedTolerance * settings.innerLr, alpha: settings.innerLr }),
        Solver.take(settings.convergedMaxSteps)
      )
      const converged = (x: Vector, from: Vector) =>
        Effect.gen(function*() {
          const { k, y } = yield* Solver.lowerSolution(converging, problem, x, from)
          return {
            convergedTestAccuracy: yield* testAccuracy(y),
            convergedValLoss: yield* readScalar(tf.tidy(() => problem.upper(x, y))),
            convergedSteps: k
          }
        })
      /** Whether z has left the fixed y_0: a learned initialization (auxiliary-init), or warm start's carried iterate. */
      const movedFromY0 = (z: Vector) => Effect.map(readScalar(tf.tidy(() => tf.cast(tf.any(tf.notEqual(z, t.y0)), "float32"))), (v) => v === 1)
      /**
       * The converged measure from the method's own y_0 (z), and from the fixed y_0: x's worth alone,
       * comparable across protocols. They differ where z has moved: from warm start's carried iterate,
       * training continues a net already trained across outer steps rather than judging x.
       */
      const convergedMeasures = (x: Vector, z: Vector, moved: boolean) =>
        Effect.gen(function*() {
          const own = yield* converged(x, z)
          const fromY0 = moved ? yield* converged(x, t.y0) : own
          return { ...own, convergedFromY0TestAccuracy: fromY0.convergedTestAccuracy, convergedFromY0Steps: fromY0.convergedSteps }
        })

      const metrics: TaskInstance["metrics"] = (step, train) =>
        recordsAt(step.before.t) || convergesAt(step.before.t)
          ? tensorScope(Effect.gen(function*() {
            const { x, z } = step.after
            const trained = yield* train(x, z)
            const moved = yield* movedFromY0(z)
            return {
              testAccuracy: yield* testAccuracy(trained),
              ...(moved ? { testAccuracyZ: yield* testAccuracy(z) } : {}),
              valLoss: yield* readScalar(tf.tidy(() => problem.upper(x, trained))),
              ...cleaningScores(yield* readVector(x), data.clean, settings.threshold),
              ...(convergesAt(step.before.t) ? yield* convergedMeasures(x, z, moved) : {})
            }
          }))
          : Effect.succeed({})

      // Apart from training (`bilevel evaluate`): the converged-training measure at a checkpoint, for runs
      // recorded without it (convergedEvery = 0, or before it existed), from the run's own y_0 (z).
      const evaluate: NonNullable<TaskInstance["evaluate"]> = (x, z) =>
        tensorScope(Effect.gen(function*() {
          return {
            testAccuracyZ: yield* testAccuracy(z),
            ...cleaningScores(yield* readVector(x), data.clean, settings.threshold),
            ...(yield* convergedMeasures(x, z, yield* movedFromY0(z)))
          }
        }))

      const summarize = (steps: ReadonlyArray<Record<string, unknown>>) => {
        const recorded = steps.filter((s) => typeof s["testAccuracy"] === "number")
        const last = recorded.at(-1) ?? {}
        const best = (key: string) => {
          const values = recorded.map((s) => s[key]).filter((v): v is number => typeof v === "number")
          return values.length === 0 ? undefined : Math.max(...values)
        }
        const pick = (keys: ReadonlyArray<string>) =>
          Object.fromEntries(keys.filter((k) => last[k] !== undefined).map((k) => [k, last[k]]))
        return {
          ...pick(["t", "testAccuracy", "testAccuracyZ", "f1", "precision", "recall", "keptFraction", "valLoss", "convergedTestAccuracy", "convergedSteps",
            "convergedFromY0TestAccuracy", "convergedFromY0Steps"]),
          bestTestAccuracy: best("testAccuracy"),
          ...(best("testAccuracyZ") === undefined ? {} : { bestTestAccuracyZ: best("testAccuracyZ") }),
          bestF1: best("f1"),
          corruptedLabels: data.clean.filter((c) => !c).length,
          meanMsPerStep: steps.reduce((sum, s) => sum + (s["ms"] as number), 0) / Math.max(steps.length, 1)
        }
      }

      return {
        problem,
        x0: t.x0,
        y0: t.y0,
        optimizers: { x: adam(settings.outerLr), z: zOptimizer(settings) },
        metrics,
        evaluate,
        summarize
      }
    })
})
