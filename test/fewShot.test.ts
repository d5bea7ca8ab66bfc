/**
 * Few-shot classification (issue 19): backbones' hand-written VJPs against tfjs autodiff of the same
 * nets written with stock ops; the ‖·‖_q penalty against hand-computed values; episodes drawn per key,
 * regenerated identically, of the asked shape, from disjoint class splits; folder sources decoding PNG
 * and JPEG and naming a corrupt file; the meta-batch hypergradient of a tiny ConvNet against central
 * differences with the episodes held; a few meta-training steps lowering the query loss.
 */
import { NodeServices } from "@effect/platform-node"
import { assert, describe, it } from "@effect/vitest"
import * as tf from "@tensorflow/tfjs-core"
import { Effect, Exit, Schema, Stream } from "effect"
import jpeg from "jpeg-js"
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs"
import * as path from "node:path"
import { PNG } from "pngjs"
import * as Blocks from "../src/domain/Blocks.ts"
import * as Random from "../src/domain/Random.ts"
import { make, Rng } from "../src/domain/Rng.ts"
import * as Backend from "../src/runtime/Backend.ts"
import { evaluate } from "../src/runtime/evaluate.ts"
import { decodeSettings } from "../src/runtime/reproduce/Experiment.ts"
import { fewShotExperiment } from "../src/runtime/reproduce/fewShot.ts"
import { installSecondOrderGradients } from "../src/runtime/gradients.ts"
import { run } from "../src/runtime/run.ts"
import { checkSolver } from "../src/runtime/gradcheck.ts"
import { valueAt } from "../src/solvers/metaBatch.ts"
import { bdaMethod, iaGm, iapttGm, rhg, tRhg } from "../src/solvers/methods.ts"
import { initialState, outerSteps } from "../src/solvers/outerLoop.ts"
import { fewShot, fewShotInstance, fewShotSettings, meanWithInterval } from "../src/tasks/fewShot.ts"
import { type Backbone, convNet4, resNet12 } from "../src/tasks/fewShot/backbones.ts"
import { drawEpisode, splitClasses } from "../src/tasks/fewShot/episodes.ts"
import { episodeProblem, penalty, penaltyHessianVectorProduct } from "../src/tasks/fewShot/head.ts"
import { folderSource } from "../src/tasks/fewShot/sources.ts"
import { syntheticSource } from "./support/fewShotSource.ts"
import { backendNames, relativeError, useBackend, vectorValue } from "./support/tf.ts"
import { scratchDir } from "./support/scratch.ts"

const scratch = scratchDir("fewshot")

/** The backbone written with stock tfjs ops (conv2d, maxPool, batch norm from mean/rsqrt), for autodiff on cpu. */
const stockFeatures = (backbone: Backbone, x: tf.Tensor, images: tf.Tensor4D): tf.Tensor => {
  const p = Blocks.unflatten(backbone.layout, x)
  const convNorm = (h: tf.Tensor4D, name: string, activate: boolean): tf.Tensor4D => {
    const c = tf.conv2d(h, p[name] as tf.Tensor4D, 1, "same")
    const centered = tf.sub(c, tf.mean(c, [0, 1, 2]))
    const normalized = tf.mul(centered, tf.rsqrt(tf.add(tf.mean(tf.square(centered), [0, 1, 2]), 1e-5)))
    const out = tf.add(tf.mul(normalized, p[`${name}Scale`]!), p[`${name}Shift`]!) as tf.Tensor4D
    return activate ? tf.relu(out) : out
  }
  let h = images
  for (let b = 1; b <= 4; b++) {
    h = backbone.name === "convnet4"
      ? convNorm(h, `conv${b}`, true)
      : tf.relu(tf.add(
        convNorm(convNorm(convNorm(h, `block${b}a`, true), `block${b}b`, true), `block${b}c`, false),
        convNorm(h, `block${b}shortcut`, false)
      )) as tf.Tensor4D
    h = tf.maxPool(h, 2, 2, "valid")
  }
  return tf.reshape(h, [images.shape[0], -1])
}

