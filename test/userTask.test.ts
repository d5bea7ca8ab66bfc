/**
 * A user's own task, from a file, through every command a built-in task goes through: the tutorial's
 * ridge regression (examples/ridge.ts, quoted verbatim by docs/your-own-problem.md) is run with a YAML
 * config and with `--set`, plotted, compared, exported, replayed bit for bit, resumed, checked with
 * gradcheck, and its saved x, z, y are read back by NumPy.
 */
import { spawnSync } from "node:child_process"
import { cpSync, existsSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import * as path from "node:path"
import { assert, beforeAll, describe, it } from "vitest"
import { bilevel, type Finished } from "./support/cli.ts"
import { scratchDir } from "./support/scratch.ts"

const scratch = scratchDir("user-task")
const ridge = path.join(import.meta.dirname, "..", "examples", "ridge.ts")
const at = (...names: Array<string>) => path.join(scratch, ...names)
const json = (file: string) => JSON.parse(readFileSync(file, "utf8"))
const ok = (finished: Finished) => {
  assert.strictEqual(finished.code, 0, finished.stderr)
  return finished.stdout
}
const cli = (...args: Array<string>) => bilevel(args, { cwd: scratch })

const havePython = spawnSync("python3", ["-c", "import numpy"]).status === 0

describe("a user task from a file", { timeout: 120_000 }, () => {
  beforeAll(async () => {
    writeFileSync(at("ridge.yaml"), "# settings of the ridge task and the rhg method\nouterSteps: 10\ninnerSteps: 20\n")
    await Promise.all([
      cli("run", ridge, "-m", "iaptt-gm", "--backend", "cpu", "--set", "outerSteps=10", "--checkpoint-every", "5", "--out", "iaptt", "--json").then(ok),
      cli("run", "ridge", "--task-module", ridge, "-m", "rhg", "--backend", "cpu", "--config", "ridge.yaml", "--out", "rhg", "--json").then(ok)
    ])
  }, 120_000)

  it("is recorded with its module, the command line, the package version and the git commit", () => {
    const info = json(at("iaptt", "run.json"))
    assert.strictEqual(info.task, "ridge")
    assert.strictEqual(info.taskModule, ridge)
    assert.deepStrictEqual(info.command.slice(0, 3), ["bilevel", "run", ridge])
    assert.strictEqual(info.versions["effect-bilevel"], json(path.join(import.meta.dirname, "..", "package.json")).version)
    const commit = spawnSync("git", ["rev-parse", "HEAD"], { cwd: scratch, encoding: "utf8" })
    // The scratch directory is not a repository: no commit is claimed for it.
    assert.strictEqual(info.git, commit.status === 0 ? info.git : undefined)
    assert.strictEqual(json(at("rhg", "run.json")).config.innerSteps, 20, "from the YAML config")
    assert.strictEqual(json(at("rhg", "summary.json")).outerSteps, 10)
  })

  it("--dry-run prints the resolved settings (YAML file, defaults) and runs nothing", async () => {
    const printed = JSON.parse(ok(await cli("run", ridge, "-m", "rhg", "--config", "ridge.yaml", "--dry-run", "--out", "never")))
    // The task's settings (the method's own follow them).
    assert.deepInclude(printed.config, { outerSteps: 10, innerSteps: 20, innerLr: 0.1, outerLr: 0.1, examples: 30, features: 20 })
    assert.strictEqual(printed.taskModule, ridge)
    assert.isFalse(existsSync(at("never")))
  })

  it("plot, compare and export read its records", async () => {
    const [, table, csv] = await Promise.all([
      cli("plot", "iaptt", "rhg", "--metric", "F", "--out", "ridge.svg").then(ok),
      cli("compare", "iaptt", "rhg", "--format", "csv").then(ok),
      cli("export", "iaptt", "--format", "csv").then(ok)
    ])
    assert.include(readFileSync(at("ridge.svg"), "utf8"), "<svg")
    assert.include(table, "iaptt-gm")
    assert.include(table, "rhg")
    const steps = readFileSync(at("iaptt", "steps.ndjson"), "utf8").trim().split("\n").map((line) => JSON.parse(line))
    const [header, ...rows] = csv.trim().split("\r\n").map((row) => row.split(","))
    assert.lengthOf(rows, 10)
    const F = header!.indexOf("F")
    assert.deepStrictEqual(rows.map((row) => Number(row[F])), steps.map((s) => s.F), "F at full precision")
    assert.include(header!, "cost.innerSteps")
  })

  it("replay reproduces it bit for bit, loading the module the record names", async () => {
    assert.include(ok(await cli("replay", "iaptt")), "identical: 10 outer steps")
  })

  it("resume finds the module too, and continues to the same steps", async () => {
    cpSync(at("iaptt"), at("resumed"), { recursive: true })
    rmSync(at("resumed", "summary.json"))
    rmSync(at("resumed", "checkpoint.json"))
    ok(await cli("resume", "resumed"))
    const steps = (dir: string) =>
      readFileSync(at(dir, "steps.ndjson"), "utf8").trim().split("\n").map((line) => ({ ...JSON.parse(line), ms: 0 }))
    assert.deepStrictEqual(steps("resumed"), steps("iaptt"), "every field but the wall time")
    assert.deepStrictEqual(readFileSync(at("resumed", "x.npy")), readFileSync(at("iaptt", "x.npy")))
  })

  it("gradcheck: its IAPTT-GM hypergradient agrees with finite differences", async () => {
    const result = JSON.parse(ok(await cli("gradcheck", ridge, "-m", "iaptt-gm", "--json")))
    assert.strictEqual(result.task, "ridge")
    assert.strictEqual(result.reference, "finite-difference")
    assert.isBelow(result.relError, 1e-3)
  })

  it.skipIf(!havePython)(
    havePython
      ? "numpy.load reads the saved x, z and y: the checkpointed state, bit for bit"
      : "numpy.load reads the saved x, z and y: skipped, python3 with numpy is absent (apt-get install -y python3-numpy)",
    () => {
      const load = (name: string) => {
        const script = `import numpy, json; a = numpy.load(${JSON.stringify(at("iaptt", `${name}.npy`))}); ` +
          `print(json.dumps({"dtype": str(a.dtype), "shape": list(a.shape), "values": a.tolist()}))`
        const python = spawnSync("python3", ["-c", script], { encoding: "utf8" })
        assert.strictEqual(python.status, 0, python.stderr)
        return JSON.parse(python.stdout)
      }
      // The run ended on a checkpointed step (10): the arrays hold the checkpoint's x and z.
      const checkpoint = json(at("iaptt", "checkpoint.json"))
      const decode = (data: string) => Array.from(new Float32Array(new Uint8Array(Buffer.from(data, "base64")).buffer))
      for (const name of ["x", "z"] as const) {
        const array = load(name)
        assert.strictEqual(array.dtype, "float32")
        assert.deepStrictEqual(array.shape, checkpoint[name].shape)
        assert.deepStrictEqual(array.values, decode(checkpoint[name].data))
      }
      assert.deepStrictEqual(load("y").shape, [20])
    }
  )
})
