// The control plane's error table (CP_ERR_*). Every error that leaves the control
// plane — an HTTP answer, a WebSocket close, a CLI message — carries one of these.
// test/protocol/errors.test.ts keeps every code documented and unique across packages.
import { errorFactory, type ErrorTable } from '../../protocol/src/errors.js'

export const CP_ERRORS = {
  CP_ERR_INTERNAL: { message: 'internal error', status: 500, closeCode: 4500 },
  CP_ERR_BAD_REQUEST: { message: 'request is malformed', status: 400, closeCode: 4501 },
  CP_ERR_NOT_FOUND: { message: 'not found', status: 404, closeCode: 4502 },
  CP_ERR_CONFLICT: { message: 'conflicts with the current state', status: 409, closeCode: 4503 },
  CP_ERR_UNAUTHENTICATED: { message: 'missing or invalid credentials', status: 401, closeCode: 4504 },
  CP_ERR_FORBIDDEN: { message: 'not allowed', status: 403, closeCode: 4505 },
  CP_ERR_STORE: { message: 'the store failed; nothing was changed', status: 503, closeCode: 4506 },
  CP_ERR_MASTER_KEY: { message: 'master key is missing, unreadable or has the wrong form', status: 500, closeCode: 4507 },
  CP_ERR_UNSEAL: { message: 'sealed record failed to open (wrong master key, or the record was moved or altered)', status: 500, closeCode: 4508 },
  CP_ERR_AUDIT: { message: 'audit log write failed; the operation was not applied', status: 503, closeCode: 4509 },
} as const satisfies ErrorTable

export type CpErrorCode = keyof typeof CP_ERRORS

export const cpError = errorFactory(CP_ERRORS)
