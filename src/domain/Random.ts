/**
 * Counter-based randomness: every random choice inside a run is a pure function of where it is used,
 * (run seed, outer step t, episode b, purpose, inner step k), never of the order of earlier draws.
 * So a minibatch ξ_{t,k} is regenerated, not stored: the forward stream, a reverse pass recomputing a
 * checkpointed segment, gradcheck's perturbed pipelines and replay all see the same one.
 *
 *     const xi = Random.random(Random.path(Random.key(seed), t, "lower", k))   // a RandomSource
 *
 * A key is a xoroshiro128+ state (pure-rand's generator, the one `Rng` uses); `foldIn` mixes one datum
 * into it and takes four outputs of the generator as the child key, as JAX's `fold_in` does with
 * threefry. The outputs, not the state: xoroshiro's state transition (and its `jump`) is linear over
 * GF(2), so children made by jumping would be linearly related; its `+` output is not. pure-rand has no
 * counter-based generator of its own, and no maintained JS library offers one with a key API.
 */
import { dual } from "effect/Function"
import { xoroshiro128plus, xoroshiro128plusFromState } from "pure-rand/generator/xoroshiro128plus"
import { make, type RandomSource } from "./Rng.ts"

/** A position in the tree of draws: four 32-bit integers. */
export interface Key {
  readonly state: readonly [number, number, number, number]
}

/** The root key of a run. */
export const key = (seed: number): Key => ({ state: fromGenerator(xoroshiro128plus(seed), 8) })

/** The child key for `data` (an index or a purpose name). */
export const foldIn: {
  (data: number | string): (self: Key) => Key
  (self: Key, data: number | string): Key
} = dual(2, (self: Key, data: number | string): Key => {
  const [hi, lo] = typeof data === "number" ? numberWords(data) : [stringHash(data), 0x5bd1e995]
  const [s0, s1, s2, s3] = self.state
  return { state: fromGenerator(xoroshiro128plusFromState([s0 ^ hi, s1 ^ lo, s2, s3 ^ (typeof data === "string" ? 1 : 0)]), 4) }
})

/** The key at `path` below `self`: foldIn of each datum in turn. */
export const path = (self: Key, ...data: ReadonlyArray<number | string>): Key => data.reduce(foldIn, self)

/** A fresh random source drawing from `self`: the same key always gives the same draws. */
export const random = (self: Key): RandomSource => make(self.state)

/** Warms a generator up `skip` outputs, then takes four outputs as the next state (never all zero). */
const fromGenerator = (
  generator: { next: () => number },
  skip: number
): readonly [number, number, number, number] => {
  for (let i = 0; i < skip; i++) generator.next()
  const state = [generator.next(), generator.next(), generator.next(), generator.next()] as const
  return state.every((s) => s === 0) ? [1, 0, 0, 0] : state
}

/** A non-negative integer index as two 32-bit words (exact up to 2^53). */
const numberWords = (n: number): readonly [number, number] => {
  if (!Number.isSafeInteger(n) || n < 0) throw new RangeError(`Random.foldIn: ${n} is not a non-negative integer index`)
  return [Math.floor(n / 0x100000000) | 0, n | 0]
}

/** FNV-1a over UTF-16 code units: purpose names are short and few. */
const stringHash = (s: string): number => {
  let h = 0x811c9dc5
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193)
  return h | 0
}
