/**
 * Few-shot classification (IAPTT-GM paper Eq. 11, SPEC §6): x a feature extractor shared by every
 * task, y^j a linear head per N-way M-shot episode solved in the LL with a non-convex ‖·‖_q penalty,
 * the UL the query cross-entropy averaged over a meta-batch of episodes.
 *
 * Each outer step draws `metaBatch` episodes from the training classes with the run's counter-based
 * randomness (BilevelProblem.episodes), so replay, checkpointed reverse passes and gradcheck see the
 * same images. An episode's features φ = backbone(x; images) are computed once, and pulled back to x
 * once after its reverse pass, by the backbone's hand-written VJP (./fewShot/layers.ts); the LL and
 * its hypergradient live in (φ, y), where second order is needed.
 *
 * Data: `source=fashion-mnist|mnist` (an IDX training file; FashionMNIST defaults to Debian's
 * /usr/share/datasets/fashion-mnist) or `source=folder` with `dataDir` a folder per class, resized to
 * imageSize × imageSize × (1 or 3). Classes are split at random from the seed into disjoint train,
 * validation and test classes.
 *
 * Settings follow Table 5 where it speaks (K = 10, LL step 0.1, meta-batch 4, 32 channels, Adam for x
 * and z) and the official code's regularizer (q = 0.5, ε = 0.1, λ = 0.25). Test-time adaptation is K
 * plain gradient steps on the support set from the method's y_0 (z under auxiliary-init), whatever
 * the method: a PTT or BDA step would read the query labels.
 */
import * as tf from "@tensorflow/tfjs-core"
import { Effect, Schema } from "effect"
import { DatasetError, type InvalidSolver } from "../domain/errors.ts"
import type { Episode as ProblemEpisode, Vector } from "../domain/Problem.ts"
import * as Random from "../domain/Random.ts"
import { Rng, type RandomSource } from "../domain/Rng.ts"
import { between, choice, count, natural, nonNegative, positive } from "../domain/settings.ts"
import { readData, tensorScope, tidy } from "../domain/tensors.ts"
import { gradientDescent } from "../dynamics/Dynamics.ts"
import { adam, addDecayedWeights, chain, partition, scale, scaleByAdam } from "../solvers/optimizers.ts"
import * as Solver from "../solvers/Solver.ts"
import { type Backbone, convNet4, inputProblem, poolings, resNet12 } from "./fewShot/backbones.ts"
import { type ClassImages, type ClassSplits, drawEpisode, type EpisodeShape, imageTensor, splitClasses, type SplitName } from "./fewShot/episodes.ts"
import { episodeProblem, logits, headLayout, type Regularizer } from "./fewShot/head.ts"
import { folderSource, idxSource } from "./fewShot/sources.ts"
import { datasetDir } from "./mnistLike.ts"
import { erase, type TaskInstance } from "./Task.ts"

export const fewShotSettings = Schema.Struct({
  source: choice(["fashion-mnist", "mnist", "folder"], "fashion-mnist", "image source: an IDX dataset's training file, or a folder per class (dataDir)"),
  dataDir: Schema.optionalKey(
    Schema.String.annotate({
      description: "the IDX directory (default for fashion-mnist: /usr/share/datasets/fashion-mnist), or the folder of " +
        "class folders for source=folder (required)"
    })
  ),
  imageSize: count(84, "source=folder: images are resized to imageSize × imageSize"),
  color: choice(["gray", "rgb"], "rgb", "source=folder: images as luminance (1 channel) or RGB (3)"),
  trainClasses: count(5, "classes meta-training episodes are drawn from"),
  validationClasses: natural(0, "classes validation episodes are drawn from (0: no validation accuracy)"),
  testClasses: count(5, "held-out classes test episodes are drawn from (bilevel evaluate)"),
  ways: count(5, "N: classes per episode"),
  shots: count(1, "M: support images per class"),
  queries: count(15, "Q: query images per class"),
  metaBatch: count(4, "episodes per outer step (the paper: 4 for ConvNet-4, 2 for ResNet-12)"),
  backbone: choice(["convnet4", "resnet12"], "convnet4", "feature extractor x"),
  width: count(32, "ConvNet-4: channels of every block; ResNet-12: channels of the first block (then ×2.5, ×5, ×10)"),
  lqWeight: nonNegative(0.25, "λ of the LL penalty λ Σ (y² + ε)^{q/2} on the head"),
  lqExponent: between(0.01, 2, 0.5, "q of the LL penalty (q < 1: non-convex)"),
  lqEpsilon: positive(0.1, "ε of the LL penalty"),
  weightDecay: nonNegative(0, "decoupled weight decay on the convolution filters (none on batch-norm scales and shifts)"),
  outerSteps: count(1000, "outer (UL) steps T (the paper: 80 000)"),
  innerSteps: count(10, "inner (LL) steps K on the head"),
  innerLr: positive(0.1, "LL gradient step α on the head"),
  outerLr: positive(0.001, "UL Adam step for the backbone x"),
  zLr: positive(0.001, "Adam step for the head's initialization z under auxiliary-init"),
  evalEvery: natural(50, "validation accuracy every this many outer steps and at the last (0: never; needs validationClasses ≥ ways)"),
  validationEpisodes: count(100, "episodes of each validation accuracy (the same episodes every time)"),
  testEpisodes: count(600, "test episodes of bilevel evaluate (the field reports ≥ 600)")
})
export type FewShotSettings = typeof fewShotSettings.Type

