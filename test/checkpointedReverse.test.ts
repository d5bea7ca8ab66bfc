/**
 * What reverse mode stores. `reverse({ checkpointEvery: c })` keeps y_0, every c-th iterate and y_k̄,
 * recomputes each segment when the reverse pass reaches it, and must give the hypergradient of plain
 * `reverse()` — for RHG, T-RHG, PTT and min-residual selections, auxiliary-init and dynamics with
 * auxiliary state, on the autodiff and on the hand-written VJP path — with less memory. T-RHG
 * (`lastM`) keeps only the M + 1 iterates it differentiates through.
 */
import { assert, layer } from "@effect/vitest"
import * as tf from "@tensorflow/tfjs-core"
import { Effect } from "effect"
import { gradientDescent, nesterovMomentum } from "../src/dynamics/Dynamics.ts"
import { iterateY } from "../src/dynamics/Iterate.ts"
import { take, unroll } from "../src/dynamics/iterates.ts"
import { last, pessimistic, type Retention } from "../src/dynamics/selection.ts"
import * as Backend from "../src/runtime/Backend.ts"
import { reverse } from "../src/solvers/reverse.ts"
import * as Solver from "../src/solvers/Solver.ts"
import { atPoint, pulledTowards } from "./support/lowerLevel.ts"
import { smoothProblem } from "./support/smoothProblem.ts"
import { vectorValue } from "./support/tf.ts"

const relativeError = (a: ReadonlyArray<number>, b: ReadonlyArray<number>) =>
  Math.hypot(...a.map((ai, i) => ai - b[i]!)) / Math.max(Math.hypot(...b), 1e-12)

/** gradX, gradZ, k̄, cost of one hypergradient, read to the host; its tensors released. */
const hypergradient = (solver: Solver.Bounded, problem: ReturnType<typeof smoothProblem>["problem"], x: tf.Tensor, y0: tf.Tensor) =>
  Effect.map(Solver.solve(solver, problem, x, y0), (s) => {
    const result = { x: vectorValue(s.gradX), z: vectorValue(s.gradZ), kbar: s.kbar, cost: s.cost }
    tf.dispose([s.gradX, s.gradZ, s.y])
    return result
  })

