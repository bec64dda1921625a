// The drop file format, as one import: the header codec (drop-header.ts) and the
// streaming STREAM sealer and opener of the payload (drop-stream.ts). A drop file
// is encodeDropHeader(header) followed by every array DropSealer returns.
export * from './drop-header.js'
export * from './drop-stream.js'
