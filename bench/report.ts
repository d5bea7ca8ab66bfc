/**
 * Markdown tables of benchmark rows, and their place in docs/benchmarks.md: one generated block per
 * suite between `<!-- bench:NAME -->` and `<!-- /bench:NAME -->`, replaced when that suite runs again
 * (the prose around the blocks is written by hand). Rows of backends the new run did not cover are
 * kept from the results files the old block cites, with their own command.
 */
import type { Machine } from "./machine.ts"
import type { Timing } from "./measure.ts"
import type { Row } from "./suites.ts"

export interface Run {
  readonly command: string
  readonly startedAt: string
  readonly machine: Machine
  readonly backends: Record<string, Record<string, unknown>>
  readonly results: string
  readonly rows: ReadonlyArray<Row>
}

const ms = (value: number) => value >= 100 ? value.toFixed(0) : value >= 10 ? value.toFixed(1) : value.toFixed(2)

/** "median [p25–p75]" of wall time, then the CPU-time median. */
const time = (t: Timing | undefined) =>
  t === undefined ? "–" : `${ms(t.wallMs.median)} [${ms(t.wallMs.p25)}–${ms(t.wallMs.p75)}] / ${ms(t.cpuMs.median)}`

const ratio = (r: Row["ratio"]) => r === undefined ? "–" : `${r.wall.toFixed(2)} / ${r.cpu.toFixed(2)}`

const megabytes = (bytes: number | undefined) => bytes === undefined ? "–" : (bytes / 2 ** 20).toFixed(2)

const leaks = (r: Row) => r.tensorsAfter === undefined ? "–" : [...new Set(r.tensorsAfter)].join(", ")

const table = (header: ReadonlyArray<string>, lines: ReadonlyArray<ReadonlyArray<string | number>>) =>
  [
    `| ${header.join(" | ")} |`,
    `|${header.map(() => "---").join("|")}|`,
    ...lines.map((l) => `| ${l.join(" | ")} |`)
  ].join("\n")

const timeNote = "Times in ms: wall median [p25–p75] / CPU-time median of this process."

const renderers: Record<string, (rows: ReadonlyArray<Row>) => string> = {
  fewshot: (rows) =>
    table(
      ["backend", "input", "method", "outer step (hypergradient of the meta-batch)", "k̄", "peak MiB", "tensors left", "600 test episodes s"],
      rows.map((r) => [
        r.backend,
        r.variant["input"]!,
        r.method,
        time(r.hypergradient),
        r.kbar ?? "–",
        megabytes(r.cost?.peakBytes),
        leaks(r),
        typeof r.extra?.["evaluationS"] === "number" ? (r.extra["evaluationS"] as number).toFixed(1) : "–"
      ])
    ) + `\n\n${timeNote} ConvNet-4 with 32 channels, 5-way 1-shot, 15 queries, meta-batch 4, K = 10.`,
  "hyper-cleaning": (rows) =>
    table(
      ["backend", "net", "method", "step VJP", "hypergradient", "forward (`upperAt`)", "ratio wall / cpu", "k̄", "peak MiB", "tensors left", "rel. diff. to closed form"],
      rows.map((r) => [
        r.backend,
        r.variant["net"]!,
        r.method,
        r.variant["vjp"]!,
        time(r.hypergradient),
        time(r.forward),
        ratio(r.ratio),
        r.kbar ?? "–",
        megabytes(r.cost?.peakBytes),
        leaks(r),
        typeof r.extra?.["relativeDifferenceToClosedForm"] === "number"
          ? (r.extra["relativeDifferenceToClosedForm"] as number).toExponential(1)
          : "–"
      ])
    ) + `\n\n${timeNote} Ratio: hypergradient / forward medians.`,
  checkpointing: (rows) =>
    table(
      ["backend", "net", "checkpoint every", "hypergradient", "forward", "ratio wall / cpu", "peak MiB", "tensors left"],
      rows.map((r) => [r.backend, r.variant["net"]!, r.variant["checkpointEvery"]!, time(r.hypergradient), time(r.forward), ratio(r.ratio), megabytes(r.cost?.peakBytes), leaks(r)])
    ) + `\n\n${timeNote}`,
  truncation: (rows) =>
    table(
      ["backend", "net", "forced k̄ (K)", "reverse pass", "reverse CPU ms per step", "hypergradient", "forward", "reverse steps"],
      rows.map((r) => {
        const reversePass = r.extra?.["reversePass"] as Timing
        return [
          r.backend,
          r.variant["net"]!,
          `${r.variant["kbar"]} (${r.variant["K"]})`,
          time(reversePass),
          ms(reversePass.cpuMs.median / Number(r.variant["kbar"])),
          time(r.hypergradient),
          time(r.forward),
          r.cost?.reverseSteps ?? "–"
        ]
      })
    ) + `\n\n${timeNote} The reverse pass is the hypergradient strategy alone on a finished trajectory.`,
  toys: (rows) =>
    table(
      ["backend", "task", "method", "K", "hypergradient", "forward", "ratio wall / cpu", "k̄", "tensors left"],
      rows.map((r) => [r.backend, r.task, r.method, r.variant["K"]!, time(r.hypergradient), time(r.forward), ratio(r.ratio), r.kbar ?? "–", leaks(r)])
    ) + `\n\n${timeNote}`,
  crossover: (rows) =>
    table(
      ["backend", "dimY = dimX", "K", "hypergradient", "forward"],
      rows.map((r) => [r.backend, r.variant["dimY"]!, r.variant["K"]!, time(r.hypergradient), time(r.forward)])
    ) + `\n\n${timeNote}`,
  profile: (rows) =>
    table(
      ["backend", "net", "step VJP", "wall ms (cpu ms)", "kernel ms", "kernels", "host reads (ms)", "other ms", "top kernels (count, ms)"],
      rows.map((r) => {
        const e = r.extra as Record<string, unknown>
        const top = (e["top"] as Array<{ name: string; count: number; ms: number }>).map((k) => `${k.name} (${k.count}, ${k.ms})`).join(", ")
        return [r.backend, r.variant["net"]!, r.variant["vjp"]!, `${e["wallMs"]} (${e["cpuMs"]})`, e["kernelMs"] as number, e["kernels"] as number, `${e["hostReads"]} (${e["hostReadMs"]})`, e["otherMs"] as number, top]
      })
    ) +
    "\n\nWall time and host reads of one plain hypergradient; kernel times (registered kernels only, wall time per kernel) " +
    "of another under `tf.profile`. Other = wall − kernels − host reads: the engine's bookkeeping, tapes and the streams " +
    "around the kernels (negative when the machine's load inflated the profiled run's kernel times)."
}