layer(Backend.layer("cpu"))("checkpointed reverse", (it) => {
  const K = 23
  const variants = [1, 2, 5, K, K + 4]
  const solvers = {
    rhg: Solver.make(gradientDescent({ lr: 0.3 })).pipe(Solver.take(K)),
    "ia-gm (momentum)": Solver.make(nesterovMomentum({ lr: 0.2, momentum: 0.5 })).pipe(Solver.auxiliaryInit, Solver.take(K)),
    "iaptt-gm": Solver.make(gradientDescent({ lr: 0.3 })).pipe(Solver.auxiliaryInit, Solver.take(K), Solver.truncatePessimistic),
    "min-residual": Solver.make(gradientDescent({ lr: 0.3 })).pipe(Solver.take(K), Solver.truncateAtMinResidual(0.3))
  }

  it.effect("gives plain reverse's hypergradient for every c, selection and VJP path", () =>
    Effect.gen(function*() {
      const { autodiff, problem, x0, y0 } = smoothProblem({ dimX: 3, dimY: 6 })
      for (const [name, solver] of Object.entries(solvers)) {
        for (const p of [problem, autodiff]) {
          const plain = yield* hypergradient(solver, p, x0, y0)
          for (const c of variants) {
            const checkpointed = yield* hypergradient(solver.pipe(Solver.hypergradient(reverse({ checkpointEvery: c }))), p, x0, y0)
            const what = `${name}, c = ${c}, ${p === problem ? "hand-written" : "autodiff"} VJP`
            assert.strictEqual(checkpointed.kbar, plain.kbar, what)
            assert.isBelow(relativeError(checkpointed.x, plain.x), 1e-6, what)
            assert.isBelow(relativeError(checkpointed.z, plain.z), 1e-6, what)
            assert.deepStrictEqual(
              [checkpointed.cost.innerSteps, checkpointed.cost.reverseSteps],
              [plain.cost.innerSteps, plain.cost.reverseSteps],
              what
            )
          }
        }
      }
      const ptt = yield* hypergradient(solvers["iaptt-gm"], problem, x0, y0)
      assert.isTrue(ptt.kbar > 1 && ptt.kbar < K, `an interior PTT index, got ${ptt.kbar}`)
    }))

  it.effect("T-RHG keeping only its window, or checkpoints, equals T-RHG on the whole prefix", () =>
    Effect.gen(function*() {
      const { problem, x0, y0 } = smoothProblem({ dimX: 3, dimY: 6 })
      // T-RHG never reaches a learned z (its strategy is typed `none`): PTT here is on a fixed y_0.
      const ptt = Solver.make(gradientDescent({ lr: 0.3 })).pipe(Solver.take(K), Solver.truncatePessimistic)
      for (const base of [solvers.rhg, ptt]) {
        for (const lastM of [1, 7, K, K + 3]) {
          // Checkpointing every step keeps every iterate: the reference.
          const whole = yield* hypergradient(base.pipe(Solver.hypergradient(reverse({ lastM, checkpointEvery: 1 }))), problem, x0, y0)
          const windowed = yield* hypergradient(base.pipe(Solver.hypergradient(reverse({ lastM }))), problem, x0, y0)
          const checkpointed = yield* hypergradient(base.pipe(Solver.hypergradient(reverse({ lastM, checkpointEvery: 4 }))), problem, x0, y0)
          for (const other of [windowed, checkpointed]) {
            assert.strictEqual(other.kbar, whole.kbar)
            assert.strictEqual(other.cost.reverseSteps, Math.min(lastM, whole.kbar))
            assert.isBelow(relativeError(other.x, whole.x), 1e-6, `lastM ${lastM}`)
            assert.deepStrictEqual(other.z, whole.z, `lastM ${lastM}`)
          }
        }
      }
    }))

  it.effect("stores O(K/c + c) iterates instead of O(K), and leaks no tensor", () =>
    Effect.gen(function*() {
      const { problem: linearized, x0, y0 } = smoothProblem({ dimX: 4, dimY: 20_000 })
      const { lowerLinearization: _, ...problem } = linearized
      const solver = Solver.make(gradientDescent({ lr: 0.3 })).pipe(Solver.take(60))
      const before = tf.memory().numTensors
      // Without residuals an iterate is y (80 kB); with them it also holds sin(y), as large.
      for (const [p, iterate] of [[problem, 20_000 * 4], [linearized, 2 * 20_000 * 4]] as const) {
        const plain = yield* hypergradient(solver, p, x0, y0)
        const checkpointed = yield* hypergradient(solver.pipe(Solver.hypergradient(reverse({ checkpointEvery: 8 }))), p, x0, y0)
        assert.strictEqual(tf.memory().numTensors, before)
        // Plain: 61 iterates. Checkpointed: 8 checkpoints, y_60, a segment of 7.
        assert.isAbove(plain.cost.peakBytes, 60 * iterate)
        assert.isBelow(checkpointed.cost.peakBytes, 22 * iterate)
        assert.isBelow(relativeError(checkpointed.x, plain.x), 1e-6)
        // T-RHG with M = 5 holds y_55 … y_60 (and the step being taken).
        const truncated = yield* hypergradient(solver.pipe(Solver.hypergradient(reverse({ lastM: 5 }))), p, x0, y0)
        assert.isBelow(truncated.cost.peakBytes, 12 * iterate)
        assert.strictEqual(tf.memory().numTensors, before)
      }
    }))

  it.effect("selections keep y_0, the checkpoints and y_k̄, or the window before y_k̄, only", () =>
    Effect.gen(function*() {
      const keptKs = (selection: typeof last, retention: Retention) =>
        atPoint(
          pulledTowards(0.3),
          0,
          selection.select(take(10)(unroll(gradientDescent({ lr: 0.5 }), tf.tensor1d([1]))), retention)
        ).pipe(Effect.map((t) => ({ ks: t.prefix.map((i) => i.k), selected: t.selected.k, y: vectorValue(iterateY(t.selected))[0]! })))
      assert.deepStrictEqual(yield* keptKs(last, { checkpointEvery: 4 }), { ks: [0, 4, 8, 10], selected: 10, y: 0.5 ** 10 })
      assert.deepStrictEqual(yield* keptKs(last, { checkpointEvery: 5 }), { ks: [0, 5, 10], selected: 10, y: 0.5 ** 10 })
      assert.deepStrictEqual(yield* keptKs(last, { window: 3 }), { ks: [7, 8, 9, 10], selected: 10, y: 0.5 ** 10 })
      // y_k = 0.5^k; F = −(y − 0.3)² peaks at y_2 = 0.25.
      assert.deepStrictEqual(yield* keptKs(pessimistic, { checkpointEvery: 4 }), { ks: [0, 2], selected: 2, y: 0.25 })
      assert.deepStrictEqual(yield* keptKs(pessimistic, { checkpointEvery: 1 }), { ks: [0, 1, 2], selected: 2, y: 0.25 })
      assert.deepStrictEqual(yield* keptKs(pessimistic, { window: 1 }), { ks: [1, 2], selected: 2, y: 0.25 })
      assert.deepStrictEqual(yield* keptKs(pessimistic, { window: 5 }), { ks: [0, 1, 2], selected: 2, y: 0.25 })
    }))
})
