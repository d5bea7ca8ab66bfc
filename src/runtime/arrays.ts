/**
 * A run's learned variables in NumPy's .npy format (written with npyjs), for any tool to load:
 * `numpy.load("runs/…/x.npy")`. x.npy and z.npy hold the UL variable and the LL initialization
 * after the last saved outer step; y.npy the LL weights y_k̄ that step's UL objective used. They are
 * written with every checkpoint and when the run ends, each replaced atomically.
 */
import type * as tf from "@tensorflow/tfjs-core"
import { Effect, FileSystem } from "effect"
import { dump, parse } from "npyjs"
import { RunRecordError } from "../domain/errors.ts"
import { readData } from "../domain/tensors.ts"
import { writeAtomically } from "./RunRecord.ts"

export const arrayNames = ["x", "z", "y"] as const
export type ArrayName = typeof arrayNames[number]

export const arrayFile = (name: ArrayName) => `${name}.npy`

/** Writes x, z and y into run directory `dir`. */
export const write = (dir: string, arrays: Record<ArrayName, tf.Tensor>) =>
  Effect.forEach(arrayNames, (name) =>
    Effect.flatMap(readData(arrays[name]), (values) =>
      writeAtomically(`${dir}/${arrayFile(name)}`, new Uint8Array(dump(values, [...arrays[name].shape])))), { discard: true })

/** The array `name` of run directory `dir`, as its values and shape. */
export const read = Effect.fnUntraced(function*(dir: string, name: ArrayName) {
  const fs = yield* FileSystem.FileSystem
  const path = `${dir}/${arrayFile(name)}`
  const bytes = yield* fs.readFile(path).pipe(
    Effect.mapError(() => new RunRecordError({ path, problem: "cannot be read (the run saved no arrays yet?)" }))
  )
  const array = yield* Effect.try({
    try: () => parse(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer),
    catch: (e) => new RunRecordError({ path, problem: `is not a .npy file: ${(e as Error).message}` })
  })
  return { values: Array.from(array.data as Float32Array), shape: array.shape }
})
