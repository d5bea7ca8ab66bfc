/**
 * IDX files, the format of MNIST and FashionMNIST: a big-endian magic number 0x0000TTDD (TT the data type, DD the
 * number of dimensions), DD big-endian int32 sizes, then the array in row-major order. Only what those datasets use
 * is accepted: uint8 images [n, rows, cols] (0x00000803) and uint8 labels [n] (0x00000801), gzipped or raw.
 * Every malformed file ends in a `DatasetError` naming what is wrong, never a garbage array or a thrown exception.
 */
import { Effect, FileSystem } from "effect"
import { gunzipSync } from "node:zlib"
import { DatasetError } from "../domain/errors.ts"

export interface IdxArray {
  readonly dims: ReadonlyArray<number>
  readonly data: Uint8Array
}

export interface IdxOptions {
  /** Label vectors (1-D arrays) must hold values in 0..classes − 1. Default 10. */
  readonly classes?: number
}

/** Decodes the bytes of an IDX file (gzipped or raw); `file` names it in errors. */
export const decodeIdx = (
  bytes: Uint8Array,
  file: string,
  options: IdxOptions = {}
): Effect.Effect<IdxArray, DatasetError> =>
  Effect.flatMap(gunzipIfCompressed(bytes, file), (raw) => parse(raw, file, options.classes ?? 10))

/** Reads and decodes the IDX file at `path`. */
export const readIdx = Effect.fnUntraced(function*(path: string, options: IdxOptions = {}) {
  const fs = yield* FileSystem.FileSystem
  const bytes = yield* fs.readFile(path).pipe(
    Effect.mapError((e) =>
      e.reason._tag === "NotFound"
        ? new DatasetError({ file: path, problem: "does not exist", hint: "Check the path." })
        : new DatasetError({
          file: path,
          problem: `cannot be read: ${e.message}`,
          hint: "Check that it is a readable file."
        })
    )
  )
  return yield* decodeIdx(bytes, path, options)
})

const corrupt = "The file is corrupt or is not an MNIST-format IDX file: download or install it again."

const fail = (file: string, problem: string) => Effect.fail(new DatasetError({ file, problem, hint: corrupt }))

const IMAGES = 0x00000803
const LABELS = 0x00000801

const gunzipIfCompressed = (bytes: Uint8Array, file: string): Effect.Effect<Uint8Array, DatasetError> =>
  bytes[0] === 0x1f && bytes[1] === 0x8b
    ? Effect.try({
      try: () => gunzipSync(bytes),
      catch: (e) =>
        new DatasetError({
          file,
          problem: `is gzip-compressed but does not decompress (${e instanceof Error ? e.message : String(e)})`,
          hint: corrupt
        })
    })
    : Effect.succeed(bytes)

const parse = (bytes: Uint8Array, file: string, classes: number): Effect.Effect<IdxArray, DatasetError> => {
  if (bytes.length < 4) {
    return fail(file, `holds ${bytes.length} bytes, fewer than the 4 of an IDX magic number`)
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  const magic = view.getUint32(0)
  if (magic !== IMAGES && magic !== LABELS) {
    return fail(
      file,
      `magic number ${hex(magic)} is not an IDX uint8 array (expected ${hex(IMAGES)} or ${hex(LABELS)}): ` +
        whatMagicSays(magic)
    )
  }
  const rank = magic & 0xff
  const headerBytes = 4 + 4 * rank
  if (bytes.length < headerBytes) {
    return fail(file, `ends after ${bytes.length} bytes, inside its ${headerBytes}-byte header`)
  }
  const dims = Array.from({ length: rank }, (_, i) => view.getInt32(4 + 4 * i))
  const bad = dims.findIndex((d) => d <= 0)
  if (bad >= 0) {
    return fail(file, `dimension ${bad} is ${dims[bad]}; every dimension must be positive`)
  }
  const declared = dims.reduce((a, b) => a * b, 1)
  const held = bytes.length - headerBytes
  if (held !== declared) {
    const shape = `${dims.join("×")}${rank > 1 ? ` = ${declared}` : ""}`
    const what = held < declared ? "truncated" : `${held - declared} extra bytes after the array`
    return fail(file, `declares ${shape} bytes but holds ${held} (${what})`)
  }
  const data = bytes.subarray(headerBytes)
  if (magic === LABELS) {
    const i = data.findIndex((label) => label >= classes)
    if (i >= 0) {
      return fail(file, `label ${data[i]} at index ${i} is outside 0..${classes - 1}`)
    }
  }
  return Effect.succeed({ dims, data })
}

const hex = (n: number) => `0x${n.toString(16).padStart(8, "0")}`

// Says which part of a rejected magic number is off, so a float IDX file or a 2-D array is told apart from noise.
const whatMagicSays = (magic: number) => {
  if (magic >>> 16 !== 0) return "its first two bytes must be zero, so this is not an IDX file"
  const type = (magic >>> 8) & 0xff
  if (type !== 0x08) return `it declares data type 0x${type.toString(16).padStart(2, "0")}, not uint8 (0x08)`
  return `it declares ${magic & 0xff} dimensions, not 3 (images) or 1 (labels)`
}
