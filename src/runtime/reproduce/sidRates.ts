/**
 * SID (Grazzi, Pontil, Salzo, AISTATS 2021): the mean-square error of the stochastic hypergradient
 * against the float64 exact one on synthetic logistic-regression HPO, as the LL iterations t and the
 * adjoint iterations k grow (log-log, fitted slopes), the rate break under a constant step and under
 * a β below the threshold β(1 − q²) > 1, and the cost to reach relative error 1e-2 of SID (two batch
 * sizes), AID-FP and RHG as the training set grows.
 *
 * Every hypergradient is one `Solver.solve` of the method's preset at λ_0, its minibatches drawn
 * below `Random.key(seed)`; the exact one is src/tasks/logreg/exact.ts. Nothing here runs an outer loop.
 */
import { Effect, FileSystem, Schema } from "effect"
import * as Random from "../../domain/Random.ts"
import { make as makeRandom, Rng } from "../../domain/Rng.ts"
import type { HypergradientFailed, InvalidSolver } from "../../domain/errors.ts"
import { choice, count, positive, rate } from "../../domain/settings.ts"
import { readVector } from "../../domain/tensors.ts"
import { aidFp, type Method, rhg, sid } from "../../solvers/methods.ts"
import { solve } from "../../solvers/Solver.ts"
import { synthetic, widen } from "../../tasks/logreg/data.ts"
import { decays, hessianAt, lowerSolution } from "../../tasks/logreg/exact.ts"
import { logregHpo } from "../../tasks/logregHpo.ts"
import type { TaskInstance } from "../../tasks/Task.ts"
import { Backend } from "../Backend.ts"
import { renderSvg, svgToPng } from "../plot.ts"
import { define } from "./Experiment.ts"
import { machine, show, table, writeReport } from "./report.ts"

/** A comma-separated list of numbers (`--set sizes=1000,3000`; a single number arrives parsed as one). */
const list = (value: string, description: string) =>
  Schema.Union([Schema.String, Schema.Finite]).pipe(Schema.withDecodingDefaultKey(Effect.succeed(value))).annotate({ description, default: value })

const numbers = (text: string | number) => `${text}`.split(",").map((s) => Number(s.trim()))

const Settings = Schema.Struct({
  parts: choice(["all", "rates", "cost"], "all", "measure the rates, the cost comparison, or both (two processes can share the work)"),
  trainSize: count(1000, "training examples n of the rate measurements"),
  features: count(20, "synthetic features p"),
  lambda0: Schema.Finite.pipe(Schema.withDecodingDefaultKey(Effect.succeed(-2))).annotate({ description: "λ at which every hypergradient is taken", default: -2 }),
  innerLr: positive(1, "α of the map Φ̂(w) = w − α∇f̂(w)"),
  batch: count(10, "minibatch size B of the rate measurements"),
  beta: positive(8, "β of η_t = β/(γ + t), above the threshold"),
  gamma: positive(16, "γ of η_t = β/(γ + t)"),
  smallBeta: positive(0.5, "β of the too-small-β run (β(1 − q²) ≤ 1)"),
  smallGamma: positive(1, "γ of the too-small-β run"),
  constantEta: rate(0.5, "η of the constant-step run"),
  grid: list("10,30,100,300,1000", "t (and k) of the rate curves"),
  large: count(1000, "k of the MSE-vs-t curve and t of the MSE-vs-k curve"),
  fitFrom: count(30, "smallest t (k) of the slope fit"),
  fitTo: count(300, "largest t (k) of the slope fit"),
  sizes: list("1000,10000,200000", "training-set sizes n of the cost comparison"),
  costBatches: list("10,100", "SID batch sizes of the cost comparison"),
  costSeeds: count(3, "seeds whose root-mean-square error must reach the target (SID)"),
  target: positive(1e-2, "relative error the cost comparison asks for"),
  maxSteps: count(4096, "largest t = k (SID), K (RHG) or t = fpIters + 1 (AID-FP) the cost search tries")
})
type Settings = typeof Settings.Type

