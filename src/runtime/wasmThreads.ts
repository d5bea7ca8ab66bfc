/**
 * Threads for tfjs-backend-wasm in Node.
 *
 * The package ships a threaded SIMD build (XNNPACK on Emscripten pthreads) but never uses it in Node:
 * `WASM_HAS_MULTITHREAD_SUPPORT` is hard-coded false there (tensorflow/tfjs#3830). Setting the flag is
 * not enough, for three reasons this module works around, only while the backend initializes:
 * - the pthread workers start from `blob:` URLs (the worker script, and the module factory it imports),
 *   which Node's `worker_threads` refuse: the blobs are written to files of a temporary folder instead;
 * - the factory's source is the bundle's, so it names the bundle's `require$$…` and `commonjsGlobal`:
 *   the file defines them;
 * - the C++ side caps the thread count at half the logical cores (it assumes two hyperthreads per
 *   core), so a 2-core machine gets one thread: `os.cpus()` reports twice the threads asked for.
 * Afterwards the workers are unref'd, so they do not keep a finished process alive. XNNPACK splits a
 * product by output tiles, each summed in the same order on any thread: results are bit-identical to
 * the one-thread build (test/wasmThreads.test.ts).
 */
import * as tf from "@tensorflow/tfjs-core"
import * as fs from "node:fs"
import { createRequire } from "node:module"
import * as os from "node:os"
import * as path from "node:path"

/** Threads the wasm backend uses unless `BILEVEL_WASM_THREADS` says otherwise: the cores, at most 4. */
export const defaultWasmThreads = (): number => Math.min(os.availableParallelism(), 4)

/**
 * Runs `initialize` (which selects the wasm backend) with `threads` threads; 1 keeps tfjs's own
 * single-thread build. Returns the thread count XNNPACK reports.
 */
export const initializeWasmThreads = async (threads: number, initialize: () => Promise<void>): Promise<number> => {
  const wasm = await import("@tensorflow/tfjs-backend-wasm")
  if (threads <= 1) {
    await initialize()
    return wasm.getThreadsCount()
  }
  tf.env().set("WASM_HAS_MULTITHREAD_SUPPORT", true)
  wasm.setThreadsCount(threads)
  const folder = fs.mkdtempSync(path.join(os.tmpdir(), "bilevel-wasm-"))
  const restore = patchForWorkers(folder, threads)
  try {
    await initialize()
  } finally {
    restore()
    // Every worker has imported its files before the module resolves (they are run dependencies).
    fs.rmSync(folder, { recursive: true, force: true })
  }
  for (const worker of workers()) worker.unref()
  return wasm.getThreadsCount()
}

const moduleSourcePrefix = "var WasmBackendModuleThreadedSimd"
const bundleNames = "var require$$0=require('fs'),require$$1=require('path'),require$$3=require('perf_hooks')," +
  "require$$4=require('os'),commonjsGlobal=globalThis,_scriptDir=undefined;"
const workerImport =
  "var objectUrl=URL.createObjectURL(e.data.urlOrBlob);importScripts(objectUrl);URL.revokeObjectURL(objectUrl)"

/** Installs the three patches of the module comment; returns what undoes them. */
const patchForWorkers = (folder: string, threads: number): (() => void) => {
  const nodeOs = createRequire(import.meta.url)("node:os") as { cpus: typeof os.cpus }
  const { Blob } = globalThis
  const { createObjectURL } = URL
  const { cpus } = nodeOs
  const sources = new WeakMap<Blob, string>()
  let moduleFile: string | undefined
  let written = 0
  const write = (name: string, text: string) => {
    const file = path.join(folder, `${written++}-${name}`)
    fs.writeFileSync(file, text)
    return file
  }
  globalThis.Blob = class extends Blob {
    constructor(...args: ConstructorParameters<typeof Blob>) {
      super(...args)
      const [parts] = args
      const text = (parts ?? []).map(String).join("")
      sources.set(this, text)
      if (text.startsWith(moduleSourcePrefix)) moduleFile = write("module.js", bundleNames + text)
    }
  }
  URL.createObjectURL = (blob: Blob) => {
    const text = sources.get(blob)
    if (text === undefined || moduleFile === undefined || !text.includes(workerImport)) {
      throw new Error("tfjs-backend-wasm's threaded build is not the 4.22 one this project patches: set BILEVEL_WASM_THREADS=1")
    }
    return write("worker.js", text.replace(workerImport, `importScripts(${JSON.stringify(moduleFile)})`))
  }
  nodeOs.cpus = () => Array.from({ length: 2 * threads }, () => cpus()[0]!)
  return () => {
    globalThis.Blob = Blob
    URL.createObjectURL = createObjectURL
    nodeOs.cpus = cpus
  }
}

interface PThreads {
  readonly unusedWorkers: ReadonlyArray<{ readonly unref: () => void }>
  readonly runningWorkers: ReadonlyArray<{ readonly unref: () => void }>
}

const workers = () => {
  const pthreads = (tf.backend() as unknown as { wasm: { PThread?: PThreads } }).wasm.PThread
  return pthreads === undefined ? [] : [...pthreads.unusedWorkers, ...pthreads.runningWorkers]
}
