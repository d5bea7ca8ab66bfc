/**
 * The one seeded random source of a run (docs/design.md, Determinism): inits, splits, corruption,
 * minibatches and episodes all draw from it, in a fixed order, so a run is a function of its seed.
 * Its state can be saved and restored, so a resumed run draws what the uninterrupted one would.
 *
 * Built on pure-rand's xoroshiro128+ (the generator fast-check uses): small, fast, and its state
 * is four 32-bit integers.
 */
import { Context, Layer } from "effect"
import { uniformFloat64 } from "pure-rand/distribution/uniformFloat64"
import { uniformInt } from "pure-rand/distribution/uniformInt"
import { xoroshiro128plus, xoroshiro128plusFromState } from "pure-rand/generator/xoroshiro128plus"

export interface RandomSource {
  /** Uniform in [0, 1). */
  readonly uniform: () => number
  /** Uniform integer in [from, to], both included. */
  readonly int: (from: number, to: number) => number
  /** Standard normal (Box–Muller). */
  readonly normal: () => number
  /** n draws of `draw`, as float32. */
  readonly array: (n: number, draw: () => number) => Float32Array
  /** A uniformly random permutation of 0 … n−1 (Fisher–Yates). */
  readonly permutation: (n: number) => Int32Array
  /** The generator's state, for checkpoints. */
  readonly state: () => ReadonlyArray<number>
  /**
   * Continues from a saved {@link state}. A resumed run rebuilds its task from the seed first (the
   * task may draw its data in `make`), then restores, so it draws what the uninterrupted run drew.
   */
  readonly restore: (state: ReadonlyArray<number>) => void
}

export const make = (seedOrState: number | ReadonlyArray<number>): RandomSource => {
  let rng = typeof seedOrState === "number" ? xoroshiro128plus(seedOrState) : xoroshiro128plusFromState(seedOrState)
  const uniform = () => uniformFloat64(rng)
  const int = (from: number, to: number) => uniformInt(rng, from, to)
  return {
    uniform,
    int,
    normal: () => {
      const u = 1 - uniform()
      return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * uniform())
    },
    array: (n, draw) => Float32Array.from({ length: n }, draw),
    permutation: (n) => {
      const p = Int32Array.from({ length: n }, (_, i) => i)
      for (let i = n - 1; i > 0; i--) {
        const j = int(0, i)
        const t = p[i]!
        p[i] = p[j]!
        p[j] = t
      }
      return p
    },
    state: () => rng.getState(),
    restore: (state) => {
      rng = xoroshiro128plusFromState(state)
    }
  }
}

export class Rng extends Context.Service<Rng, RandomSource>()("effect-bilevel/domain/Rng") {
  static readonly layer = (seed: number) => Layer.sync(Rng, () => make(seed))
}