const header = (run: Run, rows: ReadonlyArray<Row>) => {
  if (rows.length === 0) return ""
  const loads = rows.map((r) => r.loadAverage[0]!)
  const m = run.machine
  const backends = [...new Set(rows.map((r) => r.backend))]
    .map((b) => `${b} ${JSON.stringify(run.backends[b] ?? {})}`)
    .join("; ")
  return [
    `Command: \`${run.command}\` (${run.startedAt}; results: \`${run.results}\`)`,
    `Machine: ${m.cpu}, ${m.cores} cores, ${m.memoryGiB} GiB, ${m.os}; Node ${m.node}; tfjs-core ${m.versions["@tensorflow/tfjs-core"]}, ` +
    `tfjs-backend-wasm ${m.versions["@tensorflow/tfjs-backend-wasm"]}. Backends: ${backends}.`,
    `1-minute load average while it ran: ${Math.min(...loads)}–${Math.max(...loads)}.`
  ].join("\n")
}

/** The generated block of one suite, from the rows of several runs (each with its own header). */
export const block = (suite: string, runs: ReadonlyArray<Run>): string => {
  const parts = runs.map((run) => ({ run, rows: run.rows.filter((r) => r.suite === suite) })).filter((p) => p.rows.length > 0)
  const headers = parts.map((p) => header(p.run, p.rows)).join("\n\n")
  return `<!-- bench:${suite} -->\n${headers}\n\n${renderers[suite]!(parts.flatMap((p) => p.rows))}\n<!-- /bench:${suite} -->`
}

/**
 * docs/benchmarks.md with the blocks of the suites in `run` replaced (or appended). `previous` loads a
 * results file an old block cites, so that its rows for backends `run` did not measure stay (each
 * backend's from the first file cited that has it: blocks cite the newest run first).
 */
export const updateDocument = (document: string, run: Run, previous: (results: string) => Run | undefined): string => {
  let out = document
  for (const suite of Object.keys(renderers)) {
    const rows = run.rows.filter((r) => r.suite === suite)
    if (rows.length === 0) continue
    const begin = `<!-- bench:${suite} -->`
    const end = `<!-- /bench:${suite} -->`
    const from = out.indexOf(begin)
    const to = out.indexOf(end)
    // Each backend's rows come from the newest run that measured it: this one, else the first cited.
    const taken = new Set(rows.map((r) => r.backend))
    const kept = from >= 0 && to > from
      ? [...out.slice(from, to).matchAll(/results: `([^`]+)`/g)].flatMap(([, results]) => {
        const old = previous(results!)
        const others = old?.rows.filter((r) => r.suite === suite && !taken.has(r.backend)) ?? []
        for (const r of others) taken.add(r.backend)
        return old === undefined || others.length === 0 ? [] : [{ ...old, rows: others }]
      })
      : []
    const generated = block(suite, [run, ...kept])
    out = from >= 0 && to > from
      ? out.slice(0, from) + generated + out.slice(to + end.length)
      : `${out.trimEnd()}\n\n## ${suite}\n\n${generated}\n`
  }
  return out
}
