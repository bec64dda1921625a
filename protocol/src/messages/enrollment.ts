// Enrollment over the agent's Noise XK session, and the generic error message.
//   CP -> agent  features (the payload of XK message 2; empty from a control plane
//                          that predates it: control-features.ts)
//   agent -> CP  hello    (the payload of XK message 3)
//   CP -> agent  welcome  (or error, then the CP closes the session)
import { endpointUrl, agentId, errorCode, errorText, serviceName, timeMs } from './fields.js'
import { array, literal, object, optional, str } from './schema.js'

import { PROTOCOL_VERSION } from '../version.js'

/**
 * Names of optional parts of the conversation (control-features.ts). A name one side
 * does not know is ignored, so the list may grow without a new protocol version.
 */
export const featureList = array(str(32, { pattern: /^[a-z][a-z0-9.-]*$/ }), 16)

/** What the control plane speaks beyond the base conversation: XK message 2's payload. */
export const featuresSchema = object({ features: featureList })

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
  /**
   * The features this agent speaks; sent only to a control plane that offered some in
   * XK message 2 (an older one refuses a hello with a field it does not know).
   */
  features: optional(featureList),
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
