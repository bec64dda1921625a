// The public surface of the crypto suite: the interface and its constants, both
// providers, and getSuite for choosing one by name (from config, say).
import { protoError } from '../errors.js'
import { nodeSuite } from './node-provider.js'
import { stablelibSuite } from './stablelib-provider.js'
import type { CryptoSuite } from './suite.js'

export {
  AEAD_KEY_BYTES,
  AEAD_NONCE_BYTES,
  AEAD_TAG_BYTES,
  SHA256_BYTES,
  X25519_KEY_BYTES,
  type CryptoSuite,
  type KeyPair,
  type Plaintext,
  type RandomSource,
} from './suite.js'
export { createNodeSuite, nodeRandom, nodeSuite, type NodeSuiteOptions } from './node-provider.js'
export { ED25519_SIGNATURE_BYTES, isP256Secret, P256_SIGNATURE_BYTES, spkiDer } from './signing.js'
export { createStablelibSuite, stablelibSuite, type StablelibSuiteOptions } from './stablelib-provider.js'

/** Names getSuite accepts; 'node' is the default everywhere. */
export const SUITE_NAMES = ['node', 'stablelib'] as const
export type SuiteName = (typeof SUITE_NAMES)[number]

/**
 * The shared instance of the named provider. The name usually comes from
 * config, so an unknown one is a typed PROTO_ERR_INVALID_ARGUMENT, not a crash;
 * a switch (not an object lookup) so names like `toString` cannot slip through.
 */
export function getSuite(name: SuiteName): CryptoSuite {
  switch (name) {
    case 'node':
      return nodeSuite
    case 'stablelib':
      return stablelibSuite
    default:
      // The name is caller input, so the detail lists the choices instead of echoing it.
      throw protoError('PROTO_ERR_INVALID_ARGUMENT', `crypto suite must be one of ${SUITE_NAMES.join(', ')}`)
  }
}
