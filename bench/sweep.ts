/**
 * `npm run bench:sweep [-- --runs 8 --workers 1,2 --reps 2 --outer-steps 100]`: wall time of one
 * `bilevel sweep` of equal short runs (IAPTT-GM on the non-convex toy, cpu backend, seeds 0…runs−1)
 * with each number of workers, repetitions interleaved so every setting sees the same load. Prints
 * one Markdown row per setting (median wall time, the CPU time of the sweep's processes, the
 * speed-up over the first setting) and the 1-minute load average around the measurement.
 */
import { spawnSync } from "node:child_process"
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { cpus, loadavg, tmpdir } from "node:os"
import * as path from "node:path"
import { parseArgs } from "node:util"

const { values } = parseArgs({
  args: process.argv.slice(2),
  options: {
    runs: { type: "string", default: "8" },
    workers: { type: "string", default: "1,2" },
    reps: { type: "string", default: "2" },
    "outer-steps": { type: "string", default: "100" }
  }
})
const runs = Number(values.runs)
const settings = values.workers.split(",").map(Number)
const reps = Number(values.reps)
const binary = path.join(import.meta.dirname, "..", "bin", "bilevel.js")
const scratch = mkdtempSync(path.join(tmpdir(), "bilevel-bench-sweep-"))
const spec = path.join(scratch, "sweep.json")
writeFileSync(spec, JSON.stringify({
  task: "toy-nonconvex",
  methods: ["iaptt-gm"],
  seeds: Array.from({ length: runs }, (_, i) => i),
  settings: { outerSteps: Number(values["outer-steps"]) },
  backend: "cpu",
  checkpointEvery: 0
}))

/** CPU seconds of this process's reaped children (and theirs), from /proc/self/stat. */
const childCpu = () => {
  const fields = readFileSync("/proc/self/stat", "utf8").split(") ")[1]!.split(" ")
  return (Number(fields[13]) + Number(fields[14])) / 100
}

const loads: Array<number> = [loadavg()[0]!]
const times = new Map<number, Array<{ wall: number; cpu: number }>>(settings.map((w) => [w, []]))
for (let rep = 0; rep < reps; rep++) {
  for (const workers of settings) {
    const out = path.join(scratch, `w${workers}-${rep}`)
    const cpu = childCpu()
    const started = performance.now()
    const finished = spawnSync(process.execPath, [binary, "sweep", spec, "--out", out, "--workers", String(workers), "--json"], { encoding: "utf8" })
    const wall = (performance.now() - started) / 1000
    if (finished.status !== 0) throw new Error(`sweep with ${workers} workers failed: ${finished.stderr}`)
    times.get(workers)!.push({ wall, cpu: childCpu() - cpu })
    loads.push(loadavg()[0]!)
    rmSync(out, { recursive: true })
  }
}
rmSync(scratch, { recursive: true })

const median = (xs: ReadonlyArray<number>) => {
  const s = [...xs].sort((a, b) => a - b)
  return s.length % 2 === 1 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2
}
const base = median(times.get(settings[0]!)!.map((t) => t.wall))
console.log(`Command: npm run bench:sweep -- ${process.argv.slice(2).join(" ")} (${new Date().toISOString()}); ${cpus().length} cores (${cpus()[0]?.model})`)
console.log(`1-minute load average around it: ${Math.min(...loads).toFixed(2)}–${Math.max(...loads).toFixed(2)}\n`)
console.log(`| runs | workers | wall s (each repetition) | median wall s | CPU s of the sweep's processes | speed-up |`)
console.log(`|---|---|---|---|---|---|`)
for (const workers of settings) {
  const t = times.get(workers)!
  const wall = median(t.map((x) => x.wall))
  console.log(
    `| ${runs} | ${workers} | ${t.map((x) => x.wall.toFixed(1)).join(", ")} | ${wall.toFixed(1)} | ${median(t.map((x) => x.cpu)).toFixed(1)} | ${(base / wall).toFixed(2)} |`
  )
}
