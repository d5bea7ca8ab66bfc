/**
 * Run records at the edges of a run's life (issue 23): one writer per run directory, a clean end on
 * SIGINT that resumes bit-identically, atomic writes that name the system's error (ENOSPC) and leave
 * nothing torn, readers that rebuild a torn summary, replay of every task's fresh record, settings
 * refused before allocation when the machine cannot hold them, `--out` that cannot be created,
 * machine-readable `--json` failures, gradcheck as a gate, and the small lies the issue lists.
 * docs/reliability.md maps each fault to its test here.
 */
import { NodeServices } from "@effect/platform-node"
import { assert, describe, it, layer } from "@effect/vitest"
import { Effect, Fiber, FileSystem, Layer, PlatformError } from "effect"
import { execFileSync, spawnSync } from "node:child_process"
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, truncateSync, writeFileSync } from "node:fs"
import { hostname, tmpdir } from "node:os"
import { PNG } from "pngjs"
import * as path from "node:path"
import * as Backend from "../src/runtime/Backend.ts"
import { compareRuns } from "../src/runtime/compare.ts"
import { gradcheck } from "../src/runtime/gradcheck.ts"
import { checkMemory } from "../src/runtime/memoryEstimate.ts"
import { writePlot } from "../src/runtime/plot.ts"
import { firstStepDifference, replay } from "../src/runtime/replay.ts"
import { resume, run, type RunRequest } from "../src/runtime/run.ts"
import * as RunLock from "../src/runtime/runLock.ts"
import * as RunRecord from "../src/runtime/RunRecord.ts"
import { checkCombination, findMethod, findTask, resolveSettings } from "../src/runtime/settings.ts"
import { methods } from "../src/solvers/methods.ts"
import { datasetDir, loadMnistLike } from "../src/tasks/mnistLike.ts"
import { tasks } from "../src/tasks/registry.ts"
import { bilevel, start } from "./support/cli.ts"
import { syntheticDataDir } from "./support/syntheticIdx.ts"
import { scratchDir } from "./support/scratch.ts"

const scratch = scratchDir("reliability")
let dirs = 0
const out = (name: string) => path.join(scratch, `${name}-${dirs++}`)
const stepLines = (dir: string) => {
  try {
    return readFileSync(path.join(dir, "steps.ndjson"), "utf8").split("\n").filter((l) => l !== "").length
  } catch {
    return 0
  }
}
const until = async (condition: () => boolean, what: string, timeoutMs = 120_000) => {
  const started = Date.now()
  while (!condition()) {
    if (Date.now() - started > timeoutMs) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 20))
  }
}
const leftovers = (dir: string) => readdirSync(dir).filter((name) => name.endsWith(".tmp") || name === "run.lock")

/** A pid that ran on this host and has exited. */
const deadPid = () => {
  const child = spawnSync(process.execPath, ["-e", "process.stdout.write(String(process.pid))"])
  return Number(child.stdout.toString())
}

const quadratic: Omit<RunRequest, "out"> = {
  task: "quadratic",
  method: "rhg",
  seed: 5,
  settings: { dimX: 3, dimY: 4, outerSteps: 12, innerSteps: 5 }
}

/** The uninterrupted run of `request`, read back. */
const reference = (request: Omit<RunRequest, "out">) =>
  run({ ...request, out: out("reference"), checkpointEvery: 0 }).pipe(Effect.andThen((r) => RunRecord.read(r.runDir)))

const errnoError = (code: string, syscall: string, file: string) =>
  PlatformError.systemError({
    _tag: code === "EACCES" ? "PermissionDenied" : "Unknown",
    module: "FileSystem",
    method: syscall,
    pathOrDescriptor: file,
    syscall,
    cause: Object.assign(new Error(`${code}: ${code === "EACCES" ? "permission denied" : "no space left on device"}, ${syscall}`), {
      code,
      syscall
    })
  })

/** The node file system with some of its operations replaced. */
const patchedFileSystem = (patch: (fs: FileSystem.FileSystem) => Partial<FileSystem.FileSystem>) =>
  Layer.effect(
    FileSystem.FileSystem,
    Effect.gen(function*() {
      const fs = yield* FileSystem.FileSystem
      return { ...fs, ...patch(fs) } satisfies FileSystem.FileSystem
    })
  ).pipe(Layer.provide(NodeServices.layer))

