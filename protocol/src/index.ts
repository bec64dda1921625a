// The public surface of the protocol package: everything that crosses a wire or
// a disk. Pure code only (test/protocol/purity.test.ts checks it).
export * from './errors.js'
export * from './version.js'
export * from './crypto/index.js'
export * from './noise/index.js'
export * from './record.js'
export * from './tunnel-session.js'
export * from './names.js'
export * from './messages/index.js'
export * from './ciphertext.js'
export * from './drop-format.js'
