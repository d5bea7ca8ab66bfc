/** The bytes of an IDX file (big-endian magic and dimensions, then the data), for the IDX reader's tests. */
export const idx = (magic: number, dims: ReadonlyArray<number>, data: ArrayLike<number>): Uint8Array => {
  const bytes = new Uint8Array(4 + 4 * dims.length + data.length)
  const view = new DataView(bytes.buffer)
  view.setUint32(0, magic)
  dims.forEach((d, i) => view.setInt32(4 + 4 * i, d))
  bytes.set(data, 4 + 4 * dims.length)
  return bytes
}
