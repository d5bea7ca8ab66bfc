import { NodeServices } from "@effect/platform-node"
import { assert, describe, it, layer } from "@effect/vitest"
import { Effect, FileSystem } from "effect"
import { existsSync } from "node:fs"
import { gzipSync } from "node:zlib"
import { idx } from "./support/idxBytes.ts"
import { decodeIdx, readIdx } from "../src/tasks/idx.ts"
import { datasetDir, fashionMnistDir, loadMnistLike } from "../src/tasks/mnistLike.ts"

const pixels = (count: number) => Array.from({ length: count }, (_, i) => (i * 37) % 256)
const images = (n: number, rows = 3, cols = 4) => idx(0x00000803, [n, rows, cols], pixels(n * rows * cols))
const labels = (values: ReadonlyArray<number>) => idx(0x00000801, [values.length], values)

const problemOf = (bytes: Uint8Array, options?: { classes: number }) =>
  Effect.flip(decodeIdx(bytes, "f.idx", options)).pipe(
    Effect.map((e) => {
      assert.strictEqual(e._tag, "DatasetError")
      assert.strictEqual(e.file, "f.idx")
      assert.isNotEmpty(e.hint)
      return e.problem
    })
  )

describe("decodeIdx", () => {
  it.effect("decodes raw and gzipped images and labels", () =>
    Effect.gen(function*() {
      for (const encode of [(b: Uint8Array) => b, (b: Uint8Array) => new Uint8Array(gzipSync(b))]) {
        const img = yield* decodeIdx(encode(images(2)), "img")
        assert.deepStrictEqual(img.dims, [2, 3, 4])
        assert.deepStrictEqual(Array.from(img.data), pixels(24))
        const lab = yield* decodeIdx(encode(labels([3, 0, 9])), "lab")
        assert.deepStrictEqual(lab.dims, [3])
        assert.deepStrictEqual(Array.from(lab.data), [3, 0, 9])
      }
    }))

  it.effect("names a wrong magic number and what is off in it", () =>
    Effect.gen(function*() {
      assert.strictEqual(
        yield* problemOf(idx(0x00000802, [2, 12], pixels(24))),
        "magic number 0x00000802 is not an IDX uint8 array (expected 0x00000803 or 0x00000801): " +
          "it declares 2 dimensions, not 3 (images) or 1 (labels)"
      )
      assert.include(yield* problemOf(idx(0x00000d03, [1, 1, 1], [0, 0, 0, 0])), "data type 0x0d, not uint8")
      assert.include(yield* problemOf(new TextEncoder().encode("PK\x03\x04 zip")), "not an IDX file")
    }))

  it.effect("rejects files too short for their header", () =>
    Effect.gen(function*() {
      assert.strictEqual(
        yield* problemOf(new Uint8Array([0, 0])),
        "holds 2 bytes, fewer than the 4 of an IDX magic number"
      )
      assert.strictEqual(
        yield* problemOf(images(1).subarray(0, 10)),
        "ends after 10 bytes, inside its 16-byte header"
      )
    }))

  it.effect("rejects a non-positive dimension", () =>
    Effect.gen(function*() {
      assert.strictEqual(
        yield* problemOf(idx(0x00000803, [2, 0, 4], [])),
        "dimension 1 is 0; every dimension must be positive"
      )
      assert.include(yield* problemOf(idx(0x00000801, [-5], [])), "dimension 0 is -5")
    }))

  it.effect("rejects truncated data and extra bytes, saying how many it holds", () =>
    Effect.gen(function*() {
      assert.strictEqual(
        yield* problemOf(images(2).subarray(0, 16 + 20)),
        "declares 2×3×4 = 24 bytes but holds 20 (truncated)"
      )
      const extra = new Uint8Array([...images(2), 7, 7])
      assert.strictEqual(
        yield* problemOf(extra),
        "declares 2×3×4 = 24 bytes but holds 26 (2 extra bytes after the array)"
      )
      assert.strictEqual(yield* problemOf(labels([1, 2]).subarray(0, 9)), "declares 2 bytes but holds 1 (truncated)")
    }))

  it.effect("rejects a label outside the classes, which are a parameter", () =>
    Effect.gen(function*() {
      assert.strictEqual(yield* problemOf(labels([3, 9, 10, 1])), "label 10 at index 2 is outside 0..9")
      const lab = yield* decodeIdx(labels([3, 9, 10, 1]), "lab", { classes: 11 })
      assert.deepStrictEqual(Array.from(lab.data), [3, 9, 10, 1])
      assert.strictEqual(yield* problemOf(labels([0, 1, 2]), { classes: 2 }), "label 2 at index 2 is outside 0..1")
    }))

  it.effect("rejects a corrupt gzip stream", () =>
    Effect.gen(function*() {
      const gz = new Uint8Array(gzipSync(images(4)))
      assert.include(yield* problemOf(gz.subarray(0, gz.length - 12)), "is gzip-compressed but does not decompress")
      const flipped = gz.slice()
      flipped[gz.length - 6] ^= 0xff // inside the CRC-32/length trailer
      assert.include(yield* problemOf(flipped), "is gzip-compressed but does not decompress")
    }))
})