/** Mean accuracy and the half-width of its normal 95% confidence interval. */
export const meanWithInterval = (values: ReadonlyArray<number>): { readonly mean: number; readonly ci95: number } => {
  const n = values.length
  const mean = values.reduce((a, b) => a + b, 0) / n
  const variance = n > 1 ? values.reduce((a, v) => a + (v - mean) ** 2, 0) / (n - 1) : 0
  return { mean, ci95: 1.96 * Math.sqrt(variance / n) }
}

/** Everything an instance shares: the source, its class splits, the backbone, the episode shape. */
export interface FewShotContext {
  readonly source: ClassImages
  readonly splits: ClassSplits
  readonly backbone: Backbone
  readonly shape: EpisodeShape
  readonly regularizer: Regularizer
}

/** One-hot labels [n, N]. */
const oneHot = (labels: Int32Array, ways: number) => tf.tidy(() => tf.cast(tf.oneHot(tf.tensor1d(labels, "int32"), ways), "float32"))

/** An episode of `split` as a sub-problem in (φ, y), φ = the backbone's features of its support and query images. */
export const sampleEpisode = (context: FewShotContext, split: SplitName, random: RandomSource): ProblemEpisode => {
  const { backbone, regularizer, shape, source, splits } = context
  const drawn = drawEpisode(source, splits[split], shape, random)
  const images = imageTensor(source, Int32Array.from([...drawn.support, ...drawn.query]))
  return {
    problem: episodeProblem({
      features: backbone.features,
      ways: shape.ways,
      supportLabels: oneHot(drawn.supportLabels, shape.ways),
      queryLabels: oneHot(drawn.queryLabels, shape.ways),
      regularizer
    }),
    encode: (x) => {
      const { features, vjp } = backbone.apply(x, images)
      const n = images.shape[0]
      return {
        // Each image's features and a 1, the head's bias input (./fewShot/head.ts).
        value: tf.reshape(tf.concat([features, tf.ones([n, 1])], 1), [-1]),
        vjp: (cotangent) => vjp(tf.slice(tf.reshape(cotangent, [n, backbone.features + 1]), [0, 0], [n, backbone.features]))
      }
    }
  }
}

/**
 * Accuracy on each of `episodes` episodes of `split` (episode i keyed `key`/i): features at x, K
 * gradient steps on the support set from z, query predictions.
 */
export const accuracies = (
  context: FewShotContext,
  adapt: Solver.Bounded,
  x: Vector,
  z: Vector,
  split: SplitName,
  episodes: number,
  key: Random.Key
): Effect.Effect<Array<number>, InvalidSolver> =>
  Effect.forEach(Array.from({ length: episodes }, (_, i) => i), (i) =>
    tensorScope(Effect.gen(function*() {
      const episode = sampleEpisode(context, split, Random.random(Random.foldIn(key, i)))
      const phi = tidy(() => episode.encode!(x).value)
      const { y } = yield* Solver.lowerSolution(adapt, episode.problem, phi, z)
      const { features } = context.backbone
      const support = context.shape.ways * context.shape.shots
      const query = context.shape.ways * context.shape.queries
      const width = features + 1
      const predicted = yield* readData<"int32">(tf.tidy(() =>
        tf.argMax(logits(tf.reshape(tf.slice(phi, support * width, query * width), [query, width]), y, context.shape.ways), 1)
      ))
      const labels = Array.from({ length: query }, (_, q) => Math.floor(q / context.shape.queries))
      return predicted.reduce((right, p, q) => right + (p === labels[q] ? 1 : 0), 0) / query
    })))

/** The settings' backbone on `source`'s images, failing with what to set when they are too small for it. */
const makeBackbone = (settings: FewShotSettings, source: ClassImages): Effect.Effect<Backbone, DatasetError> => {
  const input = source.shape
  const problem = inputProblem(input)
  if (problem !== undefined) {
    const side = 2 ** poolings
    return Effect.fail(new DatasetError({
      file: source.name,
      problem: `${problem} (backbone ${settings.backbone})`,
      hint: settings.source === "folder"
        ? `Set imageSize to at least ${side} (--set imageSize=${side}).`
        : `Use a source whose images are at least ${side}×${side}.`
    }))
  }
  return Effect.succeed(
    settings.backbone === "convnet4"
      ? convNet4(input, settings.width)
      : resNet12(input, [settings.width, Math.round(settings.width * 2.5), settings.width * 5, settings.width * 10])
  )
}

