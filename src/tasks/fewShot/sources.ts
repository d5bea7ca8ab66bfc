/**
 * Class-indexed image sources for few-shot episodes:
 *
 * - an IDX dataset (MNIST, FashionMNIST: src/tasks/mnistLike.ts), its classes the labels 0 … 9;
 * - a folder per class (the layout Omniglot and miniImageNet are distributed in): `DIR/<class>/<image>`,
 *   PNG or JPEG, decoded with pngjs and jpeg-js (maintained pure-JS decoders: no native build, so the
 *   project still installs anywhere Node does), converted to the backbone's channels (luminance or RGB)
 *   and resized to its input with tfjs's bilinear resize. Pixels are kept as bytes: miniImageNet's
 *   60 000 images at 84×84×3 are 1.3 GB so, 5 GB as floats.
 *
 * A file that does not decode fails the load with a `DatasetError` naming it.
 */
import * as tf from "@tensorflow/tfjs-core"
import { Effect, FileSystem } from "effect"
import jpeg from "jpeg-js"
import * as path from "node:path"
import { PNG } from "pngjs"
import { DatasetError } from "../../domain/errors.ts"
import { readData } from "../../domain/tensors.ts"
import { loadMnistLike, type MnistName } from "../mnistLike.ts"
import type { ImageShape } from "./backbones.ts"
import { type ClassImages, indexByClass } from "./episodes.ts"

/** The training file of an IDX dataset in `dir`, its ten labels as classes. */
export const idxSource = Effect.fnUntraced(function*(dir: string, dataset: MnistName) {
  const data = yield* loadMnistLike({ dataDir: dir, split: "train", dataset })
  const size = data.rows * data.cols
  const classes = Math.max(...data.labels) + 1
  return {
    name: `${dir} (${dataset} training file)`,
    shape: [data.rows, data.cols, 1],
    classNames: Array.from({ length: classes }, (_, c) => String(c)),
    byClass: indexByClass(data.labels, classes),
    write: (index, out, offset) => out.set(data.images.subarray(index * size, (index + 1) * size), offset)
  } satisfies ClassImages
})

const imageExtensions = new Set([".png", ".jpg", ".jpeg"])

/**
 * Every PNG and JPEG under `dir/<class>/`, one class per subdirectory (sorted by name, as are the
 * files), converted to `shape`. Other files are ignored; a class folder without images is an error.
 */
export const folderSource = Effect.fnUntraced(function*(dir: string, shape: ImageShape) {
  const fs = yield* FileSystem.FileSystem
  const unreadable = (file: string) => (e: { readonly message: string }) =>
    new DatasetError({ file, problem: `cannot be read: ${e.message}`, hint: "Check that it exists and is readable." })
  const entries = (yield* fs.readDirectory(dir).pipe(Effect.mapError(unreadable(dir)))).sort()
  const classNames: Array<string> = []
  const files: Array<Array<string>> = []
  for (const entry of entries) {
    const classDir = path.join(dir, entry)
    const info = yield* fs.stat(classDir).pipe(Effect.mapError(unreadable(classDir)))
    if (info.type !== "Directory") continue
    const images = (yield* fs.readDirectory(classDir).pipe(Effect.mapError(unreadable(classDir))))
      .filter((name) => imageExtensions.has(path.extname(name).toLowerCase()))
      .sort()
    if (images.length === 0) {
      return yield* new DatasetError({
        file: classDir,
        problem: "holds no .png, .jpg or .jpeg image",
        hint: "Each subdirectory of the image folder is one class and must hold its images; remove or fill it."
      })
    }
    classNames.push(entry)
    files.push(images.map((name) => path.join(classDir, name)))
  }
  if (classNames.length === 0) {
    return yield* new DatasetError({
      file: dir,
      problem: "has no subdirectories",
      hint: "An image folder holds one subdirectory per class (DIR/<class>/<image>.png|.jpg), as Omniglot and miniImageNet ship."
    })
  }
  const [h, w, c] = shape
  const all = files.flat()
  const pixels = new Uint8Array(all.length * h * w * c)
  for (const [i, file] of all.entries()) {
    const bytes = yield* fs.readFile(file).pipe(Effect.mapError(unreadable(file)))
    const image = yield* decode(bytes, file)
    const out = resized(image, shape)
    pixels.set(yield* readData(out), i * h * w * c)
    out.dispose()
  }
  let next = 0
  const byClass = files.map((list) => Int32Array.from(list, () => next++))
  return {
    name: dir,
    shape,
    classNames,
    byClass,
    write: (index, out, offset) => {
      const size = h * w * c
      for (let j = 0; j < size; j++) out[offset + j] = pixels[index * size + j]! / 255
    }
  } satisfies ClassImages
})

interface Rgba {
  readonly width: number
  readonly height: number
  readonly data: Uint8Array
}

/** Decodes a PNG or JPEG (told apart by their signatures) to RGBA bytes. */
const decode = (bytes: Uint8Array, file: string): Effect.Effect<Rgba, DatasetError> =>
  Effect.try({
    try: () => {
      if (bytes[0] === 0x89 && bytes[1] === 0x50 && bytes[2] === 0x4e && bytes[3] === 0x47) {
        const png = PNG.sync.read(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength))
        return { width: png.width, height: png.height, data: new Uint8Array(png.data.buffer, png.data.byteOffset, png.data.byteLength) }
      }
      if (bytes[0] === 0xff && bytes[1] === 0xd8) return jpeg.decode(bytes, { useTArray: true, formatAsRGBA: true })
      throw new Error("it is neither a PNG nor a JPEG (its first bytes are not either's signature)")
    },
    catch: (e) =>
      new DatasetError({
        file,
        problem: `cannot be decoded as an image: ${e instanceof Error ? e.message : String(e)}`,
        hint: "Replace or remove the file (only PNG and JPEG images are read)."
      })
  })

/** RGBA bytes → luminance (1 channel) or RGB (3), resized bilinearly to h × w, rounded to bytes. */
const resized = (image: Rgba, [h, w, c]: ImageShape): tf.Tensor =>
  tf.tidy(() => {
    const rgba = tf.tensor3d(image.data, [image.height, image.width, 4], "int32")
    const rgb = tf.cast(tf.slice(rgba, [0, 0, 0], [image.height, image.width, 3]), "float32")
    const channels = c === 1 ? tf.sum(tf.mul(rgb, tf.tensor1d([0.299, 0.587, 0.114])), -1, true) : rgb
    const out = tf.image.resizeBilinear(channels as tf.Tensor3D, [h, w], true)
    return tf.clipByValue(tf.round(out), 0, 255)
  })
