// Errors that cross a module boundary carry a stable code, the HTTP status and
// WebSocket close code that go with it, and the cause. Each package declares one
// table (PROTO_ERR_* here, CP_ERR_* in control-plane/, AGENT_ERR_* in agent/);
// test/protocol/errors.test.ts keeps every table documented and every code unique.
//
// Messages are fixed per code plus an optional detail. A detail is written by
// the code that throws and must never contain key material or caller data.

export interface ErrorSpec {
  /** One sentence saying what went wrong, without key material or payload. */
  readonly message: string
  /** HTTP status when the error answers an API request. */
  readonly status: number
  /** WebSocket close code (4000-4999, application range) when it ends a session. */
  readonly closeCode: number
}

export type ErrorTable = Readonly<Record<string, ErrorSpec>>

export class KeymeshError extends Error {
  readonly code: string
  readonly status: number
  readonly closeCode: number
  readonly detail: string | undefined

  constructor(code: string, spec: ErrorSpec, detail?: string, options?: { cause?: unknown }) {
    super(detail ? `${spec.message}: ${detail}` : spec.message, options)
    this.name = 'KeymeshError'
    this.code = code
    this.status = spec.status
    this.closeCode = spec.closeCode
    this.detail = detail
  }

  toJSON(): { code: string; message: string } {
    return { code: this.code, message: this.message }
  }
}

/**
 * Binds a table to a factory: `const err = errorFactory(TABLE); throw err('X_ERR_Y', 'detail')`.
 * The code parameter is typed by the table, so a misspelt code does not compile.
 */
export function errorFactory<T extends ErrorTable>(table: T) {
  return (code: keyof T & string, detail?: string, options?: { cause?: unknown }): KeymeshError =>
    new KeymeshError(code, table[code] as ErrorSpec, detail, options)
}

/** True when `e` is a KeymeshError whose code is in `table` (or equals `code`). */
export function isKeymeshError(e: unknown, code?: string): e is KeymeshError {
  return e instanceof KeymeshError && (code === undefined || e.code === code)
}