// Both filter-gradient routes (im2col for ≤ 4 input channels, a convolution above), at 3×3 and 1×1 (ResNet's last shortcut).
const nets: ReadonlyArray<Backbone> = [convNet4([16, 16, 2], 6), resNet12([17, 16, 1], [2, 3, 5, 6])]

/** Features and the VJP of a fixed cotangent, by autodiff of the stock-op net on cpu. */
const reference = async (backbone: Backbone, x: Float32Array, images: Float32Array, shape: [number, number, number, number], cotangent: Float32Array) => {
  await useBackend("cpu")
  return tf.tidy(() => {
    const xs = tf.tensor1d(x)
    const input = tf.tensor4d(images, shape)
    const features = vectorValue(stockFeatures(backbone, xs, input))
    const gradient = vectorValue(tf.grad((v: tf.Tensor) => tf.sum(tf.mul(stockFeatures(backbone, v, input), tf.tensor2d(cotangent, [shape[0], backbone.features]))))(xs))
    return { features, gradient }
  })
}

describe.each(backendNames)("backbones on %s", (name) => {
  for (const backbone of nets) {
    it(`${backbone.name}: features and hand-written VJP equal autodiff of the stock-op net`, async () => {
      const random = make(3)
      const n = 5
      const shape: [number, number, number, number] = [n, ...backbone.input]
      const x = backbone.init(random)
      // Shifts away from 0 so that some batch-norm outputs are negative before a ReLU, and some windows all zeros.
      const images = random.array(shape.reduce((a, b) => a * b, 1), () => random.uniform() - 0.3)
      const cotangent = random.array(n * backbone.features, random.normal)
      const expected = await reference(backbone, x, images, shape, cotangent)
      await useBackend(name)
      const before = tf.memory().numTensors
      const [features, gradient] = tf.tidy(() => {
        const pass = backbone.apply(tf.tensor1d(x), tf.tensor4d(images, shape))
        return [vectorValue(pass.features), vectorValue(pass.vjp(tf.tensor2d(cotangent, [n, backbone.features])))]
      })
      assert.strictEqual(tf.memory().numTensors, before)
      assert.isBelow(relativeError(features, expected.features), 1e-5)
      assert.isBelow(relativeError(gradient!, expected.gradient), 1e-4)
    })
  }
})

describe("the head's ‖·‖_q penalty", () => {
  it("λ Σ (y² + ε)^{q/2} and its gradient λ q y (y² + ε)^{q/2 − 1} equal hand-computed values", async () => {
    await useBackend("cpu")
    installSecondOrderGradients()
    const regularizer = { weight: 0.25, exponent: 0.5, epsilon: 0.1 }
    const y = tf.tensor1d([0, 1, -2, 0.3])
    // 0.25 · (0.1^¼ + 1.1^¼ + 4.1^¼ + 0.19^¼), and 0.125 · y (y² + 0.1)^{−¾}, by hand.
    assert.closeTo(vectorValue(penalty(regularizer, y))[0]!, 0.9174113289477805, 1e-6)
    const gradient = vectorValue(tf.grad((v: tf.Tensor) => penalty(regularizer, v) as tf.Scalar)(y))
    const expected = [0, 0.11637655557777785, -0.08676650738465637, 0.13030649613315068]
    gradient.forEach((g, i) => assert.closeTo(g, expected[i]!, 1e-6))
  })
})

