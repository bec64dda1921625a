// The one protocol version string. It is bound into every Noise prologue and
// carried in the agent's hello, so two builds that disagree fail at the handshake
// or with PROTO_ERR_VERSION instead of misreading each other.
export const PROTOCOL_VERSION = 'keymesh/1'