/**
 * The node file system, but writes to the files `victim` picks fail as on a full disk: their bytes
 * never reach the file (an open succeeds, every write answers ENOSPC), as `write(2)` does.
 */
const fullDisk = (victim: (file: string) => boolean) =>
  patchedFileSystem((fs) => ({
    open: (file, options) =>
      victim(file)
        ? Effect.map(fs.open(file, options), (handle) =>
          Object.assign(Object.create(handle) as FileSystem.File, {
            writeAll: () => Effect.fail(errnoError("ENOSPC", "write", file)),
            write: () => Effect.fail(errnoError("ENOSPC", "write", file))
          }))
        : fs.open(file, options),
    writeFileString: (file, data, options) =>
      victim(file) ? Effect.fail(errnoError("ENOSPC", "write", file)) : fs.writeFileString(file, data, options)
  }))

/** Whether this process may mount a tmpfs (root): then real full and read-only disks are tested too. */
const mountable = (() => {
  if (process.getuid?.() !== 0) return false
  const probe = mkdtempSync(path.join(tmpdir(), "bilevel-tmpfs-probe-"))
  try {
    execFileSync("mount", ["-t", "tmpfs", "-o", "size=64k", "tmpfs", probe], { stdio: "ignore" })
    execFileSync("umount", [probe], { stdio: "ignore" })
    return true
  } catch {
    return false
  } finally {
    rmSync(probe, { recursive: true, force: true })
  }
})()
const cpu = Layer.merge(Backend.layer("cpu"), NodeServices.layer)

describe("the run lock", () => {
  it.live("a holder beats its heartbeat; a waiting taker gets a lock once its beats stop, and is refused while they go on", () =>
    Effect.gen(function*() {
      const dir = out("heartbeat")
      mkdirSync(dir)
      const lock = path.join(dir, "run.lock")
      // staleAfter well above a loaded machine's event-loop stalls, so the beating holder is never taken for gone.
      const fast = { beatEveryMs: 50, staleAfterMs: 1500 }
      yield* Effect.scoped(Effect.gen(function*() {
        yield* RunLock.hold(dir, fast)
        const first = JSON.parse(readFileSync(lock, "utf8"))
        yield* Effect.sleep("200 millis")
        const later = JSON.parse(readFileSync(lock, "utf8"))
        assert.deepInclude(later, { pid: process.pid, since: first.since })
        assert.isAbove(Date.parse(later.beat), Date.parse(first.since), "the heartbeat moved on")
      }))
      assert.isFalse(existsSync(lock))
      // Another host's holder that keeps beating: a waiting taker gives up after staleAfter.
      const beating = { pid: 4_000_000, host: "elsewhere", since: new Date().toISOString() }
      const beater = yield* Effect.forkChild(Effect.forever(
        Effect.sync(() => {
          // Renamed over the lock, as the real heartbeat does: a reader never sees a torn file.
          writeFileSync(`${lock}.beat`, JSON.stringify({ ...beating, beat: new Date().toISOString() }))
          renameSync(`${lock}.beat`, lock)
        }).pipe(
          Effect.andThen(Effect.sleep("30 millis"))
        )
      ))
      yield* Effect.sleep("100 millis")
      assert.isTrue(existsSync(lock), "the other host's lock is there")
      const waited = Date.now()
      const refused = yield* Effect.flip(Effect.scoped(RunLock.hold(dir, { ...fast, waitForStale: true })))
      assert.isAtLeast(Date.now() - waited, fast.staleAfterMs, "it waited for the heartbeat to lapse before refusing")
      assert.strictEqual(refused._tag, "RunLocked")
      // Its beats stop (the machine is lost): the waiting taker takes the lock over.
      yield* Fiber.interrupt(beater)
      yield* Effect.scoped(Effect.gen(function*() {
        yield* RunLock.hold(dir, { ...fast, waitForStale: true })
        assert.deepInclude(JSON.parse(readFileSync(lock, "utf8")), { pid: process.pid, host: hostname() })
      }))
    }).pipe(Effect.provide(NodeServices.layer)))

  /** Two holds of `dir`'s lock started together: how each ended, while both scopes stay open a while. */
  const holdTwice = (dir: string) =>
    Effect.all(
      [0, 1].map(() => Effect.result(Effect.scoped(Effect.andThen(RunLock.hold(dir), Effect.sleep("100 millis"))))),
      { concurrency: 2 }
    ).pipe(Effect.map((ends) => ends.map((end) => end._tag === "Failure" ? end.failure._tag : "held").sort()))

  it.live("a lock being written is never read as a torn one and taken over", () =>
    Effect.gen(function*() {
      const dir = out("slow-lock")
      mkdirSync(dir)
      // Files appear empty for a while before their bytes land: a torn-looking lock, unless it is
      // published only once whole.
      const slowWrites = patchedFileSystem((fs) => ({
        writeFileString: (file, data, options) =>
          fs.writeFileString(file, "", options).pipe(
            Effect.andThen(Effect.sleep("30 millis")),
            Effect.andThen(fs.writeFileString(file, data))
          )
      }))
      assert.deepStrictEqual(yield* holdTwice(dir).pipe(Effect.provide(slowWrites)), ["RunLocked", "held"])
      assert.deepStrictEqual(readdirSync(dir), [], "the lock and every private file are gone")
    }))

  it.live("of two processes taking over one stale lock, one holds it: the slower does not delete the faster's", () =>
    Effect.gen(function*() {
      const dir = out("stale-race")
      mkdirSync(dir)
      const lock = path.join(dir, "run.lock")
      writeFileSync(lock, JSON.stringify({ pid: deadPid(), host: hostname(), since: "2026-01-01T00:00:00Z" }))
      // The second to move or remove the stale lock is slow: it acts after the first has taken over.
      let calls = 0
      const slowSecond = patchedFileSystem((fs) => {
        const later = <A, E>(file: string, act: Effect.Effect<A, E>) =>
          file === lock && calls++ === 1 ? Effect.andThen(Effect.sleep("50 millis"), act) : act
        return {
          remove: (file, options) => later(file, fs.remove(file, options)),
          rename: (from, to) => later(from, fs.rename(from, to))
        }
      })
      assert.deepStrictEqual(yield* holdTwice(dir).pipe(Effect.provide(slowSecond)), ["RunLocked", "held"])
      assert.deepStrictEqual(readdirSync(dir), [], "the lock and every private file are gone")
    }))
})

