/**
 * `npm run bench [-- options]`: the benchmark suite (bench/suites.ts) on each available backend.
 * Writes bench/results/<time>.json and the generated tables of docs/benchmarks.md.
 *
 *   --only SUITE[,SUITE]     hyper-cleaning, checkpointing, truncation, toys, crossover, profile (default: all)
 *   --backend NAME[,NAME]    cpu, wasm, webgpu, tensorflow, tensorflow-gpu (default: cpu,wasm and any GPU one that loads)
 *   --net linear|mlp         hyper-cleaning nets (default: both)
 *   --method NAME[,NAME]     methods of the hyper-cleaning, toy and few-shot suites (default: each suite's list)
 *   --reps N  --warmup N     timed and untimed repetitions per case (default 5 and 1)
 *   --data real|synthetic    FashionMNIST from /usr/share/datasets/fashion-mnist, or a synthetic file of
 *                            its shape (default: real when installed)
 *   --no-docs                do not touch docs/benchmarks.md
 *
 * e.g. `npm run bench -- --only hyper-cleaning --backend wasm --net linear --method rhg`
 */
import { NodeServices } from "@effect/platform-node"
import { Effect, Exit } from "effect"
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs"
import * as path from "node:path"
import { parseArgs } from "node:util"
import { Rng } from "../src/domain/Rng.ts"
import { fashionMnistDir } from "../src/tasks/mnistLike.ts"
import * as Backend from "../src/runtime/Backend.ts"
import { backendFlags, machine } from "./machine.ts"
import { type Run, updateDocument } from "./report.ts"
import { type Row, suites } from "./suites.ts"
import { writeSyntheticTrainingFile } from "./syntheticData.ts"

const { values } = parseArgs({
  args: process.argv.slice(2),
  options: {
    only: { type: "string" },
    backend: { type: "string" },
    net: { type: "string" },
    method: { type: "string" },
    reps: { type: "string", default: "5" },
    warmup: { type: "string", default: "1" },
    data: { type: "string" },
    "no-docs": { type: "boolean", default: false }
  }
})

const list = (value: string | undefined) => value?.split(",").map((s) => s.trim()).filter((s) => s.length > 0)

const chosenSuites = list(values.only) ?? Object.keys(suites)
const unknownSuite = chosenSuites.find((s) => !(s in suites))
if (unknownSuite !== undefined) throw new Error(`Unknown suite "${unknownSuite}"; the suites are ${Object.keys(suites).join(", ")}.`)
const requestedBackends = list(values.backend)
const backends = (requestedBackends ?? ["cpu", "wasm", "webgpu", "tensorflow-gpu", "tensorflow"]) as Array<Backend.BackendName>
const realData = values.data === undefined ? existsSync(`${fashionMnistDir}/train-images-idx3-ubyte.gz`) : values.data === "real"
const dataDir = realData ? fashionMnistDir : writeSyntheticTrainingFile()
const nets = (list(values.net) ?? ["linear", "mlp"]) as Array<"linear" | "mlp">

const command = `npm run bench${process.argv.length > 2 ? ` -- ${process.argv.slice(2).join(" ")}` : ""}`
const startedAt = new Date().toISOString()
const results = path.join("bench", "results", `${startedAt.replace(/[:.]/g, "-")}.json`)

const program = Effect.gen(function*() {
  const rows: Array<Row> = []
  const flags: Record<string, Record<string, unknown>> = {}
  console.error(`${command}: suites ${chosenSuites.join(", ")}; data ${realData ? dataDir : `synthetic (${dataDir})`}`)
  for (const backend of backends) {
    const exit = yield* Effect.exit(Effect.gen(function*() {
      flags[backend] = yield* Effect.promise(backendFlags)
      console.error(`backend ${backend}: ${JSON.stringify(flags[backend])}`)
      for (const suite of chosenSuites) {
        rows.push(...(yield* suites[suite]!({
          backend,
          repetitions: { reps: Number(values.reps), warmup: Number(values.warmup) },
          dataDir,
          nets,
          methods: list(values.method)
        }).pipe(Effect.provide(Rng.layer(0)))))
      }
    }).pipe(Effect.scoped, Effect.provide(Backend.layer(backend))))
    if (Exit.isFailure(exit)) {
      const message = (e: unknown) => (e instanceof Error ? e.message : String((e as { message?: unknown })?.message ?? e))
      const error = exit.cause.reasons.map((r) => (r._tag === "Fail" ? message(r.error) : r._tag === "Die" ? message(r.defect) : String(r))).join("; ")
      flags[backend] = { unavailable: error }
      console.error(`backend ${backend}: skipped, ${error}`)
      // Asked for explicitly, a backend that does not load is an error; found missing while probing, a note.
      if (requestedBackends !== undefined) return yield* Effect.fail(new Error(`backend ${backend}: ${error}`))
    }
  }
  const run: Run = { command, startedAt, machine: machine(), backends: flags, results, rows }
  mkdirSync(path.dirname(results), { recursive: true })
  writeFileSync(results, JSON.stringify(run, null, 2) + "\n")
  console.error(`wrote ${results}`)
  if (!values["no-docs"]) {
    const docs = path.join("docs", "benchmarks.md")
    const current = existsSync(docs) ? readFileSync(docs, "utf8") : "# Benchmarks\n"
    const previous = (file: string): Run | undefined => {
      try {
        return JSON.parse(readFileSync(file, "utf8")) as Run
      } catch {
        return undefined
      }
    }
    writeFileSync(docs, updateDocument(current, run, previous))
    console.error(`updated ${docs}`)
  }
}).pipe(Effect.provide(NodeServices.layer))

Effect.runPromise(program).catch((error) => {
  console.error(error instanceof Error ? error.message : error)
  process.exitCode = 1
})