/** A task instance of synthetic logreg-hpo; its tensors live in the caller's scope. */
const instanceOf = (settings: Settings, n: number, batch: number) =>
  Effect.gen(function*() {
    const decoded = yield* Schema.decodeUnknownEffect(logregHpo.settings)({
      trainSize: n,
      valSize: 500,
      testSize: 1,
      features: settings.features,
      lambda0: settings.lambda0,
      lowerBatch: batch
    }).pipe(Effect.orDie)
    return yield* logregHpo.make(decoded).pipe(Effect.provide(Rng.layer(0)), Effect.orDie)
  })

/** A method's dF/dλ at λ_0 with its minibatches below seed `seed`, and the milliseconds it took. */
const estimate = (task: TaskInstance, method: Method, inner: { innerSteps: number; innerLr: number }, settings: Record<string, unknown>, seed: number) =>
  Effect.gen(function*() {
    const solver = method.build(inner, yield* Schema.decodeUnknownEffect(method.settings)(settings).pipe(Effect.orDie))
    const started = performance.now()
    const solution = yield* solve(solver, task.problem, task.x0, task.y0, Random.key(seed))
    const [g] = yield* readVector(solution.gradX)
    return { g: g!, ms: performance.now() - started }
  })

/** Least-squares slope of log10 y against log10 x. */
export const logLogSlope = (points: ReadonlyArray<readonly [number, number]>): number => {
  const xs = points.map(([x]) => Math.log10(x))
  const ys = points.map(([, y]) => Math.log10(y))
  const mx = xs.reduce((s, v) => s + v, 0) / xs.length
  const my = ys.reduce((s, v) => s + v, 0) / ys.length
  const sxy = xs.reduce((s, x, i) => s + (x - mx) * (ys[i]! - my), 0)
  const sxx = xs.reduce((s, x) => s + (x - mx) ** 2, 0)
  return sxy / sxx
}

/** q = max(|1 − αμ|, |1 − αL|): the contraction of the full-batch map at w*, μ and L by power iteration. */
const contraction = (settings: Settings, n: number) => {
  // The task's synthetic data (dataSeed 0, its default noise and signal), drawn again.
  const data = synthetic(makeRandom(0), { trainSize: n, valSize: 500, testSize: 1, features: settings.features, noise: 0.1, scale: 3 })
  const train = widen(data.train)
  const lambda = [settings.lambda0]
  const hessian = hessianAt(train, decays(lambda, train.p), lowerSolution(train, lambda))
  const power = (apply: (v: Float64Array) => Float64Array) => {
    let v = Float64Array.from({ length: train.p }, (_, j) => 1 + j / train.p)
    let value = 0
    for (let i = 0; i < 500; i++) {
      const hv = apply(v)
      const norm = Math.hypot(...hv)
      value = hv.reduce((s, h, j) => s + h * v[j]!, 0) / v.reduce((s, x) => s + x * x, 0)
      v = hv.map((h) => h / norm)
    }
    return value
  }
  const largest = power(hessian)
  const smallest = largest - power((v) => hessian(v).map((h, j) => largest * v[j]! - h))
  return { mu: smallest, L: largest, q: Math.max(Math.abs(1 - settings.innerLr * smallest), Math.abs(1 - settings.innerLr * largest)) }
}


interface Curve {
  readonly name: string
  readonly points: ReadonlyArray<readonly [number, number]>
}