/**
 * The few-shot instance on `source`: its class splits, backbone x_0 and evaluation key are drawn
 * from the run's Rng, in that order. Tests build it on synthetic sources.
 */
export const fewShotInstance = (source: ClassImages, settings: FewShotSettings) =>
  Effect.gen(function*() {
    const rng = yield* Rng
    const shape = { ways: settings.ways, shots: settings.shots, queries: settings.queries }
    const backbone = yield* makeBackbone(settings, source)
    const splits = yield* splitClasses(
      source,
      { train: settings.trainClasses, validation: settings.validationClasses, test: settings.testClasses },
      shape,
      rng
    )
    const context: FewShotContext = {
      source,
      splits,
      backbone,
      shape,
      regularizer: { weight: settings.lqWeight, exponent: settings.lqExponent, epsilon: settings.lqEpsilon }
    }
    // Validation and test episodes are keyed apart from the training draws, and are the same at every evaluation.
    const evaluationKey = Random.key(rng.int(0, 0x7fffffff))
    const x0Values = backbone.init(rng)
    const headSize = headLayout(backbone.features, settings.ways).size
    const initial = yield* Effect.acquireRelease(
      Effect.sync(() => ({ x0: tf.tensor1d(x0Values), y0: tf.zeros([headSize]) })),
      ({ x0, y0 }) => Effect.sync(() => tf.dispose([x0, y0]))
    )
    const adapt = Solver.make(gradientDescent({ lr: settings.innerLr })).pipe(Solver.take(settings.innerSteps))
    const evaluateOn = (split: SplitName, episodes: number, x: Vector, z: Vector) =>
      Effect.map(accuracies(context, adapt, x, z, split, episodes, Random.foldIn(evaluationKey, split)), meanWithInterval)
    const validates = settings.evalEvery > 0 && settings.validationClasses >= settings.ways
    const recordsAt = (t: number) => validates && (t % settings.evalEvery === 0 || t === settings.outerSteps - 1)
    const decayed = chain(scaleByAdam(), addDecayedWeights(settings.weightDecay), scale(-settings.outerLr))
    const plain = adam(settings.outerLr)
    return {
      problem: {
        upper: () => {
          throw new RangeError("fewshot: the problem is a meta-batch of episodes; solve its episodes")
        },
        lower: () => {
          throw new RangeError("fewshot: the problem is a meta-batch of episodes; solve its episodes")
        },
        episodes: (random) => Array.from({ length: settings.metaBatch }, () => sampleEpisode(context, "train", random))
      },
      x0: initial.x0,
      y0: initial.y0,
      optimizers: {
        x: partition(backbone.layout, Object.fromEntries(backbone.normBlocks.map((name) => [name, plain])), decayed),
        z: adam(settings.zLr)
      },
      metrics: (step) =>
        recordsAt(step.before.t)
          ? Effect.map(evaluateOn("validation", settings.validationEpisodes, step.after.x, step.after.z), ({ ci95, mean }) => ({
            valAccuracy: mean,
            valAccuracyCi95: ci95
          }))
          : Effect.succeed({}),
      summarize: (steps) => {
        const recorded = steps.filter((s) => typeof s["valAccuracy"] === "number")
        const last = recorded.at(-1)
        return {
          ...(last === undefined ? {} : { valAccuracy: last["valAccuracy"], valAccuracyCi95: last["valAccuracyCi95"] }),
          lastQueryLoss: steps.at(-1)?.["F"],
          meanMsPerStep: steps.reduce((sum, s) => sum + (s["ms"] as number), 0) / Math.max(steps.length, 1)
        }
      },
      evaluate: (x, z) =>
        Effect.map(evaluateOn("test", settings.testEpisodes, x, z), ({ ci95, mean }) => ({
          testAccuracy: mean,
          testAccuracyCi95: ci95,
          testEpisodes: settings.testEpisodes
        }))
    } satisfies TaskInstance
  })

export const fewShot = erase<FewShotSettings>({
  name: "fewshot",
  description: "Few-shot classification (IAPTT-GM Eq. 11): a ConvNet-4 or ResNet-12 backbone x shared by N-way M-shot " +
    "episodes, a linear head per episode with a non-convex ‖·‖_q penalty in the LL; FashionMNIST or a folder per class",
  settings: fewShotSettings,
  make: (settings) =>
    Effect.gen(function*() {
      const source = settings.source === "folder"
        ? yield* folderSource(
          settings.dataDir ?? (yield* new DatasetError({
            file: "dataDir",
            problem: "is required for source=folder",
            hint: "Set --set dataDir=DIR, DIR holding one subdirectory of images per class."
          })),
          [settings.imageSize, settings.imageSize, settings.color === "gray" ? 1 : 3]
        )
        : yield* idxSource(yield* datasetDir(settings.source, settings.dataDir), settings.source)
      return yield* fewShotInstance(source, settings)
    })
})
