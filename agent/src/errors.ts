// The agent's error table (AGENT_ERR_*). Every refusal or failure that leaves the
// agent — a tunnel close, a usage event's reason, a local API answer, a CLI
// message — carries one of these or a PROTO_ERR_*. Close codes 4700-4799, 4800-4809, and
// 4835-4839 of the block 4830-4839 given to the readiness and usage-loss work (4830-4834
// are the control plane's).
// test/protocol/errors.test.ts keeps every code documented and unique across packages.
import { errorFactory, type ErrorTable } from '../../protocol/src/index.js'

export const AGENT_ERRORS = {
  // Configuration and local state (4700-4709).
  AGENT_ERR_CONFIG: { message: 'agent configuration is invalid', status: 400, closeCode: 4700 },
  AGENT_ERR_STATE_DIR: { message: 'the state directory cannot be used', status: 500, closeCode: 4701 },
  AGENT_ERR_IDENTITY: { message: 'the agent identity file is damaged or unreadable', status: 500, closeCode: 4702 },
  AGENT_ERR_NOT_ENROLLED: { message: 'the agent is not enrolled and no join token was given', status: 400, closeCode: 4703 },
  AGENT_ERR_SERVICE_MISMATCH: { message: 'the state directory belongs to an agent of another service or control plane', status: 400, closeCode: 4704 },
  AGENT_ERR_KEYSET_CACHE: { message: 'the cached key set cannot be opened; it is ignored until the control plane sends a fresh one', status: 500, closeCode: 4705 },
  AGENT_ERR_LISTEN: { message: 'cannot listen on the requested address', status: 500, closeCode: 4706 },
  AGENT_ERR_CLOSED: { message: 'the agent is shutting down', status: 503, closeCode: 4707 },
  AGENT_ERR_USAGE: { message: 'invalid command-line usage of an agent command', status: 400, closeCode: 4708 },
  AGENT_ERR_TOKEN_FILE_MODE: { message: 'the token file may be read by other users; it must be mode 0600', status: 400, closeCode: 4709 },
  // The control session (4710-4719).
  AGENT_ERR_CP_UNREACHABLE: { message: 'the control plane cannot be reached', status: 503, closeCode: 4710 },
  AGENT_ERR_CP_REJECTED: { message: 'the control plane refused this agent', status: 403, closeCode: 4711 },
  AGENT_ERR_NOT_READY: { message: 'the agent has no key set yet', status: 503, closeCode: 4712 },
  AGENT_ERR_CP_PROTOCOL: { message: 'the control plane sent a control message that is not allowed at this point', status: 502, closeCode: 4713 },
  AGENT_ERR_TLS: { message: 'the control plane\'s TLS certificate was not accepted (unknown CA, another fingerprint than the pinned one, another host name, expired), or TLS and plain HTTP were mixed up', status: 502, closeCode: 4714 },
  // Tunnels (4720-4749).
  AGENT_ERR_NO_INTENTION: { message: 'no intention allows a connection between these services in this direction', status: 403, closeCode: 4720 },
  AGENT_ERR_UNKNOWN_PEER: { message: 'the peer agent is not in the key set (unknown or revoked)', status: 403, closeCode: 4721 },
  AGENT_ERR_KEY_VERSION: { message: 'the pair key version is unknown, expired or not usable', status: 403, closeCode: 4722 },
  AGENT_ERR_WRONG_SERVICE: { message: 'the tunnel is addressed to another service', status: 403, closeCode: 4723 },
  AGENT_ERR_HANDSHAKE_TIMEOUT: { message: 'the tunnel handshake did not complete in time', status: 408, closeCode: 4724 },
  AGENT_ERR_NO_PEER: { message: 'no reachable agent of the peer service', status: 503, closeCode: 4725 },
  AGENT_ERR_PEER_REVOKED: { message: 'the peer agent was removed from the key set; the tunnel ended', status: 403, closeCode: 4726 },
  AGENT_ERR_KEY_EXPIRED: { message: 'the tunnel\'s pair key version passed its grace period before a new handshake; the tunnel ended', status: 403, closeCode: 4727 },
  AGENT_ERR_UPSTREAM: { message: 'the local service refused or dropped the connection', status: 502, closeCode: 4728 },
  AGENT_ERR_TEXT_FRAME: { message: 'tunnels carry binary WebSocket messages only', status: 400, closeCode: 4729 },
  AGENT_ERR_TUNNEL_LIMIT: { message: 'too many tunnels or pending handshakes', status: 503, closeCode: 4730 },
  AGENT_ERR_TUNNEL_PATH: { message: 'no tunnel endpoint at this path', status: 404, closeCode: 4731 },
  AGENT_ERR_PEER_UNREACHABLE: { message: 'the peer agent could not be reached', status: 502, closeCode: 4732 },
  AGENT_ERR_NO_EXPOSE: { message: 'this agent exposes no local service, so it accepts no tunnels', status: 503, closeCode: 4733 },
  AGENT_ERR_TUNNEL_TRUNCATED: { message: 'the tunnel\'s connection ended without an authenticated close; the local connection was reset', status: 502, closeCode: 4734 },
  // Pre-authentication limits of the tunnel listener (tunnel/admission.ts).
  AGENT_ERR_TUNNEL_SOURCE_LIMIT: { message: 'too many tunnel handshakes in progress from this address; retry later', status: 429, closeCode: 4740 },
  AGENT_ERR_TUNNEL_RATE: { message: 'too many tunnel connections from this address while the agent is busy; retry later', status: 429, closeCode: 4741 },
  AGENT_ERR_HELLO_TIMEOUT: { message: 'no tunnel handshake message arrived in time after connecting', status: 408, closeCode: 4742 },
  AGENT_ERR_TUNNEL_REPLAY: { message: 'the tunnel handshake\'s first message was seen before (a replay)', status: 403, closeCode: 4743 },
  // Usage reports (4750-4759).
  AGENT_ERR_SPOOL: { message: 'the usage spool is damaged or cannot be written', status: 500, closeCode: 4750 },
  AGENT_ERR_SPOOL_FULL: { message: 'the usage spool is full; new usage events are dropped until the control plane is back', status: 507, closeCode: 4751 },
  // Usage that could not be recovered from a damaged spool (usage/spool-salvage.ts): close codes 4835-4839.
  AGENT_ERR_USAGE_LOST: { message: 'usage batches could not be recovered from a damaged spool; the loss is reported to the control plane', status: 500, closeCode: 4835 },
  // Local API and CLI (4760-4779).
  AGENT_ERR_NOT_FOUND: { message: 'no such API route', status: 404, closeCode: 4760 },
  AGENT_ERR_BAD_REQUEST: { message: 'request is malformed', status: 400, closeCode: 4761 },
  AGENT_ERR_API_UNREACHABLE: { message: 'the agent API cannot be reached', status: 503, closeCode: 4762 },
  AGENT_ERR_INTERNAL: { message: 'internal error', status: 500, closeCode: 4763 },
  AGENT_ERR_METHOD_NOT_ALLOWED: { message: 'this API route does not take that method', status: 405, closeCode: 4764 },
  AGENT_ERR_BODY_TOO_LARGE: { message: 'request body is larger than the limit', status: 413, closeCode: 4765 },
  AGENT_ERR_API_TOKEN: { message: 'the local API needs the agent\'s token: send Authorization: Bearer <the contents of STATE_DIR/api.token>', status: 401, closeCode: 4770 },
  // The data API: encrypt, decrypt, rewrap, datakey, agree (kms/*.ts) (4780-4799).
  AGENT_ERR_BUSY: { message: 'too many KMS requests are waiting for the control plane; retry shortly', status: 503, closeCode: 4780 },
  AGENT_ERR_TOO_LARGE: { message: 'the data is larger than the data API accepts; use a data key (envelope encryption) for larger data', status: 413, closeCode: 4781 },
  AGENT_ERR_KMS_TIMEOUT: { message: 'the control plane did not answer the KMS request in time', status: 504, closeCode: 4782 },
  AGENT_ERR_CANCELLED: { message: 'the caller went away before the KMS request was sent', status: 499, closeCode: 4783 },
  // `keymesh drop seal|open` (cli/commands/drop.ts).
  AGENT_ERR_DROP_FILE: { message: 'a drop input or output file cannot be read or written', status: 400, closeCode: 4766 },
  AGENT_ERR_RECIPIENT_KEY: { message: 'the recipient key file does not hold a keymesh x25519 public key with its key name and version', status: 400, closeCode: 4767 },
  AGENT_ERR_DROP_KEY: { message: 'the agent did not answer with a usable drop key', status: 502, closeCode: 4768 },
  AGENT_ERR_SENDER_NOT_VERIFIED: { message: 'the drop names its sender without proving it, and a verified sender was required', status: 403, closeCode: 4769 },
  // The pinned control-plane key (4800-4809).
  AGENT_ERR_CP_KEY_MISMATCH: { message: 'the control plane\'s key is not the one this agent pins (--cp-key-file, --cp-key)', status: 502, closeCode: 4800 },
  // The data API's binary batch bodies (kms/binary-body.ts; 4880-4889).
  AGENT_ERR_BAD_FRAME: { message: 'binary batch body is malformed (a length past the end or over its limit, a field out of range, or bytes left over)', status: 400, closeCode: 4880 },
} as const satisfies ErrorTable

export type AgentErrorCode = keyof typeof AGENT_ERRORS

export const agentError = errorFactory(AGENT_ERRORS)