layer(NodeServices.layer)("files", (it) => {
  const writeAll = Effect.fnUntraced(function*(files: Record<string, Uint8Array>) {
    const fs = yield* FileSystem.FileSystem
    const dir = yield* fs.makeTempDirectoryScoped()
    for (const [name, bytes] of Object.entries(files)) yield* fs.writeFile(`${dir}/${name}`, bytes)
    return dir
  })
  const gz = (bytes: Uint8Array) => new Uint8Array(gzipSync(bytes))

  it.effect("readIdx: a missing file is a DatasetError", () =>
    Effect.gen(function*() {
      const dir = yield* writeAll({})
      const e = yield* Effect.flip(readIdx(`${dir}/nope-idx1-ubyte`))
      assert.strictEqual(e._tag, "DatasetError")
      assert.strictEqual(e.file, `${dir}/nope-idx1-ubyte`)
      assert.strictEqual(e.problem, "does not exist")
    }))

  it.effect("loads a split from raw and gzipped files, scaling pixels to [0, 1]", () =>
    Effect.gen(function*() {
      const dir = yield* writeAll({
        "train-images-idx3-ubyte.gz": gz(images(2)),
        "train-labels-idx1-ubyte": labels([4, 7]),
        "t10k-images-idx3-ubyte": images(1, 2, 2),
        "t10k-labels-idx1-ubyte.gz": gz(labels([9]))
      })
      const train = yield* loadMnistLike({ dataDir: dir, split: "train" })
      assert.strictEqual(train.n, 2)
      assert.strictEqual(train.rows, 3)
      assert.strictEqual(train.cols, 4)
      assert.deepStrictEqual(Array.from(train.labels), [4, 7])
      assert.strictEqual(train.images.length, 24)
      assert.deepStrictEqual(Array.from(train.images), pixels(24).map((p) => Math.fround(p / 255)))
      const test = yield* loadMnistLike({ dataDir: dir, split: "test" })
      assert.deepStrictEqual([test.n, test.rows, test.cols], [1, 2, 2])
      assert.deepStrictEqual(Array.from(test.labels), [9])
    }))

  it.effect("names the file whose count disagrees", () =>
    Effect.gen(function*() {
      const dir = yield* writeAll({
        "train-images-idx3-ubyte": images(3),
        "train-labels-idx1-ubyte": labels([1, 2])
      })
      const e = yield* Effect.flip(loadMnistLike({ dataDir: dir, split: "train" }))
      assert.strictEqual(e.file, `${dir}/train-labels-idx1-ubyte`)
      assert.strictEqual(e.problem, `holds 2 labels but ${dir}/train-images-idx3-ubyte holds 3 images`)
    }))

  it.effect("names swapped files", () =>
    Effect.gen(function*() {
      const dir = yield* writeAll({
        "train-images-idx3-ubyte": labels([1, 2]),
        "train-labels-idx1-ubyte": images(2)
      })
      const e = yield* Effect.flip(loadMnistLike({ dataDir: dir, split: "train" }))
      assert.strictEqual(e.file, `${dir}/train-images-idx3-ubyte`)
      assert.strictEqual(e.problem, "holds a 1-D array of shape 2, not images [n, rows, cols]")
    }))

  it.effect("passes on a corrupt file's error", () =>
    Effect.gen(function*() {
      const dir = yield* writeAll({
        "train-images-idx3-ubyte": images(2),
        "train-labels-idx1-ubyte.gz": gz(labels([1, 12]))
      })
      const e = yield* Effect.flip(loadMnistLike({ dataDir: dir, split: "train" }))
      assert.strictEqual(e.file, `${dir}/train-labels-idx1-ubyte.gz`)
      assert.strictEqual(e.problem, "label 12 at index 1 is outside 0..9")
    }))

  it.effect("says how to get missing files, per dataset", () =>
    Effect.gen(function*() {
      const dir = yield* writeAll({ "train-images-idx3-ubyte": images(1) })
      const fashion = yield* Effect.flip(loadMnistLike({ dataDir: dir, split: "train", dataset: "fashion-mnist" }))
      assert.strictEqual(fashion.file, `${dir}/train-labels-idx1-ubyte[.gz]`)
      assert.strictEqual(fashion.problem, "does not exist (looked for it raw and gzipped)")
      assert.include(fashion.hint, "apt-get update && apt-get install -y dataset-fashion-mnist")
      assert.include(fashion.hint, "--set dataDir=DIR")
      const mnist = yield* Effect.flip(loadMnistLike({ dataDir: dir, split: "test", dataset: "mnist" }))
      assert.strictEqual(mnist.file, `${dir}/t10k-images-idx3-ubyte[.gz]`)
      assert.include(mnist.hint, "--set dataDir=DIR")
      assert.include(mnist.hint, "MNIST")
      assert.notInclude(mnist.hint, "apt-get")
    }))
})

