/**
 * What a sweep shows on stderr: an overall bar (runs done of all, failures) and one line per run in
 * flight (its outer steps, F), through cli-progress's MultiBar like `run`'s single bar.
 */
import { MultiBar, type SingleBar } from "cli-progress"
import type { Outcome } from "../sweep/execute.ts"
import type { PlannedRun } from "../sweep/plan.ts"
import type { Progress } from "../sweep/pool.ts"

const runName = (run: PlannedRun) =>
  `${run.label} seed ${run.seed}${Object.keys(run.point).length > 0 ? ` ${JSON.stringify(run.point)}` : ""}`

/** A display for `total` runs of which `done` are recorded already; `stop` closes it. */
export const sweepProgress = (total: number, done: number): Progress & { readonly stop: () => void } => {
  const bars = new MultiBar({
    format: "{name} [{bar}] {value}/{total} {unit} {extra}",
    stream: process.stderr,
    noTTYOutput: true,
    notTTYSchedule: 5000,
    hideCursor: true,
    clearOnComplete: false
  })
  let failed = 0
  const overall = bars.create(total, done, { name: "sweep".padEnd(28), unit: "runs", extra: "" })
  const active = new Map<string, SingleBar>()
  return {
    started: (run) => {
      active.set(run.id, bars.create(1, 0, { name: `  ${runName(run)}`.slice(0, 28).padEnd(28), unit: "outer steps", extra: "" }))
    },
    step: (run, t, steps, F) => {
      const bar = active.get(run.id)
      bar?.setTotal(steps)
      bar?.update(t, { extra: `F ${F.toPrecision(5)}` })
    },
    ended: (run, outcome: Outcome) => {
      const bar = active.get(run.id)
      if (bar !== undefined) bars.remove(bar)
      active.delete(run.id)
      if (outcome.status === "failed") failed++
      overall.increment(1, { extra: failed > 0 ? `(${failed} failed)` : "" })
    },
    stop: () => bars.stop()
  }
}
