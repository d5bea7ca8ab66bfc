/**
 * MNIST-format datasets (MNIST, FashionMNIST): a directory holding the four IDX files
 * {train,t10k}-{images-idx3,labels-idx1}-ubyte, each gzipped (`.gz`) or raw.
 */
import { Effect, FileSystem } from "effect"
import { DatasetError, systemProblem } from "../domain/errors.ts"
import { readIdx } from "./idx.ts"

export type MnistName = "fashion-mnist" | "mnist"
export type Split = "train" | "test"

export interface MnistLike {
  /** n × (rows·cols) pixels, row-major, scaled to [0, 1]. */
  readonly images: Float32Array
  readonly labels: Int32Array
  readonly n: number
  readonly rows: number
  readonly cols: number
}

export interface MnistLikeOptions {
  readonly dataDir: string
  readonly split: Split
  /** The dataset the directory should hold; only used to tell the user how to get missing files. */
  readonly dataset?: MnistName
}

/** Where Debian's `dataset-fashion-mnist` package installs FashionMNIST. */
export const fashionMnistDir = "/usr/share/datasets/fashion-mnist"

/** Resolves the settings `dataset` and `dataDir` to a directory: FashionMNIST has a default, MNIST needs `dataDir`. */
export const datasetDir = (name: MnistName, dataDir?: string): Effect.Effect<string, DatasetError> => {
  if (dataDir !== undefined) return Effect.succeed(dataDir)
  if (name === "fashion-mnist") return Effect.succeed(fashionMnistDir)
  return Effect.fail(
    new DatasetError({
      file: "(dataDir unset)",
      problem: "dataset=mnist has no default location, so the setting dataDir is required",
      hint: howToGet(name)
    })
  )
}

/** Loads one split, checking that its images and labels files agree on the number of examples. */
export const loadMnistLike = Effect.fnUntraced(function*(options: MnistLikeOptions) {
  const prefix = options.split === "train" ? "train" : "t10k"
  const imagesPath = yield* locate(options, `${prefix}-images-idx3-ubyte`)
  const labelsPath = yield* locate(options, `${prefix}-labels-idx1-ubyte`)
  const images = yield* readIdx(imagesPath)
  const labels = yield* readIdx(labelsPath)
  if (images.dims.length !== 3) {
    return yield* notThe(imagesPath, images.dims, "images [n, rows, cols]")
  }
  if (labels.dims.length !== 1) {
    return yield* notThe(labelsPath, labels.dims, "labels [n]")
  }
  const [n, rows, cols] = images.dims as [number, number, number]
  if (labels.dims[0] !== n) {
    return yield* new DatasetError({
      file: labelsPath,
      problem: `holds ${labels.dims[0]} labels but ${imagesPath} holds ${n} images`,
      hint: "The two files must come from the same split of the same dataset: replace the one that does not."
    })
  }
  return { images: scaleToUnit(images.data), labels: Int32Array.from(labels.data), n, rows, cols } satisfies MnistLike
})

const howToGet = (dataset: MnistName | undefined) =>
  dataset === "fashion-mnist"
    ? `Install FashionMNIST with \`apt-get update && apt-get install -y dataset-fashion-mnist\` ` +
      `(it puts {train,t10k}-{images-idx3,labels-idx1}-ubyte.gz in ${fashionMnistDir}), ` +
      `or point the task at a directory holding those four files with \`--set dataDir=DIR\`.`
    : `Point the task at a directory holding the four ${dataset === "mnist" ? "MNIST " : ""}IDX files with \`--set dataDir=DIR\` ` +
      `{train,t10k}-{images-idx3,labels-idx1}-ubyte, gzipped (.gz) or not.`

// The raw file wins over the gzipped one: it is what a user who unpacked the download meant.
const locate = Effect.fnUntraced(function*(options: MnistLikeOptions, name: string) {
  const fs = yield* FileSystem.FileSystem
  for (const candidate of [`${options.dataDir}/${name}`, `${options.dataDir}/${name}.gz`]) {
    // Only "not found" means absent: a directory that cannot be searched (EACCES) is reported as such.
    const found = yield* fs.exists(candidate).pipe(
      Effect.mapError((e) =>
        new DatasetError({
          file: candidate,
          problem: `cannot be looked up: ${systemProblem(e)}`,
          hint: `Make ${options.dataDir} readable by this user, or copy the files somewhere that is.`
        })
      )
    )
    if (found) return candidate
  }
  return yield* new DatasetError({
    file: `${options.dataDir}/${name}[.gz]`,
    problem: "does not exist (looked for it raw and gzipped)",
    hint: howToGet(options.dataset)
  })
})

const notThe = (file: string, dims: ReadonlyArray<number>, expected: string) =>
  new DatasetError({
    file,
    problem: `holds a ${dims.length}-D array of shape ${dims.join("×")}, not ${expected}`,
    hint: "The files may have been swapped or renamed: check which one is which."
  })

const scaleToUnit = (pixels: Uint8Array) => {
  const out = new Float32Array(pixels.length)
  for (let i = 0; i < pixels.length; i++) out[i] = pixels[i]! / 255
  return out
}
