/**
 * Tensor backends as scoped layers. Acquiring one registers tfjs's gradients and this project's
 * second-order fixes, loads the backend's package (native and GPU ones by dynamic import, so a
 * missing package fails only that layer), selects it and opens a tensor scope; releasing it
 * disposes every tensor made while it was held. A backend that cannot start is a
 * `BackendUnavailable` naming how to get it — never a silent fallback to another.
 */
import * as tf from "@tensorflow/tfjs-core"
import { Config, Context, Effect, Layer, Schema } from "effect"
import { createRequire } from "node:module"
import * as path from "node:path"
import { BackendUnavailable } from "../domain/errors.ts"
import { installSecondOrderGradients } from "./gradients.ts"
import { registerTfjsGradients } from "./tfjsGradients.ts"
import { installWasmKernels } from "./wasmKernels.ts"
import { defaultWasmThreads, initializeWasmThreads } from "./wasmThreads.ts"

export const BackendName = Schema.Literals(["cpu", "wasm", "tensorflow", "tensorflow-gpu", "webgpu"])
export type BackendName = typeof BackendName.Type

export const backendNames: ReadonlyArray<BackendName> = BackendName.literals

/** What a real run uses unless told otherwise: XNNPACK SIMD, several times faster than `cpu`. */
export const defaultBackend: BackendName = "wasm"

/** A backend, or `auto`: chosen from the size of the problem (see {@link resolveAuto}). */
export const BackendChoice = Schema.Literals([...backendNames, "auto"])
export type BackendChoice = typeof BackendChoice.Type

export const backendChoices: ReadonlyArray<BackendChoice> = BackendChoice.literals

/**
 * LL variables with fewer elements than this run on `cpu` under `auto`. Below it a hypergradient is a
 * few thousand tiny kernels and the two backends cost about the same (measured, RHG on the quadratic
 * task: cpu faster at dimY = 2, equal at 20); from dimY ≈ 100 on wasm wins, by ≈ 2× at 300 and ≈ 20×
 * on hyper-cleaning (docs/benchmarks.md). `cpu` is the tests' reference backend.
 */
export const autoThreshold = 64

/** The backend `auto` picks for a problem whose LL variable y has `lowerLevelSize` elements. */
export const resolveAuto = (lowerLevelSize: number): BackendName => lowerLevelSize < autoThreshold ? "cpu" : "wasm"

export class Backend extends Context.Service<Backend, {
  readonly name: BackendName
  /** tfjs's own name for the active backend (`tensorflow` for both native packages). */
  readonly tfjsName: string
  /** Threads its kernels run on (wasm: `BILEVEL_WASM_THREADS`, default the cores up to 4; others: 1). */
  readonly threads: number
}>()("effect-bilevel/runtime/Backend") {}

const require = createRequire(import.meta.url)

interface Loader {
  readonly tfjsName: string
  readonly load: () => Promise<void>
  /** How many threads its kernels may use, read from the environment; absent: one. */
  readonly threads?: Effect.Effect<number, BackendUnavailable>
  /** Selects it (`select`) on `threads` threads and says how many it got; absent: `select` alone, one. */
  readonly start?: (threads: number, select: () => Promise<void>) => Promise<number>
  /** Runs once the backend is active. */
  readonly ready?: () => void
  readonly hint: string
}

/** `BILEVEL_WASM_THREADS`: how many threads the wasm backend's kernels use (the tfjs backend is process-wide). */
const wasmThreads = Config.Int("BILEVEL_WASM_THREADS").pipe(
  Config.withDefault(defaultWasmThreads()),
  Effect.filterOrFail((n) => n >= 1),
  Effect.mapError(() =>
    new BackendUnavailable({
      backend: "wasm",
      reason: "BILEVEL_WASM_THREADS is not a whole number ≥ 1",
      hint: "Set it to the number of threads the wasm kernels may use (1: tfjs's single-thread build), or unset it."
    })
  )
)

/**
 * Dawn (the `webgpu` package) as `navigator.gpu`, failing when it finds no adapter (no Vulkan device).
 * Node 20 has no `navigator`; a newer Node's keeps its other fields.
 */
const installDawn = async () => {
  const dawn = await import("webgpu" as string) as {
    readonly create: (flags: ReadonlyArray<string>) => { readonly requestAdapter: () => Promise<unknown> }
    readonly globals: object
  }
  Object.assign(globalThis, dawn.globals)
  const gpu = dawn.create([])
  const existing = (globalThis as { navigator?: object }).navigator
  if (existing === undefined) Object.defineProperty(globalThis, "navigator", { value: { gpu }, configurable: true })
  else Object.defineProperty(existing, "gpu", { value: gpu, configurable: true })
  if ((await gpu.requestAdapter()) == null) {
    throw new Error("Dawn found no WebGPU adapter (no Vulkan device)")
  }
}

