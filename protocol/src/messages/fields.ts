// Field types shared by several control messages. Names and ids reuse the
// parsers in names.ts, so a message can only carry what those accept.
import {
  AGENT_ID_PREFIX,
  isEndpointUrl,
  isId,
  isPairId,
  MAX_ENDPOINT_URL,
  MAX_KEY_NAME,
  MAX_KEY_VERSION,
  MAX_PAIR_ID,
  MAX_SERVICE_NAME,
  PUBLIC_KEY_TEXT_LENGTH,
  isKeyName,
  isPublicKeyText,
  isServiceName,
} from '../names.js'
import { int, str } from './schema.js'

/** Largest encoded control message: one record's payload (65,535 - 9 header - 16 tag). */
export const MAX_MESSAGE_BYTES = 65_510

export const serviceName = str(MAX_SERVICE_NAME, { check: isServiceName })
export const keyName = str(MAX_KEY_NAME, { check: isKeyName })
export const keyVersion = int(1, MAX_KEY_VERSION)
export const pairIdField = str(MAX_PAIR_ID, { min: 3, check: isPairId })
export const agentId = str(AGENT_ID_PREFIX.length + 27, { check: (s) => isId(s, AGENT_ID_PREFIX) })
export const publicKeyText = str(PUBLIC_KEY_TEXT_LENGTH, { check: isPublicKeyText })
export const endpointUrl = str(MAX_ENDPOINT_URL, { check: isEndpointUrl })
/** Milliseconds since the epoch, within the range of a JavaScript Date. */
export const timeMs = int(0, 8_640_000_000_000_000)
export const count = int(0, Number.MAX_SAFE_INTEGER)
/** A typed error code from one of the three tables. */
export const errorCode = str(64, { pattern: /^(?:PROTO|CP|AGENT)_ERR_[A-Z0-9_]{1,50}$/ })
/** Human-readable text for an operator; never key material. */
export const errorText = str(512, { min: 0 })