describe("the episode's head problem", () => {
  it.each(backendNames)("its closed-form ∇_y f and ∇_y F equal autodiff, in y and (differentiated once more) in φ, on %s", async (name) => {
    await useBackend(name)
    installSecondOrderGradients()
    const random = make(6)
    tf.tidy(() => {
      const problem = episodeProblem({
        features: 3,
        ways: 2,
        supportLabels: tf.tensor2d([[1, 0], [0, 1], [0, 1]]),
        queryLabels: tf.tensor2d([[1, 0], [0, 1]]),
        regularizer: { weight: 0.25, exponent: 0.5, epsilon: 0.1 }
      })
      // Five rows (three support, two query) of three features and the bias's input 1.
      const phi = tf.tensor1d(Array.from({ length: 5 }, () => [...random.array(3, random.normal), 1]).flat())
      const y = tf.tensor1d(random.array(8, random.normal))
      const v = tf.tensor1d(random.array(8, random.normal))
      // f (support rows and penalty) and F (query rows) alike: BDA steps along ∇_y F.
      const objectives = [
        { value: problem.lower, gradient: problem.lowerGradient!, linearize: problem.lowerLinearization!, product: problem.lowerHessianVectorProduct! },
        { value: problem.upper, gradient: problem.upperGradient!, linearize: problem.upperLinearization!, product: problem.upperHessianVectorProduct! }
      ]
      for (const { gradient, linearize, product, value } of objectives) {
        assert.isBelow(relativeError(vectorValue(gradient(phi, y)), vectorValue(tf.grad((w: tf.Tensor) => value(phi, w) as tf.Scalar)(y))), 1e-5)
        // ∂⟨∇_y ·, v⟩/∂φ, the mixed product every reverse step takes, by both routes.
        const mixed = (of: (p: tf.Tensor) => tf.Tensor) => vectorValue(tf.grad((p: tf.Tensor) => tf.sum(tf.mul(of(p), v)) as tf.Scalar)(phi))
        const autodiffMixed = mixed((p) => tf.grad((w: tf.Tensor) => value(p, w) as tf.Scalar)(y))
        assert.isBelow(relativeError(mixed((p) => gradient(p, y)), autodiffMixed), 1e-5)
        // The closed-form Hessian-vector products against autodiff, with the linearization's residuals and without.
        const linearization = linearize(phi, y)
        assert.deepStrictEqual(vectorValue(linearization.gradient), vectorValue(gradient(phi, y)))
        const inY = vectorValue(tf.grad((w: tf.Tensor) => tf.sum(tf.mul(tf.grad((u: tf.Tensor) => value(phi, u) as tf.Scalar)(w), v)) as tf.Scalar)(y))
        for (const closed of [product(phi, y, v), product(phi, y, v, linearization.residuals)]) {
          assert.isBelow(relativeError(vectorValue(closed.y), inY), 1e-5)
          assert.isBelow(relativeError(vectorValue(closed.x), autodiffMixed), 1e-5)
        }
      }
    })
  })

  it("the penalty's Hessian-vector product equals hand-computed values", async () => {
    await useBackend("cpu")
    // 0.125 (y² + 0.1)^{−7/4} (0.1 − 0.5 y²) v at y = (0, 1, −2), v = (1, 2, −1), by hand.
    const product = vectorValue(penaltyHessianVectorProduct({ weight: 0.25, exponent: 0.5, epsilon: 0.1 }, tf.tensor1d([0, 1, -2]), tf.tensor1d([1, 2, -1])))
    const expected = [0.7029266564879363, -0.08463749496565662, 0.020104434637908185]
    product.forEach((p, i) => assert.closeTo(p, expected[i]!, 1e-6))
  })
})