layer(cpu)("run records", (it) => {
  describe("one writer per run directory", () => {
    it.effect("two resumes of one killed run started together: one runs, the other is refused naming the holder", () =>
      Effect.gen(function*() {
        const dir = out("twice")
        yield* run({ ...quadratic, out: dir, checkpointEvery: 4, stopAfter: 6 })
        // A killed run: no summary, steps up to a checkpoint.
        rmSync(path.join(dir, "summary.json"))
        const [first, second] = yield* Effect.all([Effect.result(resume({ dir })), Effect.result(resume({ dir }))], {
          concurrency: 2
        })
        const refused = [first, second].filter((r) => r._tag === "Failure")
        assert.lengthOf(refused, 1, "exactly one resume is refused")
        const error = refused[0]!.failure
        assert.strictEqual(error._tag, "RunLocked")
        if (error._tag !== "RunLocked") return
        assert.strictEqual(error.pid, process.pid)
        assert.strictEqual(error.host, hostname())
        assert.include(error.message, `process ${process.pid} on ${hostname()}`)
        const record = yield* RunRecord.read(dir)
        assert.deepStrictEqual(record.steps.map((s) => s.t), [...Array(12).keys()], "steps not interleaved")
        const uninterrupted = yield* reference(quadratic)
        assert.isUndefined(firstStepDifference(record.steps, uninterrupted.steps))
        assert.deepStrictEqual(leftovers(dir), [], "the lock is released")
      }))

    it.effect("a lock left by a dead process on this host is stale and taken over; one from another host when its heartbeat has stopped", () =>
      Effect.gen(function*() {
        const dir = out("stale")
        yield* run({ ...quadratic, out: dir, checkpointEvery: 4, stopAfter: 6 })
        rmSync(path.join(dir, "summary.json"))
        const lock = path.join(dir, "run.lock")
        const ago = (ms: number) => new Date(Date.now() - ms).toISOString()
        const foreignHolder = { pid: 4_000_000, host: "elsewhere", since: "2026-01-01T00:00:00Z" }
        writeFileSync(lock, JSON.stringify({ ...foreignHolder, beat: ago(RunLock.staleAfterMs / 2) }))
        const foreign = yield* Effect.flip(resume({ dir }))
        assert.strictEqual(foreign._tag, "RunLocked")
        assert.include(foreign.message, "elsewhere")
        assert.include(foreign.message, "last heartbeat")
        writeFileSync(lock, JSON.stringify({ pid: deadPid(), host: hostname(), since: "2026-01-01T00:00:00Z" }))
        const resumed = yield* resume({ dir })
        assert.strictEqual(resumed.outerSteps, 12)
        assert.isFalse(existsSync(lock))
        // A runner lost with its machine: its heartbeat stopped a while ago, so another host takes the run over.
        rmSync(path.join(dir, "summary.json"))
        writeFileSync(lock, JSON.stringify({ ...foreignHolder, beat: ago(2 * RunLock.staleAfterMs) }))
        const takenOver = yield* resume({ dir })
        assert.strictEqual(takenOver.outerSteps, 12)
        assert.isFalse(existsSync(lock))
      }))

    it.effect("the lock is held exactly while its scope is open", () =>
      Effect.gen(function*() {
        const dir = out("scope")
        mkdirSync(dir)
        yield* Effect.scoped(Effect.gen(function*() {
          yield* RunLock.hold(dir)
          const holder = JSON.parse(readFileSync(path.join(dir, "run.lock"), "utf8"))
          assert.deepInclude(holder, { pid: process.pid, host: hostname() })
          const again = yield* Effect.flip(Effect.scoped(RunLock.hold(dir)))
          assert.strictEqual(again._tag, "RunLocked")
        }))
        assert.isFalse(existsSync(path.join(dir, "run.lock")))
      }))

  })

  describe("atomic, honest writes", () => {
    it.effect("a full disk under the checkpoint names ENOSPC and the file, and leaves no temporary file", () =>
      Effect.gen(function*() {
        const dir = out("enospc")
        const error = yield* Effect.flip(
          run({ ...quadratic, out: dir, checkpointEvery: 4 }).pipe(
            Effect.provide(fullDisk((file) => file.endsWith("checkpoint.json.tmp")))
          )
        )
        assert.strictEqual(error._tag, "RunRecordError")
        assert.include(error.message, "checkpoint.json")
        assert.include(error.message, "ENOSPC: no space left on device")
        assert.deepStrictEqual(leftovers(dir), [])
        const record = yield* RunRecord.read(dir)
        assert.strictEqual(record.summary?.status, "failed")
        assert.include(record.summary?.error, "ENOSPC")
        assert.lengthOf(record.steps, 4, "steps up to the failed checkpoint are kept")
      }))

    it.effect("a full disk under the summary: ENOSPC named, no torn summary.json, no temporary file, the run resumable", () =>
      Effect.gen(function*() {
        const dir = out("enospc-summary")
        const error = yield* Effect.flip(
          run({ ...quadratic, out: dir, checkpointEvery: 4 }).pipe(Effect.provide(fullDisk((file) => file.includes("summary.json"))))
        )
        assert.include(error.message, "summary.json")
        assert.include(error.message, "ENOSPC")
        assert.deepStrictEqual(readdirSync(dir).sort(), ["checkpoint.json", "run.json", "steps.ndjson", "x.npy", "y.npy", "z.npy"])
        assert.isUndefined((yield* RunRecord.read(dir)).summary, "the record reads as unfinished")
        assert.strictEqual((yield* resume({ dir })).outerSteps, 12)
      }))

    it.effect("a torn or empty summary (a kill mid-write by an older release) is rebuilt from the steps by every reader", () =>
      Effect.gen(function*() {
        const dir = out("torn")
        yield* run({ ...quadratic, out: dir, checkpointEvery: 4, stopAfter: 7 })
        const summary = path.join(dir, "summary.json")
        for (const damage of [() => truncateSync(summary, 0), () => truncateSync(summary, 20)]) {
          damage()
          const record = yield* RunRecord.read(dir)
          assert.strictEqual(record.summary?.status, "interrupted")
          assert.strictEqual(record.summary?.outerSteps, 7)
          assert.include(record.summary?.rebuilt, "summary.json")
          assert.include(compareRuns([record], { format: "csv" }), "interrupted")
          yield* writePlot([record], { metrics: ["F"] }, path.join(dir, "F.svg"))
          const replayed = yield* replay({ dir })
          assert.isTrue(replayed.identical, JSON.stringify(replayed.firstDifference))
        }
        // A kill while the summary's temporary file was being written leaves it beside the old state.
        writeFileSync(`${summary}.tmp`, "{\"status\": \"comp")
        rmSync(summary)
        const resumed = yield* resume({ dir })
        assert.strictEqual(resumed.outerSteps, 12)
        const record = yield* RunRecord.read(dir)
        assert.strictEqual(record.summary?.status, "completed")
        assert.deepStrictEqual(leftovers(dir), [])
        assert.isUndefined(firstStepDifference(record.steps, (yield* reference(quadratic)).steps))
      }))

    it.effect("an --out that cannot be created fails within seconds: under /proc, under a file", () =>
      Effect.gen(function*() {
        const proc = yield* Effect.flip(run({ ...quadratic, out: "/proc/bilevel-x/run" })).pipe(Effect.timeout("10 seconds"))
        assert.strictEqual(proc._tag, "RunRecordError")
        assert.include(proc.message, "/proc/bilevel-x")
        assert.include(proc.message, "ENOENT")
        const file = path.join(scratch, "a-file")
        writeFileSync(file, "")
        const underFile = yield* Effect.flip(run({ ...quadratic, out: path.join(file, "run") }))
        assert.include(underFile.message, "is not a directory")
        const existing = yield* Effect.flip(run({ ...quadratic, out: scratch }))
        assert.include(existing.message, "already exists")
      }))

    it.effect.skipIf(!mountable)("a read-only file system names EROFS with the directory", () =>
      Effect.gen(function*() {
        const disk = mkdtempSync(path.join(tmpdir(), "bilevel-erofs-test-"))
        execFileSync("mount", ["-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", disk])
        const error = yield* Effect.flip(run({ ...quadratic, out: path.join(disk, "run") })).pipe(
          Effect.ensuring(Effect.sync(() => {
            execFileSync("umount", [disk])
            rmSync(disk, { recursive: true, force: true })
          }))
        )
        assert.include(error.message, path.join(disk, "run"))
        assert.include(error.message, "EROFS")
      }))
  })

  /** Four classes of three 12×12 gray PNGs (resized to 16×16, the least four poolings take), shades apart: a folder source for the few-shot task. */
  const imageFolder = () => {
    const root = path.join(scratch, "images")
    for (let c = 0; c < 4; c++) {
      mkdirSync(path.join(root, `class${c}`), { recursive: true })
      for (let i = 0; i < 3; i++) {
        const image = new PNG({ width: 12, height: 12 })
        for (let p = 0; p < 144; p++) image.data.set([40 * c + ((p * (i + 3)) % 37), 0, 0, 255], p * 4)
        writeFileSync(path.join(root, `class${c}`, `${i}.png`), PNG.sync.write(image))
      }
    }
    return root
  }

  describe("replay compares results, not timings", () => {
    const dataDir = syntheticDataDir()
    const small: Record<string, Record<string, unknown>> = {
      quadratic: { dimX: 3, dimY: 4, outerSteps: 4, innerSteps: 5 },
      "toy-nonconvex": { outerSteps: 4 },
      "toy-llc": { n: 3, outerSteps: 4 },
      "hyper-cleaning": { dataDir, trainSize: 30, valSize: 30, testSize: 30, innerSteps: 3, outerSteps: 4, metricsEvery: 2 },
      "logreg-hpo": { trainSize: 60, valSize: 40, testSize: 10, features: 4, lowerBatch: 10, outerSteps: 4, innerSteps: 5 },
      fewshot: {
        source: "folder", dataDir: imageFolder(), imageSize: 16, color: "gray", trainClasses: 2, validationClasses: 0,
        testClasses: 2, ways: 2, shots: 1, queries: 2, metaBatch: 2, width: 3, innerSteps: 3, innerLr: 0.5, evalEvery: 0, outerSteps: 4
      }
    }
    it("covers every task", () => assert.sameMembers(Object.keys(small), tasks.map((t) => t.name)))
    for (const task of tasks) {
      it.effect(`a fresh ${task.name} record replays (its timings, such as meanMsPerStep, are not compared)`, () =>
        Effect.gen(function*() {
          const done = yield* run({ task: task.name, method: "rhg", seed: 1, settings: small[task.name]!, out: out(task.name) })
          const report = yield* replay({ dir: done.runDir })
          assert.isTrue(report.identical, JSON.stringify(report.firstDifference))
          assert.strictEqual(report.replayedSteps, 4)
        }))
    }
  })

  describe("settings checked against the machine", () => {
    it.effect("an oversized configuration is refused before anything is allocated or created", () =>
      Effect.gen(function*() {
        for (const [settings, named] of [[{ dimY: 100_000 }, "dimY=100000"], [{ innerSteps: 1_000_000_000 }, "innerSteps=1000000000"]] as const) {
          const dir = out("oversized")
          const started = performance.now()
          const task = "dimY" in settings ? "quadratic" : "toy-nonconvex"
          const error = yield* Effect.flip(run({ task, method: "rhg", seed: 0, settings, out: dir }))
          assert.isBelow(performance.now() - started, 2000)
          assert.strictEqual(error._tag, "InsufficientMemory")
          assert.include(error.message, named)
          assert.include(error.message, "GiB")
          assert.include(error.message, "innerSteps")
          assert.isFalse(existsSync(dir))
        }
      }))

    it.effect("every task's default configuration with every method fits", () =>
      Effect.gen(function*() {
        for (const task of tasks) {
          for (const method of methods) {
            const settings = yield* resolveSettings(task, method, {})
            yield* checkMemory(task, method, settings, "cpu")
            yield* checkMemory(task, method, settings, "wasm")
          }
        }
      }))
  })

  describe("small lies removed", () => {
    it.effect("lastM beyond innerSteps is refused, naming both", () =>
      Effect.gen(function*() {
        const task = yield* findTask("toy-nonconvex")
        const method = yield* findMethod("t-rhg")
        const dir = out("lastM")
        const error = yield* Effect.flip(run({ task: "toy-nonconvex", method: "t-rhg", seed: 0, settings: { lastM: 100, innerSteps: 5 }, out: dir }))
        assert.include(error.message, "lastM=100")
        assert.include(error.message, "innerSteps=5")
        assert.isFalse(existsSync(dir))
        const chosen = { lastM: 5, innerSteps: 5 }
        yield* checkCombination(yield* resolveSettings(task, method, chosen), chosen)
        // The default lastM (10) above fewer inner steps is not the user's choice: it differentiates them all.
        yield* checkCombination(yield* resolveSettings(task, method, { innerSteps: 5 }), { innerSteps: 5 })
      }))

    it.effect("dataset hints name the --set keys that exist; an unsearchable directory says EACCES, not 'does not exist'", () =>
      Effect.gen(function*() {
        const missing = yield* Effect.flip(datasetDir("mnist"))
        assert.include(missing.message, "--set dataDir=")
        assert.notInclude(missing.message, "--data-dir")
        const locked = path.join(scratch, "locked-data")
        const denied = yield* Effect.flip(loadMnistLike({ dataDir: locked, split: "train", dataset: "mnist" })).pipe(
          Effect.provide(patchedFileSystem(() => ({ exists: (file) => Effect.fail(errnoError("EACCES", "access", file)) })))
        )
        assert.include(denied.message, "EACCES")
        assert.notInclude(denied.message, "does not exist")
        assert.notInclude(denied.message, "--data-dir")
      }))
  })

  describe("gradcheck resolves hyper-cleaning", () => {
    const dataDir = syntheticDataDir()
    for (const net of ["linear", "mlp"]) {
      it.effect(`RHG on hyper-cleaning (${net}) within 1e-3 of the finite differences`, () =>
        Effect.gen(function*() {
          const result = yield* gradcheck({
            task: "hyper-cleaning",
            method: "rhg",
            seed: 2,
            settings: { dataDir, trainSize: 40, valSize: 40, testSize: 40, hidden: 6, innerSteps: 5, innerLr: 0.5, net }
          })
          assert.strictEqual(result.reference, "finite-difference")
          assert.isBelow(result.relError, 1e-3)
        }))
    }
  })
})

