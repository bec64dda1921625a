// An error the control plane answered a KMS request with, as a KeymeshError that
// keeps the control plane's own code, so callers of the agent API see the real
// reason (CP_ERR_FORBIDDEN, CP_ERR_DECRYPT, PROTO_ERR_CIPHERTEXT_FORMAT, ...).
//
// The agent may not import control-plane/, so the HTTP status and close code of
// the CP_ERR_* codes a KMS call can end with are repeated here;
// test/agent/kms/multiplexer.test.ts checks them against the control plane's table.
// PROTO_ERR_* codes come from the protocol table; an unknown code answers 502
// (the control plane said something this agent does not know).
import { KeymeshError, PROTO_ERRORS, type ErrorSpec } from '../../../protocol/src/index.js'

type Status = readonly [status: number, closeCode: number]

/** CP_ERR_* codes a kms.response may carry: [HTTP status, close code] as control-plane/src/errors.ts declares them. */
export const CP_KMS_STATUS: Readonly<Record<string, Status>> = {
  CP_ERR_INTERNAL: [500, 4500],
  CP_ERR_BAD_REQUEST: [400, 4501],
  CP_ERR_NOT_FOUND: [404, 4502],
  CP_ERR_FORBIDDEN: [403, 4505],
  CP_ERR_STORE: [503, 4506],
  CP_ERR_MASTER_KEY: [500, 4507],
  CP_ERR_UNSEAL: [500, 4508],
  CP_ERR_SEALED: [503, 4690],
  CP_ERR_AUDIT: [503, 4509],
  CP_ERR_SHUTTING_DOWN: [503, 4566],
  CP_ERR_VERSION_DISABLED: [409, 4533],
  CP_ERR_VERSION_DESTROYED: [409, 4534],
  CP_ERR_VERSION_DECRYPT_ONLY: [409, 4535],
  CP_ERR_VERSION_NOT_PRIMARY: [409, 4536],
  CP_ERR_VERSION_BELOW_MIN: [409, 4537],
  CP_ERR_VERSION_EXPIRED: [409, 4538],
  CP_ERR_KEY_NOT_FOUND: [404, 4581],
  CP_ERR_KEY_VERSION_NOT_FOUND: [404, 4582],
  CP_ERR_KEY_NAME: [400, 4583],
  CP_ERR_KEY_TYPE: [409, 4584],
  CP_ERR_DECRYPT: [400, 4630],
  CP_ERR_NOT_RECIPIENT: [403, 4631],
  CP_ERR_NOT_SENDER: [403, 4632],
  CP_ERR_CIPHERTEXT_KEY: [400, 4633],
  CP_ERR_PUBLIC_KEY: [400, 4634],
  CP_ERR_KMS_BUSY: [503, 4635],
  CP_ERR_KMS_TOO_LARGE: [413, 4636],
}

const UNKNOWN: Status = [502, 4500]

/** The control plane's `{code, message}` as a KeymeshError with that code; the message is the control plane's (it holds no secret by contract). */
export function remoteError(code: string, message: string): KeymeshError {
  const proto = Object.hasOwn(PROTO_ERRORS, code) ? (PROTO_ERRORS as Readonly<Record<string, ErrorSpec>>)[code] : undefined
  const [status, closeCode] = proto !== undefined ? [proto.status, proto.closeCode] : Object.hasOwn(CP_KMS_STATUS, code) ? (CP_KMS_STATUS[code] as Status) : UNKNOWN
  return new KeymeshError(code, { message, status, closeCode })
}