describe("episodes", () => {
  const source = syntheticSource({ classes: 7, perClass: 6 })
  const shape = { ways: 2, shots: 2, queries: 3 }

  it.effect("class splits are disjoint, of the asked sizes, and a function of the random source", () =>
    Effect.gen(function*() {
      const splits = yield* splitClasses(source, { train: 3, validation: 2, test: 2 }, shape, make(4))
      const all = [...splits.train, ...splits.validation, ...splits.test]
      assert.deepStrictEqual([splits.train.length, splits.validation.length, splits.test.length], [3, 2, 2])
      assert.strictEqual(new Set(all).size, 7)
      assert.deepStrictEqual(yield* splitClasses(source, { train: 3, validation: 2, test: 2 }, shape, make(4)), splits)
    }))

  it.effect("an episode has the asked shape, class-major labels, distinct images of its own classes, and is regenerated from its key", () =>
    Effect.gen(function*() {
      const splits = yield* splitClasses(source, { train: 3, validation: 2, test: 2 }, shape, make(4))
      const key = Random.path(Random.key(9), 3, "episode", 1)
      const episode = drawEpisode(source, splits.train, shape, Random.random(key))
      assert.deepStrictEqual(drawEpisode(source, splits.train, shape, Random.random(key)), episode)
      assert.notDeepEqual(drawEpisode(source, splits.train, shape, Random.random(Random.foldIn(key, 0))), episode)
      assert.strictEqual(episode.support.length, 4)
      assert.strictEqual(episode.query.length, 6)
      assert.deepStrictEqual(Array.from(episode.supportLabels), [0, 0, 1, 1])
      assert.deepStrictEqual(Array.from(episode.queryLabels), [0, 0, 0, 1, 1, 1])
      assert.strictEqual(new Set([...episode.support, ...episode.query]).size, 10)
      const classOf = (image: number) => source.byClass.findIndex((images) => images.includes(image))
      const classes = [0, 1].map((label) => classOf(episode.support[label * 2]!))
      assert.notStrictEqual(classes[0], classes[1])
      classes.forEach((c) => assert.include(Array.from(splits.train), c))
      episode.support.forEach((image, i) => assert.strictEqual(classOf(image), classes[episode.supportLabels[i]!]))
      episode.query.forEach((image, i) => assert.strictEqual(classOf(image), classes[episode.queryLabels[i]!]))
    }))

  it.effect("too few classes, too few classes in a split, or too few images fail with a DatasetError saying which", () =>
    Effect.gen(function*() {
      const fails = (counts: { train: number; validation: number; test: number }, s = shape) =>
        Effect.map(Effect.flip(splitClasses(source, counts, s, make(0))), (e) => e.message)
      assert.match(yield* fails({ train: 5, validation: 2, test: 2 }), /holds 7 classes, fewer than the 9/)
      assert.match(yield* fails({ train: 3, validation: 1, test: 2 }), /validation split has 1 classes, fewer than the 2 ways/)
      assert.match(yield* fails({ train: 3, validation: 0, test: 2 }, { ways: 2, shots: 3, queries: 4 }), /class "class0" has 6 images, fewer than the 7/)
    }))
})

describe("folder sources", () => {
  const png = (width: number, height: number, rgb: readonly [number, number, number]) => {
    const image = new PNG({ width, height })
    for (let i = 0; i < width * height; i++) image.data.set([...rgb, 255], i * 4)
    return PNG.sync.write(image)
  }
  const jpg = (width: number, height: number, rgb: readonly [number, number, number]) => {
    const data = Buffer.alloc(width * height * 4)
    for (let i = 0; i < width * height; i++) data.set([...rgb, 255], i * 4)
    return jpeg.encode({ width, height, data }, 100).data
  }
  const folder = (files: Record<string, Uint8Array | string>) => {
    const dir = mkdtempSync(path.join(scratch, "folder-"))
    for (const [name, bytes] of Object.entries(files)) {
      mkdirSync(path.dirname(path.join(dir, name)), { recursive: true })
      writeFileSync(path.join(dir, name), bytes)
    }
    return dir
  }

  it.effect("decodes PNG and JPEG, one class per subdirectory, to the backbone's size and channels", () =>
    Effect.gen(function*() {
      yield* Effect.promise(() => useBackend("cpu"))
      const dir = folder({
        "b/1.png": png(12, 10, [255, 0, 0]),
        "b/2.jpg": jpg(9, 9, [0, 0, 255]),
        "a/x.png": png(5, 7, [0, 255, 0]),
        "a/notes.txt": "not an image",
        "README": "ignored"
      })
      const source = yield* folderSource(dir, [4, 4, 1])
      assert.deepStrictEqual(source.classNames, ["a", "b"])
      assert.deepStrictEqual(source.byClass.map((c) => Array.from(c)), [[0], [1, 2]])
      const pixels = new Float32Array(16)
      // Uniform images stay uniform under resizing; luminance 0.587·255 (green), 0.299·255 (red), 0.114·255 (blue, JPEG).
      for (const [index, expected] of [[0, 150 / 255], [1, 76 / 255], [2, 29 / 255]] as const) {
        source.write(index, pixels, 0)
        pixels.forEach((p) => assert.closeTo(p, expected, 2 / 255))
      }
      const rgb = yield* folderSource(dir, [3, 5, 3])
      const color = new Float32Array(45)
      rgb.write(1, color, 0)
      assert.deepStrictEqual(Array.from(color.subarray(0, 3)), [1, 0, 0])
    }).pipe(Effect.provide(NodeServices.layer)))

  it.effect("images too small for the backbone's four 2×2 poolings fail with a DatasetError naming the size and what to set", () =>
    Effect.gen(function*() {
      yield* Effect.promise(() => useBackend("cpu"))
      const dir = folder({ "a/1.png": png(20, 20, [9, 9, 9]) })
      const settings = { source: "folder", dataDir: dir, imageSize: 12, color: "gray" }
      const error = yield* Effect.flip(fewShot.make(Schema.decodeUnknownSync(fewShot.settings)(settings)).pipe(Effect.scoped))
      assert.strictEqual(error._tag, "DatasetError")
      assert.include(error.message, "12×12 images are too small for the backbone's 4 2×2 max-poolings, which leave 0×0 features")
      assert.include(error.message, "--set imageSize=16")
      const other = yield* Effect.flip(fewShotInstance(syntheticSource({ classes: 7, perClass: 6, size: 15 }), Schema.decodeUnknownSync(fewShotSettings)({ ...tiny, backbone: "resnet12" })))
      assert.include(other.message, "15×15 images are too small")
      assert.include(other.message, "backbone resnet12")
      assert.include(other.message, "at least 16×16")
    }).pipe(Effect.scoped, Effect.provide(Rng.layer(0)), Effect.provide(NodeServices.layer)))

  it.effect("a corrupt image fails with a DatasetError naming the file", () =>
    Effect.gen(function*() {
      yield* Effect.promise(() => useBackend("cpu"))
      const dir = folder({ "a/good.png": png(4, 4, [1, 2, 3]), "a/broken.png": png(4, 4, [1, 2, 3]).subarray(0, 40), "b/c.jpg": "JFIF?" })
      const error = yield* Effect.flip(folderSource(dir, [4, 4, 1]))
      assert.strictEqual(error._tag, "DatasetError")
      assert.include(error.message, path.join(dir, "a", "broken.png"))
      assert.include(error.message, "cannot be decoded")
    }).pipe(Effect.provide(NodeServices.layer)))
})