export const PROTO_ERRORS = {
  PROTO_ERR_INVALID_KEY: {
    message: 'key has the wrong length or form',
    status: 400,
    closeCode: 4400,
  },
  PROTO_ERR_LOW_ORDER_POINT: {
    message: 'X25519 produced an all-zero shared secret (low-order or invalid public key)',
    status: 400,
    closeCode: 4401,
  },
  PROTO_ERR_DECRYPT: {
    message: 'authentication failed: ciphertext, tag or associated data does not match the key',
    status: 400,
    closeCode: 4402,
  },
  PROTO_ERR_INVALID_NONCE: {
    message: 'nonce has the wrong length',
    status: 400,
    closeCode: 4403,
  },
  PROTO_ERR_NONCE_EXHAUSTED: {
    message: 'cipher nonce space exhausted; a new handshake is required',
    status: 409,
    closeCode: 4404,
  },
  PROTO_ERR_INVALID_ARGUMENT: {
    message: 'invalid argument',
    status: 400,
    closeCode: 4405,
  },
  PROTO_ERR_UNKNOWN_PATTERN: {
    message: 'unknown or unsupported Noise protocol name or pattern',
    status: 400,
    closeCode: 4410,
  },
  PROTO_ERR_HANDSHAKE_STATE: {
    message: 'handshake call out of turn: not this side\'s turn, or the handshake is finished or failed',
    status: 409,
    closeCode: 4411,
  },
  PROTO_ERR_HANDSHAKE_MESSAGE: {
    message: 'handshake message is malformed or has the wrong length',
    status: 400,
    closeCode: 4412,
  },
  PROTO_ERR_HANDSHAKE_MISSING_KEY: {
    message: 'handshake needs a key that was not supplied (local static, remote static or PSK)',
    status: 400,
    closeCode: 4413,
  },
  PROTO_ERR_HANDSHAKE_PROLOGUE: {
    message: 'handshake prologue field is invalid',
    status: 400,
    closeCode: 4414,
  },
  PROTO_ERR_VERSION: {
    message: 'unsupported protocol version',
    status: 400,
    closeCode: 4415,
  },
  PROTO_ERR_RECORD_MALFORMED: {
    message: 'record is malformed (too short or bad header)',
    status: 400,
    closeCode: 4420,
  },
  PROTO_ERR_RECORD_TOO_LARGE: {
    message: 'record exceeds the maximum size',
    status: 413,
    closeCode: 4421,
  },
  PROTO_ERR_RECORD_TYPE: {
    message: 'record has an unknown type',
    status: 400,
    closeCode: 4422,
  },
  PROTO_ERR_RECORD_COUNTER: {
    message: 'record counter is not the next expected value (replayed, reordered or dropped record)',
    status: 400,
    closeCode: 4423,
  },
  PROTO_ERR_RECORD_LIMIT: {
    message: 'session reached its record or byte limit; a new handshake is required',
    status: 409,
    closeCode: 4424,
  },
  PROTO_ERR_SESSION_CLOSED: {
    message: 'session is closed',
    status: 409,
    closeCode: 4425,
  },
  PROTO_ERR_SESSION_FAILED: {
    message: 'session failed earlier and accepts nothing more',
    status: 409,
    closeCode: 4426,
  },
  PROTO_ERR_REHANDSHAKE: {
    message: 'in-band re-handshake broke the protocol (out of turn, or a field other than the key version changed)',
    status: 400,
    closeCode: 4427,
  },
  PROTO_ERR_MESSAGE_MALFORMED: {
    message: 'control message is not valid',
    status: 400,
    closeCode: 4430,
  },
  PROTO_ERR_MESSAGE_TYPE: {
    message: 'control message has an unknown type',
    status: 400,
    closeCode: 4431,
  },
  PROTO_ERR_MESSAGE_FIELD: {
    message: 'control message field is missing, unknown, of the wrong type or out of range',
    status: 400,
    closeCode: 4432,
  },
  PROTO_ERR_MESSAGE_TOO_LARGE: {
    message: 'control message exceeds the maximum size',
    status: 413,
    closeCode: 4433,
  },
  PROTO_ERR_MESSAGE_ORDER: {
    message: 'control message out of order: the conversation does not allow it at this point',
    status: 409,
    closeCode: 4434,
  },
  PROTO_ERR_MESSAGE_DIRECTION: {
    message: 'control message of a type its sender never sends',
    status: 400,
    closeCode: 4435,
  },
  PROTO_ERR_KEYSET: {
    message: 'key set does not add up: more pairs than keyset.begin announced, or keyset.end with another generation or too few pairs',
    status: 400,
    closeCode: 4436,
  },
  PROTO_ERR_WELCOME_SERVICE: {
    message: 'welcome names another service than the hello did',
    status: 400,
    closeCode: 4437,
  },
  PROTO_ERR_MESSAGE_BACKLOG: {
    message: 'too many control messages before the first key set was out',
    status: 429,
    closeCode: 4438,
  },
  PROTO_ERR_INVALID_NAME: {
    message: 'name breaks the naming rules',
    status: 400,
    closeCode: 4440,
  },
  PROTO_ERR_INVALID_PUBLIC_KEY_TEXT: {
    message: 'public key text is not of the form x25519:<43 base64url characters>',
    status: 400,
    closeCode: 4441,
  },
  PROTO_ERR_INVALID_ID: {
    message: 'identifier is malformed',
    status: 400,
    closeCode: 4442,
  },
  PROTO_ERR_CIPHERTEXT_FORMAT: {
    message: 'ciphertext is not well-formed km1 text',
    status: 400,
    closeCode: 4450,
  },
  PROTO_ERR_CIPHERTEXT_VERSION: {
    message: 'unsupported ciphertext format version',
    status: 400,
    closeCode: 4451,
  },
  PROTO_ERR_SIGNATURE_FORMAT: {
    message: 'signature or MAC is not well-formed km1s or km1m text',
    status: 400,
    closeCode: 4456,
  },
  PROTO_ERR_DROP_FORMAT: {
    message: 'drop header is malformed',
    status: 400,
    closeCode: 4460,
  },
  PROTO_ERR_DROP_VERSION: {
    message: 'unsupported drop format version',
    status: 400,
    closeCode: 4461,
  },
  PROTO_ERR_DROP_TRUNCATED: {
    message: 'drop is truncated (get the whole file again)',
    status: 400,
    closeCode: 4462,
  },
  PROTO_ERR_DROP_TRAILING: {
    message: 'drop has data after its final chunk',
    status: 400,
    closeCode: 4463,
  },
  PROTO_ERR_DROP_TOO_LARGE: {
    message: 'drop exceeds the maximum number of chunks',
    status: 413,
    closeCode: 4464,
  },
  PROTO_ERR_DROP_STATE: {
    message: 'drop sealer or opener used after finish, failure or destroy',
    status: 409,
    closeCode: 4465,
  },
  // The binary KMS frame (messages/kms-frame.ts; 4870-4879).
  PROTO_ERR_KMS_FRAME: {
    message: 'binary KMS frame is malformed (a length past the end or over its limit, a field out of range, or bytes left over)',
    status: 400,
    closeCode: 4870,
  },
  PROTO_ERR_KMS_FRAME_VERSION: {
    message: 'binary KMS frame has a version or kind this build does not read',
    status: 400,
    closeCode: 4871,
  },
} as const satisfies ErrorTable

export type ProtoErrorCode = keyof typeof PROTO_ERRORS

export const protoError = errorFactory(PROTO_ERRORS)
