// The two handshakes keymesh runs (see DESIGN.md, "Links and their protocols").
//
//   agent → control plane: Noise_XK. The agent pins the control plane's static key;
//     message 3 carries the agent's static key (and, on first contact, the join token
//     in its payload). Prologue: [keymesh/1, control].
//   agent → agent: Noise_KKpsk0 with PSK = the pair key of one version. Prologue:
//     [keymesh/1, tunnel, pairId, keyVersion, fromService, toService, fromAgent], the
//     same fields the cleartext tunnel preamble carries (tunnel-preamble.ts).
//
// The factories only build HandshakeStates; driving them over a socket is the caller's.
import { protoError } from '../errors.js'
import type { CryptoSuite, KeyPair } from '../crypto/suite.js'
import { HandshakeState, PSK_BYTES } from './handshake-state.js'
import { controlPrologue, tunnelPrologue, type TunnelContext } from './tunnel-preamble.js'

export const XK_PROTOCOL = 'Noise_XK_25519_ChaChaPoly_SHA256'
export const KK_PROTOCOL = 'Noise_KKpsk0_25519_ChaChaPoly_SHA256'

export interface XkInitiatorOptions {
  suite: CryptoSuite
  /** The agent's static key pair. */
  staticKey: KeyPair
  /** The control plane's pinned static public key. */
  controlPlaneKey: Uint8Array
  /** Preset ephemeral: known-answer tests only. */
  ephemeral?: KeyPair
}

export interface XkResponderOptions {
  suite: CryptoSuite
  /** The control plane's static key pair. */
  staticKey: KeyPair
  ephemeral?: KeyPair
}

export interface KkOptions {
  suite: CryptoSuite
  staticKey: KeyPair
  /** The peer agent's static public key, as distributed by the control plane. */
  remoteStatic: Uint8Array
  /** The 32-byte pair key of context.keyVersion. */
  psk: Uint8Array
  /** For the responder: what decodeTunnelPreamble returned. */
  context: TunnelContext
  ephemeral?: KeyPair
}

function checkPsk(psk: Uint8Array): void {
  if (!(psk instanceof Uint8Array) || psk.length !== PSK_BYTES) {
    throw protoError('PROTO_ERR_HANDSHAKE_MISSING_KEY', `pair key must be ${PSK_BYTES} bytes`)
  }
}

/** Agent side of agent → control plane. */
export function createXkInitiator(o: XkInitiatorOptions): HandshakeState {
  if (!o.controlPlaneKey) throw protoError('PROTO_ERR_HANDSHAKE_MISSING_KEY', 'pinned control-plane key')
  return new HandshakeState({
    suite: o.suite,
    protocolName: XK_PROTOCOL,
    initiator: true,
    prologue: controlPrologue(),
    s: o.staticKey,
    rs: o.controlPlaneKey,
    ...(o.ephemeral ? { e: o.ephemeral } : {}),
  })
}

/** Control-plane side; the agent's static key is `remoteStatic` after message 3. */
export function createXkResponder(o: XkResponderOptions): HandshakeState {
  return new HandshakeState({
    suite: o.suite,
    protocolName: XK_PROTOCOL,
    initiator: false,
    prologue: controlPrologue(),
    s: o.staticKey,
    ...(o.ephemeral ? { e: o.ephemeral } : {}),
  })
}

function createKk(o: KkOptions, initiator: boolean): HandshakeState {
  checkPsk(o.psk)
  return new HandshakeState({
    suite: o.suite,
    protocolName: KK_PROTOCOL,
    initiator,
    prologue: tunnelPrologue(o.context),
    s: o.staticKey,
    rs: o.remoteStatic,
    psks: [o.psk],
    ...(o.ephemeral ? { e: o.ephemeral } : {}),
  })
}

/** Initiating agent: send encodeTunnelPreamble(context), then message 1. */
export function createKkInitiator(o: KkOptions): HandshakeState {
  return createKk(o, true)
}

/** Responding agent: build from the decoded preamble after looking up the PSK and peer key. */
export function createKkResponder(o: KkOptions): HandshakeState {
  return createKk(o, false)
}
