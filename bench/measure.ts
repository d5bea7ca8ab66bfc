/**
 * Timing with warm-up and repetitions. Every sample records wall time and this process's CPU time
 * (user + system): the cpu and wasm backends compute on the calling thread, so on a loaded machine
 * CPU time stays close to what the wall time would be on an idle one, while wall time grows with
 * the load. Both are reported; the load average is recorded beside them.
 */
import * as tf from "@tensorflow/tfjs-core"
import { Effect } from "effect"

export interface Stats {
  readonly n: number
  readonly median: number
  readonly p25: number
  readonly p75: number
  readonly min: number
  readonly max: number
}

export interface Timing {
  readonly wallMs: Stats
  readonly cpuMs: Stats
}

const quantile = (sorted: ReadonlyArray<number>, q: number) => {
  const at = (sorted.length - 1) * q
  const below = Math.floor(at)
  const above = Math.ceil(at)
  return sorted[below]! + (sorted[above]! - sorted[below]!) * (at - below)
}

export const stats = (values: ReadonlyArray<number>): Stats => {
  const sorted = [...values].sort((a, b) => a - b)
  return {
    n: sorted.length,
    median: quantile(sorted, 0.5),
    p25: quantile(sorted, 0.25),
    p75: quantile(sorted, 0.75),
    min: sorted[0]!,
    max: sorted[sorted.length - 1]!
  }
}

const cpuNow = () => {
  const { system, user } = process.cpuUsage()
  return (user + system) / 1000
}

export interface Sample<A> {
  readonly value: A
  readonly wallMs: number
  readonly cpuMs: number
}

/** Runs `effect` once, timed. */
export const timed = <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<Sample<A>, E, R> =>
  Effect.suspend(() => {
    const wall = performance.now()
    const cpu = cpuNow()
    return Effect.map(effect, (value) => ({ value, wallMs: performance.now() - wall, cpuMs: cpuNow() - cpu }))
  })

export const timing = (samples: ReadonlyArray<Sample<unknown>>): Timing => ({
  wallMs: stats(samples.map((s) => s.wallMs)),
  cpuMs: stats(samples.map((s) => s.cpuMs))
})

export interface Repetitions {
  readonly warmup: number
  readonly reps: number
}

/**
 * `warmup` untimed runs, then `reps` timed ones. After each timed run, `release` frees its result
 * and the tensors still alive above the count before the first run are recorded (0 when nothing leaks).
 */
export const repeat = <A, E, R>(
  effect: Effect.Effect<A, E, R>,
  release: (a: A) => void,
  { reps, warmup }: Repetitions
) =>
  Effect.gen(function*() {
    for (let i = 0; i < warmup; i++) release(yield* effect)
    const baseline = tf.memory().numTensors
    const samples: Array<Sample<A>> = []
    const tensorsAfter: Array<number> = []
    for (let i = 0; i < reps; i++) {
      const sample = yield* timed(effect)
      samples.push(sample)
      release(sample.value)
      tensorsAfter.push(tf.memory().numTensors - baseline)
    }
    return { samples, tensorsAfter, timing: timing(samples) }
  })