describe("datasetDir", () => {
  it.effect("defaults FashionMNIST to the Debian package's directory, and MNIST to nothing", () =>
    Effect.gen(function*() {
      assert.strictEqual(yield* datasetDir("fashion-mnist"), "/usr/share/datasets/fashion-mnist")
      assert.strictEqual(yield* datasetDir("fashion-mnist", "/data/f"), "/data/f")
      assert.strictEqual(yield* datasetDir("mnist", "/data/m"), "/data/m")
      const e = yield* Effect.flip(datasetDir("mnist"))
      assert.strictEqual(e.file, "(dataDir unset)")
      assert.include(e.hint, "MNIST IDX files with `--set dataDir=DIR`")
    }))
})

const haveFashionMnist = existsSync(fashionMnistDir)

layer(NodeServices.layer)("real FashionMNIST", (it) => {
  it.effect.skipIf(!haveFashionMnist)(
    haveFashionMnist
      ? "loads the train split: 60000 images of 28×28 in [0, 1], 6000 per class"
      : `loads the train split: skipped, ${fashionMnistDir} is absent (apt-get install -y dataset-fashion-mnist)`,
    () =>
      Effect.gen(function*() {
        const train = yield* loadMnistLike({ dataDir: fashionMnistDir, split: "train", dataset: "fashion-mnist" })
        assert.deepStrictEqual([train.n, train.rows, train.cols], [60000, 28, 28])
        assert.strictEqual(train.images.length, 60000 * 784)
        assert.isTrue(train.images.every((p) => p >= 0 && p <= 1))
        const counts = new Array<number>(10).fill(0)
        for (const label of train.labels) counts[label]!++
        assert.deepStrictEqual(counts, new Array(10).fill(6000))
      })
  )
})