const tiny = {
  trainClasses: 3,
  validationClasses: 2,
  testClasses: 2,
  ways: 2,
  shots: 1,
  queries: 2,
  metaBatch: 2,
  width: 3,
  innerSteps: 3,
  innerLr: 0.5,
  evalEvery: 0
}

const instanceOn = (settings: Record<string, unknown>) =>
  fewShotInstance(syntheticSource({ classes: 7, perClass: 6 }), Schema.decodeUnknownSync(fewShotSettings)({ ...tiny, ...settings }))

describe.each(backendNames)("few-shot hypergradient on %s", (name) => {
  for (const method of [rhg, iapttGm, bdaMethod, iaGm]) {
    it.effect(`${method.name} on a tiny ConvNet-4 meta-batch equals central differences with the episodes held`, () =>
      Effect.gen(function*() {
        yield* Effect.promise(() => useBackend(name))
        installSecondOrderGradients()
        const instance = yield* instanceOn({})
        const solver = method.build({ innerSteps: 3, innerLr: 0.5 }, Schema.decodeUnknownSync(method.settings)({}))
        // Batch norm over an episode of six 16×16 images, ReLUs and max-pools make the pipeline sharply curved:
        // central differences reach the hypergradient only below moves of ≈ 1e-2 (measured: 0.059, 0.055,
        // 0.051, 0.047, 0.0423 at moves 0.3 … 0.003 against 0.04235), so steps are 1e-4 of the largest coordinate.
        const result = yield* checkSolver(solver, instance, { directions: 6, step: 1e-4 })
        assert.strictEqual(result.reference, "finite-difference")
        assert.isBelow(result.relError, 1e-2, JSON.stringify(result))
      }).pipe(Effect.scoped, Effect.provide(Rng.layer(2)), Effect.provide(NodeServices.layer)))
  }
})

