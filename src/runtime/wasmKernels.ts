/**
 * Faster Slice and SplitV kernels for the wasm backend of tfjs 4.22.
 *
 * The stock Slice kernel reads its input with `backend.readSync`, which on wasm *copies the whole
 * tensor* out of the heap (`HEAPU8.slice`) before copying the part it wants; SplitV and the simple
 * StridedSlice call it once per part. Unflattening a flat weight vector y (`tf.slice`, `tf.split`) so
 * costs a copy of all of y per part: for the hyper-cleaning MLP (y of 238,510 floats) a 4-way split
 * took ≈ 16 ms, more than the step's matrix products. These kernels copy the part straight from a view
 * of the heap, taken after the output is allocated (an allocation may grow the heap and detach older
 * views), exactly as the stock Concat kernel does. Strings keep the stock kernels.
 */
import * as tf from "@tensorflow/tfjs-core"

type TypedArray = Float32Array | Int32Array | Uint8Array

/** The parts of tfjs-backend-wasm's BackendWasm these kernels use. */
interface WasmBackend {
  readonly makeOutput: (shape: Array<number>, dtype: tf.DataType) => tf.TensorInfo
  readonly typedArrayFromHeap: (info: tf.TensorInfo) => TypedArray
}

/** Copies x[begin : begin + size] (row-major) into out, one contiguous innermost run at a time. */
const copySlice = (x: TypedArray, shape: ReadonlyArray<number>, begin: ReadonlyArray<number>, size: ReadonlyArray<number>, out: TypedArray) => {
  const rank = shape.length
  const strides = tf.util.computeStrides([...shape])
  const run = size[rank - 1]!
  const rows = size.slice(0, -1).reduce((a, b) => a * b, 1)
  const index = new Array<number>(Math.max(rank - 1, 0)).fill(0)
  for (let row = 0; row < rows; row++) {
    let offset = begin[rank - 1]!
    for (let d = 0; d < rank - 1; d++) offset += (begin[d]! + index[d]!) * strides[d]!
    // Short runs (a few columns of a wide matrix) by element: a subarray object per run costs more.
    if (run < 64) for (let j = 0; j < run; j++) out[row * run + j] = x[offset + j]!
    else out.set(x.subarray(offset, offset + run), row * run)
    for (let d = rank - 2; d >= 0; d--) {
      if (++index[d]! < size[d]!) break
      index[d] = 0
    }
  }
}

const sliceInfo = (x: tf.TensorInfo, begin: ReadonlyArray<number>, size: ReadonlyArray<number>, backend: WasmBackend): tf.TensorInfo => {
  const out = backend.makeOutput([...size], x.dtype)
  if (tf.util.sizeFromShape([...size]) === 0) return out
  // Views only now: makeOutput may have grown the heap.
  const xValues = backend.typedArrayFromHeap(x)
  const outValues = backend.typedArrayFromHeap(out)
  if (tf.slice_util.isSliceContinous(x.shape, [...begin], [...size])) {
    const offset = tf.slice_util.computeFlatOffset([...begin], tf.util.computeStrides(x.shape))
    outValues.set(xValues.subarray(offset, offset + outValues.length))
  } else {
    copySlice(xValues, x.shape, begin, size, outValues)
  }
  return out
}

const stock = new Map<string, tf.KernelConfig>()

const slice: tf.KernelFunc = (args) => {
  const x = args.inputs["x"]!
  if (x.dtype === "string") return stock.get(tf.Slice)!.kernelFunc(args)
  const { begin, size } = args.attrs as unknown as tf.SliceAttrs
  const [begin_, size_] = tf.slice_util.parseSliceParams(x as tf.TensorInfo as tf.Tensor, begin, size)
  return sliceInfo(x, begin_, size_, args.backend as WasmBackend)
}

const splitV: tf.KernelFunc = (args) => {
  const x = args.inputs["x"]!
  if (x.dtype === "string") return stock.get(tf.SplitV)!.kernelFunc(args)
  const { axis, numOrSizeSplits } = args.attrs as unknown as tf.SplitVAttrs
  const at = tf.util.parseAxisParam(axis, x.shape)[0]!
  const sizes = tf.backend_util.prepareSplitSize(x as tf.TensorInfo as tf.Tensor, numOrSizeSplits, at)
  const begin = new Array<number>(x.shape.length).fill(0)
  return sizes.map((s) => {
    const size = [...x.shape]
    size[at] = s
    const part = sliceInfo(x, begin, size, args.backend as WasmBackend)
    begin[at]! += s
    return part
  })
}

const replacements: ReadonlyArray<tf.KernelConfig> = [
  { kernelName: tf.Slice, backendName: "wasm", kernelFunc: slice },
  { kernelName: tf.SplitV, backendName: "wasm", kernelFunc: splitV }
]

/** Replaces wasm's Slice and SplitV kernels; idempotent. Call once the wasm backend is registered. */
export const installWasmKernels = (): void => {
  for (const config of replacements) {
    const current = tf.getKernel(config.kernelName, "wasm")
    if (current?.kernelFunc === config.kernelFunc) continue
    if (current !== undefined) {
      stock.set(config.kernelName, current)
      tf.unregisterKernel(config.kernelName, "wasm")
    }
    tf.registerKernel(config)
  }
}
