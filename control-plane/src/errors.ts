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
  CP_ERR_PKCS11: { message: 'the HSM could not be used through PKCS#11 (module, slot, PIN or key)', status: 500, closeCode: 4650 },
  CP_ERR_DATA_DIR: { message: 'the data directory cannot be used', status: 500, closeCode: 4512 },
  CP_ERR_OUTPUT: { message: 'cannot write the output file', status: 500, closeCode: 4511 },
  CP_ERR_LISTEN: { message: 'cannot listen on the requested address', status: 500, closeCode: 4510 },
  CP_ERR_AUDIT: { message: 'audit log write failed; the operation was not applied', status: 503, closeCode: 4509 },
  // Key lifecycle and policy (key-lifecycle.ts, policy.ts): close codes 4530-4549.
  CP_ERR_KEY_STATE: { message: 'the key version\'s state does not allow this transition', status: 409, closeCode: 4530 },
  CP_ERR_KEY_PRIMARY: { message: 'the primary version cannot be scheduled for destruction; rotate the key first', status: 409, closeCode: 4531 },
  CP_ERR_DESTROY_WINDOW: { message: 'destruction window is outside the allowed range', status: 400, closeCode: 4532 },
  CP_ERR_VERSION_DISABLED: { message: 'key version is disabled or scheduled for destruction', status: 409, closeCode: 4533 },
  CP_ERR_VERSION_DESTROYED: { message: 'key version is destroyed', status: 409, closeCode: 4534 },
  CP_ERR_VERSION_DECRYPT_ONLY: { message: 'key version is decrypt-only and cannot encrypt', status: 409, closeCode: 4535 },
  CP_ERR_VERSION_NOT_PRIMARY: { message: 'only the primary version encrypts', status: 409, closeCode: 4536 },
  CP_ERR_VERSION_BELOW_MIN: { message: 'key version is below the key\'s minimum decryption version', status: 409, closeCode: 4537 },
  CP_ERR_VERSION_EXPIRED: { message: 'key version is past its grace period', status: 409, closeCode: 4538 },
  CP_ERR_MIN_VERSION: { message: 'minimum decryption version must be an integer from 1 to the primary version', status: 400, closeCode: 4539 },
  CP_ERR_ROTATION_PERIOD: { message: 'rotation period is outside the allowed range', status: 400, closeCode: 4540 },
  CP_ERR_TOKEN_FORM: { message: 'token is not of a recognised form', status: 401, closeCode: 4541 },
  // HTTP shell and CLI client (http/*.ts, cli/client.ts, cli/output.ts): close codes 4560-4579.
  CP_ERR_BODY_TOO_LARGE: { message: 'request body exceeds the size limit', status: 413, closeCode: 4560 },
  CP_ERR_BAD_JSON: { message: 'request body is not valid JSON', status: 400, closeCode: 4561 },
  CP_ERR_UNSUPPORTED_MEDIA_TYPE: { message: 'request body must be application/json in UTF-8', status: 415, closeCode: 4562 },
  CP_ERR_UNKNOWN_FIELD: { message: 'request has a field this endpoint does not accept', status: 400, closeCode: 4563 },
  CP_ERR_INVALID_FIELD: { message: 'request field is missing, of the wrong type or out of range', status: 400, closeCode: 4564 },
  CP_ERR_METHOD_NOT_ALLOWED: { message: 'method not allowed on this path', status: 405, closeCode: 4565 },
  CP_ERR_SHUTTING_DOWN: { message: 'the control plane is shutting down', status: 503, closeCode: 4566 },
  CP_ERR_UNREACHABLE: { message: 'cannot reach the control plane', status: 503, closeCode: 4567 },
  CP_ERR_BAD_RESPONSE: { message: 'the control plane\'s answer was not understood', status: 502, closeCode: 4568 },
  CP_ERR_USAGE: { message: 'invalid command-line usage', status: 400, closeCode: 4569 },
  CP_ERR_TOKEN_FILE: { message: 'token file is missing, unreadable or does not hold a token', status: 400, closeCode: 4570 },
  CP_ERR_RATE_LIMITED: { message: 'too many failed authentications from this address; retry later', status: 429, closeCode: 4571 },
  // TLS (http/tls.ts, cli/transport.ts) and why a connection failed (cli/client.ts).
  CP_ERR_TLS: { message: 'the control plane\'s TLS certificate was not accepted, or TLS and plain HTTP were mixed up', status: 502, closeCode: 4572 },
  CP_ERR_TLS_CERT: { message: 'the TLS certificate or key file is missing, unreadable, malformed or not a pair', status: 500, closeCode: 4573 },
  CP_ERR_DNS: { message: 'the control plane\'s host name does not resolve', status: 503, closeCode: 4574 },
  CP_ERR_TIMEOUT: { message: 'the control plane did not answer in time', status: 504, closeCode: 4575 },
  CP_ERR_TOKEN_FILE_MODE: { message: 'the token file may be read by other users; it must be mode 0600', status: 400, closeCode: 4576 },
  // Operator tokens and the audit API/CLI (services/tokens.ts, api/audit.ts, cli/commands/audit.ts): close codes 4600-4609.
  CP_ERR_LAST_ADMIN: { message: 'this is the last active admin token; create another admin token before revoking it', status: 409, closeCode: 4600 },
  CP_ERR_TOKEN_REVOKED: { message: 'the operator token is already revoked', status: 409, closeCode: 4601 },
  CP_ERR_AUDIT_TIME: { message: 'audit time bound must be milliseconds since the epoch or an ISO 8601 time', status: 400, closeCode: 4602 },
  CP_ERR_AUDIT_INCOMPLETE: { message: 'the audit export ended before it was complete; nothing was written', status: 502, closeCode: 4603 },
  CP_ERR_AUDIT_CHECKPOINT: { message: 'the audit checkpoint is malformed or not signed by the trusted audit key', status: 400, closeCode: 4604 },
  CP_ERR_AUDIT_KEY: { message: 'the audit public or signing key is missing or malformed', status: 400, closeCode: 4605 },
  CP_ERR_NO_CHECKPOINT: { message: 'no audit checkpoint has been made yet', status: 404, closeCode: 4606 },
  // An offline check that could vouch for nothing (cli/commands/audit.ts): close codes 4800-4809.
  CP_ERR_AUDIT_UNVERIFIED: { message: 'nothing trusted was checked: the audit entries form a chain, which whoever can write the database can recompute', status: 422, closeCode: 4801 },
  // Key custody (custody/*.ts, api/custody.ts, cli/commands/custody.ts): close codes 4690-4699.
  CP_ERR_SEALED: { message: 'the control plane is sealed: keymesh unseal with the installation\'s shares', status: 503, closeCode: 4690 },
  CP_ERR_UNSEAL_SHARES: { message: 'the shares given do not combine to this installation\'s master key; progress starts over: give threshold shares again', status: 400, closeCode: 4691 },
  // Keys and grants (services/keys.ts, api/keys.ts, cli/commands/key.ts): close codes 4580-4589.
  CP_ERR_KEY_EXISTS: { message: 'a key with this name already exists', status: 409, closeCode: 4580 },
  CP_ERR_KEY_NOT_FOUND: { message: 'no such key', status: 404, closeCode: 4581 },
  CP_ERR_KEY_VERSION_NOT_FOUND: { message: 'no such key version', status: 404, closeCode: 4582 },
  CP_ERR_KEY_NAME: { message: 'key name breaks the naming rules', status: 400, closeCode: 4583 },
  CP_ERR_KEY_TYPE: { message: 'this operation does not apply to a key of this type', status: 409, closeCode: 4584 },
  CP_ERR_GRANT: { message: 'grant names an invalid service or right', status: 400, closeCode: 4585 },
  CP_ERR_FILE_EXISTS: { message: 'output file exists; pass --force to overwrite it', status: 409, closeCode: 4586 },
  // Intentions, pair keys and the scheduler (services/pairs.ts, api/intentions.ts, scheduler.ts): close codes 4590-4599.
  CP_ERR_SERVICE_NAME: { message: 'service name must be 1-63 of a-z, 0-9 and "-", not starting or ending with "-"', status: 400, closeCode: 4590 },
  CP_ERR_SAME_SERVICE: { message: 'an intention or pair needs two distinct services', status: 400, closeCode: 4591 },
  CP_ERR_INTENTION_NOT_FOUND: { message: 'no such intention', status: 404, closeCode: 4592 },
  CP_ERR_PAIR_NOT_FOUND: { message: 'no pair key for these services (allow an intention between them first)', status: 404, closeCode: 4593 },
  CP_ERR_POLICY_TOO_BROAD: { message: 'wildcard intentions would call for too many pair keys; name services instead', status: 400, closeCode: 4594 },
  CP_ERR_INTENTION_DENIED: { message: 'a deny rule for these services exists; remove it before allowing', status: 409, closeCode: 4595 },
  // Enrollment, agents and the agent endpoint (services/enrollment.ts, agent-endpoint/*.ts): close codes 4610-4629.
  CP_ERR_JOIN_TOKEN: { message: 'join token is unknown, malformed, expired or already used', status: 401, closeCode: 4610 },
  CP_ERR_AGENT_REVOKED: { message: 'agent is revoked', status: 403, closeCode: 4611 },
  CP_ERR_AGENT_UNKNOWN: { message: 'agent static key is not enrolled and no join token was given', status: 401, closeCode: 4612 },
  CP_ERR_SERVICE_MISMATCH: { message: 'agent or join token belongs to another service', status: 403, closeCode: 4613 },
  CP_ERR_HANDSHAKE_TIMEOUT: { message: 'agent handshake did not finish in time', status: 408, closeCode: 4614 },
  CP_ERR_HANDSHAKE_LIMIT: { message: 'too many agent handshakes in progress; retry later', status: 503, closeCode: 4615 },
  CP_ERR_AGENT_FRAME: { message: 'agent endpoint accepts binary WebSocket messages only', status: 400, closeCode: 4616 },
  CP_ERR_AGENT_MESSAGE: { message: 'agent sent a control message that is not allowed at this point', status: 400, closeCode: 4617 },
  CP_ERR_AGENT_REPLACED: { message: 'a newer session of the same agent replaced this one', status: 409, closeCode: 4618 },
  CP_ERR_AGENT_BACKPRESSURE: { message: 'agent is not reading; too many bytes are waiting to be sent', status: 503, closeCode: 4619 },
  CP_ERR_AGENT_PATH: { message: 'no WebSocket endpoint at this path; agents connect to /v1/agent', status: 404, closeCode: 4620 },
  // Pre-authentication limits of the agent endpoint (agent-endpoint/admission.ts).
  CP_ERR_HANDSHAKE_SOURCE_LIMIT: { message: 'too many agent handshakes in progress from this address; retry later', status: 429, closeCode: 4625 },
  CP_ERR_HANDSHAKE_RATE: { message: 'too many agent connections from this address while the control plane is busy; retry later', status: 429, closeCode: 4626 },
  CP_ERR_HELLO_TIMEOUT: { message: 'no handshake message arrived in time after connecting', status: 408, closeCode: 4627 },
  CP_ERR_HANDSHAKE_REPLAY: { message: 'the handshake\'s first message was seen before (a replay)', status: 403, closeCode: 4628 },
  // KMS operations over the agent session (services/kms.ts, services/kms-audit.ts): close codes 4630-4649.
  CP_ERR_DECRYPT: { message: 'ciphertext does not open with this key version and context', status: 400, closeCode: 4630 },
  CP_ERR_NOT_RECIPIENT: { message: 'the context names another service as the recipient', status: 403, closeCode: 4631 },
  CP_ERR_NOT_SENDER: { message: 'the context names another service as the sender', status: 403, closeCode: 4632 },
  CP_ERR_CIPHERTEXT_KEY: { message: 'the ciphertext names a different key than the request', status: 400, closeCode: 4633 },
  CP_ERR_PUBLIC_KEY: { message: 'public key is not a usable X25519 point (low order)', status: 400, closeCode: 4634 },
  CP_ERR_KMS_BUSY: { message: 'too many KMS requests in flight from this agent; retry when some have answered', status: 503, closeCode: 4635 },
  CP_ERR_KMS_TOO_LARGE: { message: 'the plaintext would exceed the KMS size limit; use a data key for larger data', status: 413, closeCode: 4636 },
  // Usage-aware destruction and key import (services/key-usage.ts, services/key-import.ts): close codes 4670-4679.
  CP_ERR_KEY_IN_USE: { message: 'the key version was used recently; schedule its destruction with --force --reason to override', status: 409, closeCode: 4670 },
  CP_ERR_KEY_IMPORT: { message: 'the key import was refused: unknown, expired or used import id, or wrapped material that does not open or has the wrong length', status: 400, closeCode: 4671 },
  // Backup and restore (store/backup*.ts, api/backup.ts, cli/commands/backup.ts): close codes 4680-4689.
  CP_ERR_BACKUP_CORRUPT: { message: 'the backup file is truncated, damaged or not a keymesh backup; nothing was restored', status: 400, closeCode: 4680 },
  CP_ERR_BACKUP_VERSION: { message: 'the backup file is of a format or schema version this keymesh cannot restore', status: 400, closeCode: 4681 },
  CP_ERR_BACKUP_CHAIN: { message: 'the backup\'s audit chain does not verify; nothing was restored', status: 400, closeCode: 4682 },
  CP_ERR_BACKUP_SEAL: { message: 'the backup\'s seal does not open with this master key; nothing was restored', status: 400, closeCode: 4684 },
  CP_ERR_STORE_NOT_EMPTY: { message: 'the target store is not empty; a copy or restore never merges', status: 409, closeCode: 4683 },
  // Readiness and store health (health/*.ts, store/sqlite-integrity.ts): close codes 4830-4839.
  CP_ERR_STORE_WRITE: { message: 'the store refuses writes (disk full, read-only, I/O error, or the database is gone); the control plane is not ready until a write succeeds', status: 503, closeCode: 4830 },
  CP_ERR_STORE_CORRUPT: { message: 'the SQLite database is damaged; restore it from a backup (keymesh backup restore) or salvage it with sqlite3 .recover', status: 500, closeCode: 4831 },
  CP_ERR_AUDIT_BROKEN: { message: 'the scheduled audit verification found the chain broken: an entry was changed, inserted or removed; run keymesh audit verify', status: 500, closeCode: 4832 },
  // The operator console (ui/*.ts): close codes 4850-4859.
  CP_ERR_CONSOLE_SESSION: { message: 'the console session is unknown, expired or signed out, or its operator token is revoked or expired; sign in again', status: 401, closeCode: 4850 },
  CP_ERR_CONSOLE_CSRF: { message: 'a change from the console must carry its session\'s CSRF token and come from the console\'s own origin', status: 403, closeCode: 4851 },
  CP_ERR_CONSOLE_LINK: { message: 'the sign-in link is unknown, expired or already used; make another with keymesh console link', status: 401, closeCode: 4852 },
  CP_ERR_CONSOLE_BEARER: { message: 'sign-in links are made with an operator token, not from a console session', status: 403, closeCode: 4853 },
} as const satisfies ErrorTable

export type CpErrorCode = keyof typeof CP_ERRORS

export const cpError = errorFactory(CP_ERRORS)