describe("meta-training", () => {
  // T-RHG differentiates the last 2 of the K = 3 steps; every method here selects y_K (k̄ = K).
  const trained = [
    [rhg, {}],
    [tRhg, { lastM: 2 }],
    [bdaMethod, {}],
    [iaGm, {}]
  ] as const
  for (const [method, settings] of trained) {
    it.effect(`${method.name}: a few outer steps lower the query loss on held episodes, with k̄ = K, and leave no tensor behind per step`, () =>
      Effect.gen(function*() {
        yield* Effect.promise(() => useBackend("wasm"))
        installSecondOrderGradients()
        yield* Effect.gen(function*() {
          const instance = yield* instanceOn({ outerLr: 0.03, zLr: 0.03, queries: 3 })
          const solver = method.build({ innerSteps: 3, innerLr: 0.5 }, Schema.decodeUnknownSync(method.settings)(settings))
          const keys = Array.from({ length: 6 }, (_, i) => Random.path(Random.key(77), i))
          // The query loss of the method's own pipeline (BDA's LL steps along the query loss too; IA-GM starts at z).
          const loss = (x: tf.Tensor, z: tf.Tensor) => Effect.map(Effect.forEach(keys, (key) => valueAt(solver, instance.problem, x, z, key)), meanWithInterval)
          const initial = yield* loss(instance.x0, instance.y0)
          const steps = yield* outerSteps(solver, instance.problem, initialState(instance.x0, instance.y0, instance.optimizers), instance.optimizers, Random.key(5)).pipe(
            Stream.take(25),
            Stream.mapEffect((step) => Effect.map(loss(step.after.x, step.after.z), (after) => ({ after, kbars: step.solution.kbars, tensors: tf.memory().numTensors }))),
            Stream.runCollect
          )
          const last = steps.at(-1)!.after
          assert.isTrue(Number.isFinite(last.mean))
          assert.isBelow(last.mean, initial.mean - 0.1, `held query loss ${initial.mean} → ${last.mean}`)
          steps.forEach((step) => assert.deepStrictEqual(step.kbars, [3, 3]))
          assert.deepStrictEqual(new Set(steps.slice(1).map((s) => s.tensors)).size, 1, "tensors alive after each step")
        }).pipe(Effect.scoped)
      }).pipe(Effect.provide(Rng.layer(3)), Effect.provide(NodeServices.layer)))
  }

  it.effect("source=folder without dataDir is a DatasetError saying what to set", () =>
    Effect.gen(function*() {
      const exit = yield* Effect.exit(fewShot.make(Schema.decodeUnknownSync(fewShot.settings)({ source: "folder" })).pipe(Effect.scoped))
      assert.isTrue(Exit.isFailure(exit))
      assert.include(String(Exit.isFailure(exit) ? exit.cause : ""), "dataDir")
    }).pipe(Effect.provide(Rng.layer(0)), Effect.provide(NodeServices.layer)))
})

describe("the backbone's optimizer", () => {
  it.effect("decays the convolution filters by weightDecay and leaves batch-norm scales and shifts alone", () =>
    Effect.gen(function*() {
      yield* Effect.promise(() => useBackend("cpu"))
      const instance = yield* instanceOn({ weightDecay: 0.5, outerLr: 0.1 })
      const x = vectorValue(instance.x0)
      // A zero gradient: Adam's step is 0, so the update is the decay alone, −lr · wd · x on decayed blocks.
      const [updates] = instance.optimizers.x.update(tf.zerosLike(instance.x0), instance.optimizers.x.init(instance.x0), instance.x0)
      const moved = vectorValue(updates)
      const layout = convNet4([16, 16, 1], 3).layout
      for (const block of layout.blocks) {
        for (let i = block.offset; i < block.offset + block.size; i++) {
          assert.closeTo(moved[i]!, /(Scale|Shift)$/.test(block.name) ? 0 : -0.1 * 0.5 * x[i]!, 1e-7, block.name)
        }
      }
    }).pipe(Effect.scoped, Effect.provide(Rng.layer(2)), Effect.provide(NodeServices.layer)))
})