describe.concurrent("the command line", { timeout: 240_000 }, () => {
  const dataDir = syntheticDataDir()

  it("SIGINT ends a run cleanly: interrupted summary, checkpoint, one line on how to resume; the resume is bit-identical", async () => {
    const dir = out("sigint")
    const args = ["--method", "iaptt-gm", "--backend", "cpu", "--set", "outerSteps=300", "--checkpoint-every", "1000"]
    const { child, finished } = start(["run", "toy-nonconvex", ...args, "--out", dir])
    await until(() => stepLines(dir) >= 20 || child.exitCode !== null, "20 recorded steps")
    child.kill("SIGINT")
    const ended = await finished
    assert.notStrictEqual(ended.code, 0, "exit non-zero")
    const summary = JSON.parse(readFileSync(path.join(dir, "summary.json"), "utf8"))
    assert.strictEqual(summary.status, "interrupted", ended.stderr)
    assert.strictEqual(summary.signal, "SIGINT")
    assert.isBelow(summary.outerSteps, 300)
    assert.strictEqual(summary.outerSteps, stepLines(dir))
    const checkpoint = JSON.parse(readFileSync(path.join(dir, "checkpoint.json"), "utf8"))
    assert.strictEqual(checkpoint.step, summary.outerSteps, "the last finished step is checkpointed")
    const advice = ended.stderr.split("\n").filter((line) => line.includes("bilevel resume"))
    assert.lengthOf(advice, 1)
    assert.include(advice[0], `bilevel resume ${dir}`)
    assert.deepStrictEqual(leftovers(dir), [])

    const resumed = await bilevel(["resume", dir, "--json"])
    assert.strictEqual(resumed.code, 0, resumed.stderr)
    assert.strictEqual(JSON.parse(resumed.stdout).resumedFrom, summary.outerSteps)
    const uninterrupted = await bilevel(["run", "toy-nonconvex", ...args, "--out", out("sigint-reference")])
    assert.strictEqual(uninterrupted.code, 0, uninterrupted.stderr)
    const lines = (d: string) => readFileSync(path.join(d, "steps.ndjson"), "utf8").trim().split("\n").map((l) => JSON.parse(l))
    const reference = uninterrupted.stdout.match(/record: (.*)$/m)![1]!
    assert.isUndefined(firstStepDifference(lines(dir), lines(reference)))
  })

  it("SIGINT ends a reproduction cleanly: the running record is summarized, no further run starts, the same command resumes", async () => {
    const dir = out("reproduce-sigint")
    const args = [
      "reproduce", "table3", "--backend", "cpu", "--out", dir,
      ...[`dataDir=${dataDir}`, "trainSize=40", "valSize=40", "testSize=40", "innerSteps=3", "outerSteps=400"]
        .flatMap((s) => ["--set", s]),
      ...["methods=rhg,ns", "convergedEvery=0"].flatMap((s) => ["--set", s])
    ]
    const rhg = path.join(dir, "records", "rhg")
    const { child, finished } = start(args)
    await until(() => (existsSync(rhg) && stepLines(rhg) >= 20) || child.exitCode !== null, "20 recorded steps of RHG")
    child.kill("SIGINT")
    const ended = await finished
    assert.notStrictEqual(ended.code, 0, "exit non-zero")
    const summary = JSON.parse(readFileSync(path.join(rhg, "summary.json"), "utf8"))
    assert.strictEqual(summary.status, "interrupted", ended.stderr)
    assert.isBelow(summary.outerSteps, 400)
    const advice = ended.stderr.split("\n").filter((line) => line.includes("Continue with"))
    assert.deepStrictEqual(advice, [
      `SIGINT after outer step ${summary.outerSteps} of 400: checkpoint and summary written. ` +
      "Continue with: the same command without --overwrite (it resumes this record, then runs the rest)"
    ])
    assert.isFalse(existsSync(path.join(dir, "records", "ns")), "NS never started")
    assert.isFalse(existsSync(path.join(dir, "README.md")), "no report from a partial record")
    assert.deepStrictEqual(leftovers(rhg), [])

    const again = await bilevel(args)
    assert.strictEqual(again.code, 0, again.stderr)
    assert.include(again.stderr, `rhg: 400 outer steps (resumed from step ${summary.outerSteps})`)
    for (const method of ["rhg", "ns"]) {
      const finalSummary = JSON.parse(readFileSync(path.join(dir, "records", method, "summary.json"), "utf8"))
      assert.strictEqual(finalSummary.status, "completed", method)
    }
    assert.isTrue(existsSync(path.join(dir, "README.md")))
  })

  it("a resume while the run is still going is refused at once, naming the holder", async () => {
    const dir = out("concurrent")
    const { child, finished } = start([
      "run", "toy-nonconvex", "--method", "iaptt-gm", "--backend", "cpu", "--set", "outerSteps=100000", "--out", dir
    ])
    try {
      await until(() => stepLines(dir) >= 1, "the run to start")
      const refused = await bilevel(["resume", dir])
      assert.strictEqual(refused.code, 1)
      assert.include(refused.stderr, "RunLocked")
      assert.include(refused.stderr, `process ${child.pid} on ${hostname()}`)
      assert.strictEqual(child.exitCode, null, "the run goes on")
    } finally {
      child.kill("SIGKILL")
      await finished
    }
  })

  it("with --json every failure is exactly one JSON object on stdout", async () => {
    const cases = [
      { args: ["run", "toy-nonconvex", "--method", "rhg", "--bogus", "--json"], tag: "UnrecognizedOption" },
      { args: ["run", "toy-nonconvex", "--method", "nosuch", "--json"], tag: "UnknownName" },
      { args: ["replay", path.join(scratch, "nothing-here"), "--json"], tag: "RunRecordError" },
      { args: ["gradcheck", "quadratic", "--method", "first-order", "--set", "dimX=3", "--set", "dimY=3", "--tolerance", "0.01", "--json"], tag: "GradcheckFailed" }
    ]
    for (const { args, tag } of cases) {
      const finished = await bilevel(args)
      assert.strictEqual(finished.code, 1, `${args.join(" ")}: ${finished.stderr}`)
      const lines = finished.stdout.trim().split("\n")
      assert.lengthOf(lines, 1, `one line on stdout: ${finished.stdout}`)
      const { error } = JSON.parse(lines[0]!)
      assert.strictEqual(error._tag, tag)
      assert.isString(error.message)
    }
  })

  it("gradcheck --tolerance: exit 1 above it (with the error), 0 within it", async () => {
    const args = ["gradcheck", "quadratic", "--method", "first-order", "--set", "dimX=3", "--set", "dimY=3"]
    const failing = await bilevel([...args, "--tolerance", "0.01"])
    assert.strictEqual(failing.code, 1)
    assert.include(failing.stderr, "GradcheckFailed")
    assert.include(failing.stdout, "relative error")
    const passing = await bilevel(["gradcheck", "quadratic", "--method", "rhg", "--set", "dimX=3", "--set", "dimY=3", "--set", "innerSteps=300", "--tolerance", "0.01"])
    assert.strictEqual(passing.code, 0, passing.stderr)
  })

  it("compare --metric of an unrecorded metric and reproduce with a repeated seed are refused up front", async () => {
    const fixture = path.join(import.meta.dirname, "fixtures", "records", "quadratic-ls")
    const compared = await bilevel(["compare", fixture, "--metric", "nosuch"])
    assert.strictEqual(compared.code, 1)
    assert.include(compared.stderr, "nosuch")
    assert.include(compared.stderr, "xError")
    const reproduced = await bilevel(["reproduce", "fig1", "--seeds", "0,0", "--out", out("seeds")])
    assert.strictEqual(reproduced.code, 1)
    assert.include(reproduced.stderr, "seed 0 twice")
  })

  // A real full disk where this process may mount one; the injected one above runs everywhere.
  it.skipIf(!mountable)("a run on a full 64 KiB tmpfs ends with ENOSPC naming the file, and no temporary file", async () => {
    const disk = mkdtempSync(path.join(tmpdir(), "bilevel-tmpfs-test-"))
    execFileSync("mount", ["-t", "tmpfs", "-o", "size=64k", "tmpfs", disk])
    try {
      const dir = path.join(disk, "run")
      const finished = await bilevel(["run", "toy-nonconvex", "--method", "rhg", "--backend", "cpu", "--checkpoint-every", "1", "--out", dir])
      assert.strictEqual(finished.code, 1)
      assert.include(finished.stderr, "ENOSPC")
      assert.match(finished.stderr, /steps\.ndjson|checkpoint\.json/)
      assert.deepStrictEqual(leftovers(dir), [])
    } finally {
      execFileSync("umount", [disk])
      rmSync(disk, { recursive: true, force: true })
    }
  })
})