/**
 * tfjs-webgpu reads a tensor synchronously (dataSync) only by drawing it into an OffscreenCanvas, which
 * Node lacks; its asynchronous reads (data()) work, and every read of the framework's is one. A user's
 * own dataSync gets this said instead of "OffscreenCanvas is not defined".
 */
const explained = new WeakSet<object>()
const explainSynchronousReads = () => {
  const backend = tf.backend() as unknown as { readSync: (dataId: object) => unknown }
  if (explained.has(backend)) return
  explained.add(backend)
  const readSync = backend.readSync.bind(backend)
  backend.readSync = (dataId) => {
    try {
      return readSync(dataId)
    } catch (error) {
      if (!(error instanceof ReferenceError)) throw error
      throw new Error(
        "The webgpu backend cannot read a tensor synchronously in Node (tfjs-webgpu's dataSync draws into an " +
          "OffscreenCanvas, which Node lacks): read it with `await tensor.data()`, as the framework does " +
          "(docs/backends.md)."
      )
    }
  }
}

const loaders: Record<BackendName, Loader> = {
  cpu: {
    tfjsName: "cpu",
    load: async () => void await import("@tensorflow/tfjs-backend-cpu"),
    hint: "Reinstall the project's dependencies (npm ci)."
  },
  wasm: {
    tfjsName: "wasm",
    load: async () => {
      const wasm = await import("@tensorflow/tfjs-backend-wasm")
      // In Node the default lookup misses the .wasm binaries; they sit beside the package's entry.
      wasm.setWasmPaths(path.dirname(require.resolve("@tensorflow/tfjs-backend-wasm")) + path.sep)
    },
    threads: wasmThreads,
    start: initializeWasmThreads,
    ready: installWasmKernels,
    hint: "Reinstall the project's dependencies (npm ci), or use --backend cpu."
  },
  tensorflow: {
    tfjsName: "tensorflow",
    load: async () => void await import("@tensorflow/tfjs-node" as string),
    hint: "Install it with `npm install @tensorflow/tfjs-node@4.22.0` (its install downloads libtensorflow, " +
      "so it needs a machine with internet access), or use --backend wasm."
  },
  "tensorflow-gpu": {
    tfjsName: "tensorflow",
    load: async () => void await import("@tensorflow/tfjs-node-gpu" as string),
    hint: "Install it with `npm install @tensorflow/tfjs-node-gpu@4.22.0` on a machine with CUDA and internet " +
      "access (its install downloads libtensorflow), or use --backend wasm."
  },
  webgpu: {
    tfjsName: "webgpu",
    load: async () => {
      await installDawn()
      await import("@tensorflow/tfjs-backend-webgpu" as string)
    },
    ready: explainSynchronousReads,
    hint: "Install `npm install --no-save webgpu@0.6.2 @tensorflow/tfjs-backend-webgpu@4.22.0` and a Vulkan driver " +
      "(libvulkan1 with a GPU driver, or mesa-vulkan-drivers ≥ 25 for a software device, e.g. from Debian " +
      "bookworm-backports); see docs/backends.md."
  }
}

let gradientsRegistered = false
const registerGradients = async () => {
  if (!gradientsRegistered) {
    await registerTfjsGradients()
    gradientsRegistered = true
  }
  installSecondOrderGradients()
}

const acquire = (name: BackendName, threads: number) =>
  Effect.tryPromise({
    try: async () => {
      const loader = loaders[name]
      tf.enableProdMode()
      await registerGradients()
      await loader.load()
      const select = async () => {
        if (!(await tf.setBackend(loader.tfjsName))) throw new Error(`tfjs could not initialize "${loader.tfjsName}"`)
        await tf.ready()
      }
      const used = loader.start === undefined ? (await select(), 1) : await loader.start(threads, select)
      loader.ready?.()
      tf.engine().startScope()
      return { name, tfjsName: loader.tfjsName, threads: used }
    },
    catch: (cause) =>
      new BackendUnavailable({
        backend: name,
        reason: cause instanceof Error ? cause.message.split("\n")[0]! : String(cause),
        hint: loaders[name].hint
      })
  })

/** The backend `name` as a scoped layer. */
export const layer = (name: BackendName): Layer.Layer<Backend, BackendUnavailable> =>
  Layer.effect(
    Backend,
    Effect.acquireRelease(
      Effect.flatMap(loaders[name].threads ?? Effect.succeed(1), (threads) => acquire(name, threads)),
      () => Effect.sync(() => tf.engine().endScope())
    ).pipe(
      Effect.map(Backend.of)
    )
  )