/** `classes` folders of four 16×16 PNGs each, of random red shades. */
const imageFolder = (dir: string, classes: number) => {
  const random = make(8)
  for (let c = 0; c < classes; c++) {
    mkdirSync(path.join(dir, `class${c}`), { recursive: true })
    const shade = 8 * c
    for (let i = 0; i < 4; i++) {
      const image = new PNG({ width: 16, height: 16 })
      for (let p = 0; p < 256; p++) image.data.set([shade + random.int(0, 200), 0, 0, 255], p * 4)
      writeFileSync(path.join(dir, `class${c}`, `${i}.png`), PNG.sync.write(image))
    }
  }
}

describe("bilevel reproduce fewshot", () => {
  it.effect("on a folder source: a row per method beside the random backbone, and OUT/notes.md included before the commands", () =>
    Effect.gen(function*() {
      const root = mkdtempSync(path.join(scratch, "reproduce-"))
      imageFolder(path.join(root, "images"), 4)
      const out = path.join(root, "out")
      mkdirSync(out)
      writeFileSync(path.join(out, "notes.md"), "## Another backbone\n\nA hand-written note.\n")
      const settings = yield* decodeSettings(fewShotExperiment, {
        source: "folder", dataDir: path.join(root, "images"), imageSize: 16, ways: 2, queries: 2, trainClasses: 2,
        validationClasses: 0, testClasses: 2, metaBatch: 2, width: 3, outerSteps: 2, evalEvery: 2, testEpisodes: 10, methods: "rhg,ia-gm"
      })
      const result = yield* fewShotExperiment.run({ out, seeds: [0], settings, command: "bilevel reproduce fewshot (test)", overwrite: false, progress: () => Effect.void })
      const report = readFileSync(result.report, "utf8")
      for (const method of ["rhg", "ia-gm"]) assert.match(report, new RegExp(`\\| ${method} \\| 2 \\| `))
      assert.include(report, "| random backbone (x_0, z_0) | 0 |")
      assert.isBelow(report.indexOf("## Another backbone\n\nA hand-written note."), report.indexOf("## Commands"))
      assert.isAbove(report.indexOf("## Another backbone"), report.indexOf("## What differs"))
    }).pipe(Effect.provide(Backend.layer("cpu")), Effect.provide(NodeServices.layer)), 120_000)
})

describe("bilevel evaluate", () => {
  it.effect("a few-shot run on a folder source is evaluated at its checkpoint and at its random initial backbone", () =>
    Effect.gen(function*() {
      const root = mkdtempSync(path.join(scratch, "fewshot-"))
      imageFolder(path.join(root, "images"), 5)
      const settings = {
        source: "folder", dataDir: path.join(root, "images"), imageSize: 16, color: "gray",
        ...tiny, trainClasses: 2, validationClasses: 0, testClasses: 2, outerSteps: 2, testEpisodes: 12
      }
      const dir = path.join(root, "run")
      yield* run({ task: "fewshot", method: "iaptt-gm", seed: 1, settings, out: dir, checkpointEvery: 2 })
      const result = yield* evaluate(dir)
      assert.strictEqual(result.step, 2)
      for (const row of [result.trained, result.initial!]) {
        assert.strictEqual(row["testEpisodes"], 12)
        assert.isAtLeast(row["testAccuracy"]!, 0)
        assert.isAtMost(row["testAccuracy"]!, 1)
        assert.isAbove(row["testAccuracyCi95"]!, 0)
      }
      assert.notDeepEqual(result.trained, result.initial)
      assert.deepStrictEqual(JSON.parse(readFileSync(path.join(dir, "evaluation.json"), "utf8")).trained, result.trained)
      // Evaluating again gives the same numbers (the test episodes are keyed from the run's seed); the baseline can be left out.
      const again = yield* evaluate(dir, { baseline: false })
      assert.deepStrictEqual(again.trained, result.trained)
      assert.isUndefined(again.initial)
      const unchecked = path.join(root, "unchecked")
      yield* run({ task: "fewshot", method: "rhg", seed: 1, settings, out: unchecked, checkpointEvery: 0 })
      const error = yield* Effect.flip(evaluate(unchecked))
      assert.strictEqual(error._tag, "RunRecordError")
      assert.include(error.message, "has no checkpoint.json")
      assert.isFalse(existsSync(path.join(unchecked, "evaluation.json")))
    }).pipe(Effect.provide(Backend.layer("cpu")), Effect.provide(NodeServices.layer)))
})
