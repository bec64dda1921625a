// x25519 drop headers for tests that call the drop operations directly (dropopen,
// dropseal) rather than through `keymesh drop`: a sealer's half of the agreement.
import { encodeDropHeader, newDropHeader, type CryptoSuite, type DropHeader } from '../../protocol/src/index.js'

export interface X25519DropFields {
  readonly recipient: string
  readonly key: string
  readonly keyVersion: number
  /** The recipient key's public half. */
  readonly recipientPublic: Uint8Array
  readonly sender?: string
  readonly senderKey?: string
  readonly senderKeyVersion?: number
  /** Another ephemeral public key than the one drawn (e.g. a low-order point); ee is then empty. */
  readonly ephemeralPublic?: Uint8Array
}

/** A header sealed to `recipientPublic`, its bytes, and ee = X25519(ephemeral, recipient). */
export function x25519DropHeader(suite: CryptoSuite, f: X25519DropFields): { header: DropHeader; headerBytes: Uint8Array; ee: Uint8Array } {
  const eph = suite.x25519Generate()
  const ee = f.ephemeralPublic === undefined ? suite.x25519(eph.secretKey, f.recipientPublic) : new Uint8Array(0)
  const header = newDropHeader(suite, {
    mode: 'x25519',
    sender: f.sender ?? '',
    recipient: f.recipient,
    key: f.key,
    keyVersion: f.keyVersion,
    ephemeralPublic: f.ephemeralPublic ?? eph.publicKey,
    ...(f.senderKey !== undefined ? { senderKey: f.senderKey, senderKeyVersion: f.senderKeyVersion ?? 1 } : {}),
  })
  return { header, headerBytes: encodeDropHeader(header), ee }
}
