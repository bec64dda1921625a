// Public surface of the Noise layer.
export { CipherState, MAX_NONCE, encodeNonce } from './cipher-state.js'
export { SymmetricState, noiseHkdf2, noiseHkdf3 } from './symmetric-state.js'
export { PATTERN_NAMES, SUITE_SUFFIX, getPattern, parseProtocolName, type HandshakePattern, type PreToken, type Token } from './patterns.js'
export { HandshakeState, MAX_NOISE_MESSAGE, PSK_BYTES, type HandshakeOptions, type TransportPair } from './handshake-state.js'
export {
  KK_PROTOCOL,
  XK_PROTOCOL,
  createKkInitiator,
  createKkResponder,
  createXkInitiator,
  createXkResponder,
  type KkOptions,
  type XkInitiatorOptions,
  type XkResponderOptions,
} from './keymesh-handshakes.js'
export {
  MAX_PREAMBLE_BYTES,
  PREAMBLE_VERSION,
  checkTunnelContext,
  controlPrologue,
  decodeTunnelPreamble,
  encodePrologue,
  encodeTunnelPreamble,
  tunnelPrologue,
  type TunnelContext,
} from './tunnel-preamble.js'
