/**
 * Checkpoints of the UL loop: everything the next outer step depends on, so that `bilevel resume`
 * continues a killed run exactly where the uninterrupted run would have been.
 *
 *   checkpoint.json = { format: 1, step, rng, x, z, adjoint?, xOptimizer, zOptimizer }
 *
 * - `step`: outer steps done; the state is (x_step, z_step) and steps.ndjson holds at least `step`
 *   lines (a step is recorded before its checkpoint is written).
 * - `rng`: the seeded generator's state after those steps (`RandomSource.state()`).
 * - `x`, `z`: tensors; `xOptimizer`, `zOptimizer`: the optimizers' state trees (`OptState`), nested
 *   arrays of tensors. A tensor is `{ dtype, shape, data }`, `data` the base64 of its little-endian
 *   bytes: exact (float32 bits survive), and a third the size of decimal text for large z.
 * - `adjoint`: the amortized adjoint v a solver under `warmAdjoint` carries (AmIGO, SOBA); absent
 *   otherwise, so checkpoints of other methods are unchanged.
 *
 * Written with `RunRecord.writeAtomically` (temporary file, flush, rename), so a kill leaves the
 * previous checkpoint or the new one, never a torn one. A checkpoint is restored into the state a
 * fresh run of the same task builds, so a tree or shape that does not fit is a typed error.
 */
import * as tf from "@tensorflow/tfjs-core"
import { Effect, FileSystem, Schema } from "effect"
import { RunRecordError } from "../domain/errors.ts"
import { readData } from "../domain/tensors.ts"
import type { OuterState } from "../solvers/outerLoop.ts"
import { type OptState, stateTensors } from "../solvers/optimizers.ts"
import { fileFailure, files, writeAtomically } from "./RunRecord.ts"

export const TensorData = Schema.Struct({
  dtype: Schema.Literals(["float32", "int32", "bool"]),
  shape: Schema.Array(Schema.Int.check(Schema.isGreaterThanOrEqualTo(0))),
  data: Schema.String
})
export type TensorData = typeof TensorData.Type

export type OptStateData = ReadonlyArray<TensorData | OptStateData>
export const OptStateData: Schema.Codec<OptStateData> = Schema.Array(
  Schema.Union([TensorData, Schema.suspend((): Schema.Codec<OptStateData> => OptStateData)])
)

const Int32 = Schema.Number.check(Schema.isInt32())

export const Checkpoint = Schema.Struct({
  format: Schema.Literal(1),
  step: Schema.Int.check(Schema.isGreaterThanOrEqualTo(0)),
  /** xoroshiro128+'s state: four 32-bit integers. */
  rng: Schema.Tuple([Int32, Int32, Int32, Int32]),
  x: TensorData,
  z: TensorData,
  adjoint: Schema.optionalKey(TensorData),
  xOptimizer: OptStateData,
  zOptimizer: OptStateData
})
export type Checkpoint = typeof Checkpoint.Type

const encodeTensor = (t: tf.Tensor): Effect.Effect<TensorData> =>
  Effect.map(readData<"float32" | "int32" | "bool">(t), (values) => ({
    dtype: t.dtype as TensorData["dtype"],
    shape: [...t.shape],
    data: Buffer.from(values.buffer, values.byteOffset, values.byteLength).toString("base64")
  }))

const encodeState = (state: OptState): Effect.Effect<OptStateData> =>
  Effect.forEach(state, (s): Effect.Effect<TensorData | OptStateData> => s instanceof tf.Tensor ? encodeTensor(s) : encodeState(s))

/** The checkpoint of `state` (one host read per tensor) with the generator's state `rng`. */
export const capture = (state: OuterState, rng: ReadonlyArray<number>): Effect.Effect<Checkpoint> =>
  Effect.map(
    Effect.all([
      encodeTensor(state.x),
      encodeTensor(state.z),
      encodeState(state.xOptimizer),
      encodeState(state.zOptimizer),
      state.adjoint === undefined ? Effect.succeed(undefined) : encodeTensor(state.adjoint)
    ]),
    ([x, z, xOptimizer, zOptimizer, adjoint]) => ({
      format: 1 as const,
      step: state.t,
      rng: [rng[0]!, rng[1]!, rng[2]!, rng[3]!] as const,
      x,
      z,
      ...(adjoint === undefined ? {} : { adjoint }),
      xOptimizer,
      zOptimizer
    })
  )

const arrays = { float32: Float32Array, int32: Int32Array, bool: Uint8Array } as const

/**
 * Reads `data` into a tensor shaped like `template`, or says why it does not fit.
 * (Tensors are made outside any tidy: the caller's tensor scope owns them.)
 */
