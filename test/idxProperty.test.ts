import { assert, describe, it } from "@effect/vitest"
import { Cause, Effect, Exit, Option } from "effect"
import fc from "fast-check"
import { gzipSync } from "node:zlib"
import { idx } from "./support/idxBytes.ts"
import { decodeIdx } from "../src/tasks/idx.ts"


const validIdx = fc.oneof(
  fc.tuple(fc.integer({ min: 1, max: 3 }), fc.integer({ min: 1, max: 4 }), fc.integer({ min: 1, max: 4 }))
    .chain(([n, rows, cols]) =>
      fc.uint8Array({ minLength: n * rows * cols, maxLength: n * rows * cols })
        .map((data) => idx(0x00000803, [n, rows, cols], data))
    ),
  fc.array(fc.integer({ min: 0, max: 9 }), { minLength: 1, maxLength: 8 }).map((labels) =>
    idx(0x00000801, [labels.length], labels)
  )
)

// Positions are drawn unbounded and taken modulo the current length, so a mutation always lands in the file.
type Mutation = (bytes: Uint8Array) => Uint8Array
const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.tuple(fc.nat(), fc.integer({ min: 1, max: 255 })).map(([at, mask]): Mutation => (bytes) => {
    const out = bytes.slice()
    if (out.length > 0) out[at % out.length] ^= mask
    return out
  }),
  fc.nat().map((keep): Mutation => (bytes) => bytes.slice(0, keep % (bytes.length + 1))),
  fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })).map(([at, byte]): Mutation => (bytes) => {
    const i = at % (bytes.length + 1)
    return new Uint8Array([...bytes.subarray(0, i), byte, ...bytes.subarray(i)])
  }),
  // The header (magic and dims) is where a wrong byte changes what the rest of the file means.
  fc.tuple(fc.integer({ min: 0, max: 15 }), fc.integer({ min: 0, max: 255 })).map(([at, byte]): Mutation => (bytes) => {
    const out = bytes.slice()
    if (at < out.length) out[at] = byte
    return out
  })
)

const gzip = (bytes: Uint8Array) => new Uint8Array(gzipSync(bytes))
const stages = {
  raw: (bytes: Uint8Array, mutate: Mutation) => mutate(bytes),
  "gzip of a mutated file": (bytes: Uint8Array, mutate: Mutation) => gzip(mutate(bytes)),
  "mutated gzip": (bytes: Uint8Array, mutate: Mutation) => mutate(gzip(bytes))
}

describe("decodeIdx on mutated files", () => {
  for (const [stage, encode] of Object.entries(stages)) {
    it(`${stage}: decodes consistently or fails with a DatasetError, never throws or dies`, () => {
      const outcomes = { decoded: 0, rejected: 0 }
      fc.assert(
        fc.property(validIdx, fc.array(mutation, { minLength: 1, maxLength: 4 }), (file, mutations) => {
          const bytes = encode(file, (b) => mutations.reduce((acc, m) => m(acc), b))
          const exit = Effect.runSync(Effect.exit(decodeIdx(bytes, "mutated.idx")))
          if (Exit.isSuccess(exit)) {
            const { dims, data } = exit.value
            assert.strictEqual(dims.reduce((a, b) => a * b, 1), data.length)
            assert.isTrue(dims.every((d) => Number.isInteger(d) && d > 0))
            if (dims.length === 1) assert.isTrue(data.every((label) => label <= 9))
            outcomes.decoded++
          } else {
            assert.isFalse(Cause.hasDies(exit.cause), "a defect escaped")
            const error = Cause.findErrorOption(exit.cause)
            assert.isTrue(Option.isSome(error) && error.value._tag === "DatasetError")
            outcomes.rejected++
          }
        }),
        { numRuns: 1500 }
      )
      // Both outcomes occur, so neither branch of the property is vacuous.
      assert.isAbove(outcomes.decoded, 0)
      assert.isAbove(outcomes.rejected, 0)
    })
  }
})
