/** What a benchmark ran on: machine, runtime and library versions, the backend's capabilities, the load. */
import * as tf from "@tensorflow/tfjs-core"
import { createRequire } from "node:module"
import * as os from "node:os"

const require = createRequire(import.meta.url)

const version = (pkg: string): string => {
  try {
    return (require(`${pkg}/package.json`) as { version: string }).version
  } catch {
    return "not installed"
  }
}

export interface Machine {
  readonly cpu: string
  readonly cores: number
  readonly memoryGiB: number
  readonly os: string
  readonly node: string
  readonly versions: Record<string, string>
}

export const machine = (): Machine => ({
  cpu: os.cpus()[0]?.model ?? "unknown",
  cores: os.cpus().length,
  memoryGiB: Math.round(os.totalmem() / 2 ** 30),
  os: `${os.type()} ${os.release()} ${os.arch()}`,
  node: process.version,
  versions: Object.fromEntries(
    [
      "@tensorflow/tfjs-core",
      "@tensorflow/tfjs-backend-cpu",
      "@tensorflow/tfjs-backend-wasm",
      "@tensorflow/tfjs-backend-webgpu",
      "@tensorflow/tfjs-node",
      "@tensorflow/tfjs-node-gpu",
      "webgpu",
      "effect"
    ].map((pkg) => [pkg, version(pkg)])
  )
})

/** 1-, 5- and 15-minute load averages. */
export const loadAverage = (): ReadonlyArray<number> => os.loadavg().map((l) => Math.round(l * 100) / 100)

/** The active backend's capabilities that decide its speed (wasm: SIMD and threads). */
export const backendFlags = async (): Promise<Record<string, unknown>> => {
  const name = tf.getBackend()
  if (name !== "wasm") return { backend: name }
  const wasm = await import("@tensorflow/tfjs-backend-wasm")
  return {
    backend: name,
    simd: await tf.env().getAsync("WASM_HAS_SIMD_SUPPORT"),
    multithread: await tf.env().getAsync("WASM_HAS_MULTITHREAD_SUPPORT"),
    threads: wasm.getThreadsCount()
  }
}