const decodeTensor = (data: TensorData, template: tf.Tensor, what: string): tf.Tensor | string => {
  if (data.dtype !== template.dtype || data.shape.join(",") !== template.shape.join(",")) {
    return `${what} is ${data.dtype}[${data.shape}], this run's is ${template.dtype}[${template.shape}]`
  }
  const bytes = Buffer.from(data.data, "base64")
  const Typed = arrays[data.dtype]
  if (bytes.byteLength !== template.size * Typed.BYTES_PER_ELEMENT) {
    return `${what} holds ${bytes.byteLength} bytes, ${template.size * Typed.BYTES_PER_ELEMENT} expected`
  }
  // Copy into a fresh, aligned buffer: Node's Buffer may sit at any offset of a shared pool.
  const values = new Typed(new Uint8Array(bytes).buffer)
  return tf.tensor(values, template.shape, template.dtype)
}

const decodeState = (data: OptStateData, template: OptState, what: string): OptState | string => {
  if (data.length !== template.length) return `${what} has ${data.length} entries, this run's has ${template.length}`
  const out: Array<tf.Tensor | OptState> = []
  for (const [i, entry] of template.entries()) {
    const item = data[i]!
    const isTensor = !Array.isArray(item)
    const decoded = entry instanceof tf.Tensor
      ? isTensor ? decodeTensor(item as TensorData, entry, `${what}[${i}]`) : `${what}[${i}] is a list, a tensor expected`
      : isTensor
      ? `${what}[${i}] is a tensor, a list expected`
      : decodeState(item as OptStateData, entry, `${what}[${i}]`)
    if (typeof decoded === "string") {
      tf.dispose(out.flatMap((o) => o instanceof tf.Tensor ? [o] : []))
      return decoded
    }
    out.push(decoded)
  }
  return out
}

/**
 * The outer state saved in `checkpoint`, built with the tree, dtypes and shapes of `template` (the
 * initial state of a fresh run of the same task and method), which must all match.
 */
export const restore = (checkpoint: Checkpoint, template: OuterState, path: string): Effect.Effect<OuterState, RunRecordError> =>
  Effect.suspend(() => {
    const parts = [
      decodeTensor(checkpoint.x, template.x, "x"),
      decodeTensor(checkpoint.z, template.z, "z"),
      decodeState(checkpoint.xOptimizer, template.xOptimizer, "xOptimizer"),
      decodeState(checkpoint.zOptimizer, template.zOptimizer, "zOptimizer"),
      ...(template.adjoint === undefined
        ? []
        : [checkpoint.adjoint === undefined
          ? "it holds no adjoint v, which this run's method carries (warmAdjoint)"
          : decodeTensor(checkpoint.adjoint, template.adjoint, "adjoint")])
    ] as const
    const problem = parts.find((p): p is string => typeof p === "string")
    if (problem !== undefined) {
      tf.dispose(parts.flatMap((p) => typeof p === "string" ? [] : p instanceof tf.Tensor ? [p] : stateTensors(p)))
      return Effect.fail(new RunRecordError({ path, problem: `does not fit this run: ${problem}` }))
    }
    const [x, z, xOptimizer, zOptimizer, adjoint] = parts as unknown as [tf.Tensor, tf.Tensor, OptState, OptState, tf.Tensor?]
    return Effect.succeed({ t: checkpoint.step, x, z, ...(adjoint === undefined ? {} : { adjoint }), xOptimizer, zOptimizer })
  })

/** Writes `checkpoint` into the run directory `dir`, replacing the previous one atomically. */
export const write = (dir: string, checkpoint: Checkpoint) =>
  writeAtomically(`${dir}/${files.checkpoint}`, JSON.stringify(checkpoint))

/** The last checkpoint of run directory `dir`, or `undefined` when it has none. */
export const read = Effect.fnUntraced(function*(dir: string) {
  const fs = yield* FileSystem.FileSystem
  const path = `${dir}/${files.checkpoint}`
  const exists = yield* fs.exists(path).pipe(Effect.orElseSucceed(() => false))
  if (!exists) return undefined
  const text = yield* fs.readFileString(path).pipe(Effect.mapError(fileFailure(path, "read")))
  const json = yield* Effect.try({
    try: () => JSON.parse(text) as unknown,
    catch: () => new RunRecordError({ path, problem: "is not valid JSON: the checkpoint is corrupt" })
  })
  return yield* Schema.decodeUnknownEffect(Checkpoint)(json).pipe(
    Effect.mapError((e) => new RunRecordError({ path, problem: `is not a checkpoint: ${e.message}` }))
  )
})