const figure = Effect.fnUntraced(function*(out: string, name: string, title: string, xTitle: string, yTitle: string, curves: ReadonlyArray<Curve>) {
  const fs = yield* FileSystem.FileSystem
  const values = curves.flatMap((c) => c.points.filter(([, y]) => y > 0).map(([x, y]) => ({ series: c.name, x, y })))
  const svg = yield* renderSvg({
    title,
    width: 480,
    height: 300,
    data: { values },
    config: { font: "Helvetica, Arial, DejaVu Sans, Liberation Sans, sans-serif" },
    mark: { type: "line", point: true },
    encoding: {
      x: { field: "x", type: "quantitative", title: xTitle, scale: { type: "log" } },
      y: { field: "y", type: "quantitative", title: yTitle, scale: { type: "log" } },
      color: { field: "series", type: "nominal", title: "", scale: { domain: curves.map((c) => c.name) } }
    }
  })
  yield* fs.writeFileString(`${out}/${name}.svg`, svg)
  yield* fs.writeFile(`${out}/${name}.png`, yield* svgToPng(svg))
  return `![${title}](${name}.png)`
})

export const sidRates = define({
  name: "sid-rates",
  description: "SID (AISTATS 2021): MSE of the stochastic hypergradient vs t and k (log-log, fitted slopes), the rate " +
    "break, and the cost to relative error 1e-2 of SID, AID-FP and RHG as n grows (synthetic logreg-hpo)",
  defaultBackend: "cpu",
  defaultSeeds: Array.from({ length: 20 }, (_, i) => i),
  settings: Settings,
  run: (options) =>
    Effect.gen(function*() {
      const started = performance.now()
      const backend = yield* Backend
      const fs = yield* FileSystem.FileSystem
      const s = options.settings
      yield* fs.makeDirectory(options.out, { recursive: true })
      const measured: Record<string, unknown> = {}
      const save = (key: string, value: unknown) =>
        Effect.flatMap(Effect.sync(() => (measured[key] = value)), () =>
          fs.writeFileString(`${options.out}/measurements.json`, JSON.stringify(measured, null, 1) + "\n"))

      const { L, mu, q } = contraction(s, s.trainSize)
      yield* save("contraction", { mu, L, q, betaTimes: { above: s.beta * (1 - q * q), small: s.smallBeta * (1 - q * q) } })
      const grid = numbers(s.grid)

      // MSE over the seeds of SID with η from `schedule`, at (t, k).
      const rates = Effect.gen(function*() {
        const task = yield* instanceOf(s, s.trainSize, s.batch)
        const exact = task.exactHypergradient!(yield* readVector(task.x0))[0]!
        const mse = (t: number, k: number, steps: Record<string, unknown>) =>
          Effect.gen(function*() {
            let total = 0
            for (const seed of options.seeds) {
              const { g } = yield* estimate(task, sid, { innerSteps: t, innerLr: s.innerLr }, { ...steps, adjointSteps: k }, seed)
              total += (g - exact) ** 2
            }
            yield* options.progress(`t=${t} k=${k} ${JSON.stringify(steps)}: MSE ${(total / options.seeds.length).toExponential(3)}`)
            return total / options.seeds.length
          })
        const above = { sidSchedule: "decreasing", sidBeta: s.beta, sidGamma: s.gamma }
        const series = [
          { key: "t, β above", steps: above, along: "t" },
          { key: "k, β above", steps: above, along: "k" },
          { key: "t, constant η", steps: { sidSchedule: "constant", sidBeta: s.constantEta, sidGamma: 1 }, along: "t" },
          { key: "t, β too small", steps: { sidSchedule: "decreasing", sidBeta: s.smallBeta, sidGamma: s.smallGamma }, along: "t" }
        ] as const
        const curves: Array<Curve> = []
        for (const c of series) {
          const points: Array<readonly [number, number]> = []
          for (const x of grid) points.push([x, yield* mse(c.along === "t" ? x : s.large, c.along === "k" ? x : s.large, c.steps)])
          curves.push({ name: c.key, points })
          yield* save("rates", { exact, curves })
        }
        return { exact, curves }
      }).pipe(Effect.scoped)
      const { curves, exact } = s.parts === "cost" ? { curves: [], exact: NaN } : yield* rates

      // The cheapest point of a doubling grid whose relative error meets the target.
      const cost = Effect.gen(function*() {
        const rows: Array<Record<string, number | string>> = []
        for (const n of numbers(s.sizes)) {
          const sized = Effect.gen(function*() {
            const full = yield* instanceOf(s, n, 0)
            const truth = full.exactHypergradient!(yield* readVector(full.x0))[0]!
            const relative = (g: number) => Math.abs(g - truth) / Math.abs(truth)
            const search = function*(evaluate: (steps: number) => Effect.Effect<{ error: number; ms: number; evaluations: number }, HypergradientFailed | InvalidSolver>) {
              for (let steps = 16; steps <= s.maxSteps; steps *= 2) {
                const r = yield* evaluate(steps)
                if (r.error <= s.target) return { steps, ...r }
              }
              return { steps: NaN, error: NaN, ms: NaN, evaluations: NaN }
            }
            const deterministic = (method: Method, evaluations: (steps: number) => number, settingsOf: (steps: number) => Record<string, unknown>) =>
              Effect.gen(function*() {
                return yield* search((steps) =>
                  Effect.map(estimate(full, method, { innerSteps: steps, innerLr: s.innerLr }, settingsOf(steps), 0), ({ g, ms }) => ({
                    error: relative(g),
                    ms,
                    evaluations: evaluations(steps)
                  }))
                )
              })
            // AID-FP: t LL steps and t − 1 fixed-point terms (t products), then Bᵀv: n each.
            const aid = yield* deterministic(aidFp, (t) => n * (2 * t + 1), (t) => ({ fpIters: t - 1 }))
            rows.push({ n, method: "aid-fp", ...aid })
            yield* options.progress(`n=${n} aid-fp: ${JSON.stringify(aid)}`)
            // RHG: K forward gradients and K reverse Hessian-vector products.
            const reverse = yield* deterministic(rhg, (k) => n * 2 * k, () => ({}))
            rows.push({ n, method: "rhg", ...reverse })
            yield* options.progress(`n=${n} rhg: ${JSON.stringify(reverse)}`)
            for (const batch of numbers(s.costBatches)) {
              const task = yield* instanceOf(s, n, batch)
              const found = yield* search((steps) =>
                Effect.gen(function*() {
                  let squares = 0
                  let ms = 0
                  for (let seed = 0; seed < s.costSeeds; seed++) {
                    const r = yield* estimate(task, sid, { innerSteps: steps, innerLr: s.innerLr }, { sidSchedule: "decreasing", sidBeta: s.beta, sidGamma: s.gamma, adjointSteps: steps }, seed)
                    squares += (r.g - truth) ** 2
                    ms += r.ms
                  }
                  // t LL draws, k − 1 adjoint draws and the one for Bᵀv: B examples each.
                  return { error: Math.sqrt(squares / s.costSeeds) / Math.abs(truth), ms: ms / s.costSeeds, evaluations: batch * 2 * steps }
                })
              )
              rows.push({ n, method: `sid B=${batch}`, ...found })
              yield* options.progress(`n=${n} sid B=${batch}: ${JSON.stringify(found)}`)
            }
            yield* save("cost", rows)
          }).pipe(Effect.scoped)
          yield* sized
        }
        return rows
      })
      const rows = s.parts === "rates" ? [] : yield* cost

      const fitted = (c: Curve) => logLogSlope(c.points.filter(([x]) => x >= s.fitFrom && x <= s.fitTo))
      const slopeT = curves.length === 0 ? NaN : fitted(curves[0]!)
      const slopeK = curves.length === 0 ? NaN : fitted(curves[1]!)
      const methods = [...new Set(rows.map((r) => r.method as string))]
      const byMethod = (key: string) => methods.map((m) => ({ name: m, points: rows.filter((r) => r.method === m && Number.isFinite(r[key] as number)).map((r) => [r.n as number, r[key] as number] as const) }))
      const crossover = (key: "evaluations" | "ms") => {
        const sidRows = rows.filter((r) => r.method === "sid B=100")
        const beyond = sidRows.find((_, i) =>
          sidRows.slice(i).every((later) => (later[key] as number) < (rows.find((a) => a.method === "aid-fp" && a.n === later.n)![key] as number))
        )
        return beyond === undefined ? "not within the sizes measured" : `n = ${beyond.n}`
      }
      const rateFigure = curves.length === 0 ? "" : yield* figure(options.out, "mse-vs-t", `MSE of SID vs LL iterations t (k = ${s.large}, B = ${s.batch})`, "t", "MSE", curves.filter((c) => c.name.startsWith("t")))
      const kFigure = curves.length === 0 ? "" : yield* figure(options.out, "mse-vs-k", `MSE of SID vs adjoint iterations k (t = ${s.large}, B = ${s.batch})`, "k", "MSE", curves.filter((c) => c.name.startsWith("k")))
      const evalFigure = rows.length === 0 ? "" : yield* figure(options.out, "cost-evaluations", `Per-example evaluations to relative error ${s.target}`, "n", "per-example evaluations", byMethod("evaluations"))
      const timeFigure = rows.length === 0 ? "" : yield* figure(options.out, "cost-time", `Wall time (ms) to relative error ${s.target}`, "n", "ms", byMethod("ms"))
      const wallMs = performance.now() - started
      const checks = curves.length === 0 ? [] : [
        { name: "slope of MSE vs t ≤ −0.9 (β above the threshold)", passed: slopeT <= -0.9, detail: show(slopeT, 3) },
        { name: "slope of MSE vs k ≤ −0.9 (β above the threshold)", passed: slopeK <= -0.9, detail: show(slopeK, 3) }
      ]
      const report = yield* writeReport(options.out, [
        "# SID: rates of the stochastic hypergradient and its cost against AID-FP and RHG",
        "Synthetic L2-regularized logistic-regression HPO (`logreg-hpo`, dataSeed 0), the hypergradient dF/dλ at λ = " +
        `${s.lambda0}, against the float64 exact one (Newton–CG and an adjoint solve) ${show(exact, 6)}.`,
        `- Command: \`${options.command}\``,
        `- Backend: ${backend.name}; machine: ${machine()}`,
        `- Seeds: ${options.seeds.join(", ")}`,
        `- Settings: \`${JSON.stringify(s)}\``,
        `- Wall time: ${(wallMs / 1000).toFixed(0)} s, finished ${new Date().toISOString()}`,
        "## Contraction and threshold",
        `Full-batch Hessian at w*: μ = ${show(mu, 4)}, L = ${show(L, 4)}; q = max(|1 − αμ|, |1 − αL|) = ${show(q, 4)} with α = ${s.innerLr}. ` +
        `β(1 − q²) = ${show(s.beta * (1 - q * q), 3)} for β = ${s.beta} (above 1) and ${show(s.smallBeta * (1 - q * q), 3)} for β = ${s.smallBeta} (the too-small run).`,
        ...(curves.length === 0 ? [] : [
          "## MSE vs t and k",
          rateFigure,
          kFigure,
          table(["series", ...grid.map((x) => `${x}`), `slope (${s.fitFrom}–${s.fitTo})`], curves.map((c) => [c.name, ...c.points.map(([, y]) => show(y, 3)), show(fitted(c), 3)])),
          "## Acceptance bars",
          table(["bar", "verdict", "measured"], checks.map((c) => [c.name, c.passed ? "met" : "NOT met", c.detail]))
        ]),
        ...(rows.length === 0 ? [] : [
          "## Cost to relative error " + s.target,
          evalFigure,
          timeFigure,
          table(["n", "method", "steps (t = k, K)", "relative error", "per-example evaluations", "ms"], rows.map((r) => [`${r.n}`, `${r.method}`, `${r.steps}`, show(r.error, 3), show(r.evaluations, 3), show(r.ms, 3)])),
          `SID (B = 100) needs fewer per-example evaluations than AID-FP from ${crossover("evaluations")} on, and less wall time from ${crossover("ms")} on.`
        ])
      ])
      return { report, checks, wallMs }
    })
})
