// Enrollment over the agent's Noise XK session, and the generic error message.
//   agent -> CP  hello    (the payload of XK message 3)
//   CP -> agent  welcome  (or error, then the CP closes the session)
import { endpointUrl, agentId, errorCode, errorText, serviceName, timeMs } from './fields.js'
import { literal, object, optional, str } from './schema.js'

import { PROTOCOL_VERSION } from '../version.js'

export const helloSchema = object({
  /** Exactly 'keymesh/1'; any other value is PROTO_ERR_VERSION, not a field error. */
  protocol: literal(PROTOCOL_VERSION, 'PROTO_ERR_VERSION'),
  service: serviceName,
  /** One-time join token, on first contact only. Its format belongs to the control plane; it is a secret. */
  joinToken: optional(str(256, { min: 16, pattern: /^[A-Za-z0-9._~-]+$/, secret: true })),
  /** Agent software version (e.g. semver), for the operator's eyes. */
  agentVersion: str(64, { pattern: /^[A-Za-z0-9.+_-]+$/ }),
  /** Where peer agents reach this agent's tunnel listener. */
  endpoint: optional(endpointUrl),
})

export const welcomeSchema = object({
  agentId,
  service: serviceName,
  /** The control plane's clock, so an agent can warn about skew against key validity times. */
  serverTime: timeMs,
})

export const errorSchema = object({
  code: errorCode,
  message: errorText,
})
