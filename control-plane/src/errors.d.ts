export declare const CP_ERRORS: {
    readonly CP_ERR_INTERNAL: {
        readonly message: "internal error";
        readonly status: 500;
        readonly closeCode: 4500;
    };
    readonly CP_ERR_BAD_REQUEST: {
        readonly message: "request is malformed";
        readonly status: 400;
        readonly closeCode: 4501;
    };
    readonly CP_ERR_NOT_FOUND: {
        readonly message: "not found";
        readonly status: 404;
        readonly closeCode: 4502;
    };
    readonly CP_ERR_CONFLICT: {
        readonly message: "conflicts with the current state";
        readonly status: 409;
        readonly closeCode: 4503;
    };
    readonly CP_ERR_UNAUTHENTICATED: {
        readonly message: "missing or invalid credentials";
        readonly status: 401;
        readonly closeCode: 4504;
    };
    readonly CP_ERR_FORBIDDEN: {
        readonly message: "not allowed";
        readonly status: 403;
        readonly closeCode: 4505;
    };
    readonly CP_ERR_STORE: {
        readonly message: "the store failed; nothing was changed";
        readonly status: 503;
        readonly closeCode: 4506;
    };
    readonly CP_ERR_MASTER_KEY: {
        readonly message: "master key is missing, unreadable or has the wrong form";
        readonly status: 500;
        readonly closeCode: 4507;
    };
    readonly CP_ERR_UNSEAL: {
        readonly message: "sealed record failed to open (wrong master key, or the record was moved or altered)";
        readonly status: 500;
        readonly closeCode: 4508;
    };
    readonly CP_ERR_DATA_DIR: {
        readonly message: "the data directory cannot be used";
        readonly status: 500;
        readonly closeCode: 4512;
    };
    readonly CP_ERR_OUTPUT: {
        readonly message: "cannot write the output file";
        readonly status: 500;
        readonly closeCode: 4511;
    };
    readonly CP_ERR_LISTEN: {
        readonly message: "cannot listen on the requested address";
        readonly status: 500;
        readonly closeCode: 4510;
    };
    readonly CP_ERR_AUDIT: {
        readonly message: "audit log write failed; the operation was not applied";
        readonly status: 503;
        readonly closeCode: 4509;
    };
    readonly CP_ERR_KEY_STATE: {
        readonly message: "the key version's state does not allow this transition";
        readonly status: 409;
        readonly closeCode: 4530;
    };
    readonly CP_ERR_KEY_PRIMARY: {
        readonly message: "the primary version cannot be scheduled for destruction; rotate the key first";
        readonly status: 409;
        readonly closeCode: 4531;
    };
    readonly CP_ERR_DESTROY_WINDOW: {
        readonly message: "destruction window is outside the allowed range";
        readonly status: 400;
        readonly closeCode: 4532;
    };
    readonly CP_ERR_VERSION_DISABLED: {
        readonly message: "key version is disabled or scheduled for destruction";
        readonly status: 409;
        readonly closeCode: 4533;
    };
    readonly CP_ERR_VERSION_DESTROYED: {
        readonly message: "key version is destroyed";
        readonly status: 409;
        readonly closeCode: 4534;
    };
    readonly CP_ERR_VERSION_DECRYPT_ONLY: {
        readonly message: "key version is decrypt-only and cannot encrypt";
        readonly status: 409;
        readonly closeCode: 4535;
    };
    readonly CP_ERR_VERSION_NOT_PRIMARY: {
        readonly message: "only the primary version encrypts";
        readonly status: 409;
        readonly closeCode: 4536;
    };
    readonly CP_ERR_VERSION_BELOW_MIN: {
        readonly message: "key version is below the key's minimum decryption version";
        readonly status: 409;
        readonly closeCode: 4537;
    };
    readonly CP_ERR_VERSION_EXPIRED: {
        readonly message: "key version is past its grace period";
        readonly status: 409;
        readonly closeCode: 4538;
    };
    readonly CP_ERR_MIN_VERSION: {
        readonly message: "minimum decryption version must be an integer from 1 to the primary version";
        readonly status: 400;
        readonly closeCode: 4539;
    };
    readonly CP_ERR_ROTATION_PERIOD: {
        readonly message: "rotation period is outside the allowed range";
        readonly status: 400;
        readonly closeCode: 4540;
    };
    readonly CP_ERR_TOKEN_FORM: {
        readonly message: "token is not of a recognised form";
        readonly status: 401;
        readonly closeCode: 4541;
    };
    readonly CP_ERR_BODY_TOO_LARGE: {
        readonly message: "request body exceeds the size limit";
        readonly status: 413;
        readonly closeCode: 4560;
    };
    readonly CP_ERR_BAD_JSON: {
        readonly message: "request body is not valid JSON";
        readonly status: 400;
        readonly closeCode: 4561;
    };
    readonly CP_ERR_UNSUPPORTED_MEDIA_TYPE: {
        readonly message: "request body must be application/json in UTF-8";
        readonly status: 415;
        readonly closeCode: 4562;
    };
    readonly CP_ERR_UNKNOWN_FIELD: {
        readonly message: "request has a field this endpoint does not accept";
        readonly status: 400;
        readonly closeCode: 4563;
    };
    readonly CP_ERR_INVALID_FIELD: {
        readonly message: "request field is missing, of the wrong type or out of range";
        readonly status: 400;
        readonly closeCode: 4564;
    };
    readonly CP_ERR_METHOD_NOT_ALLOWED: {
        readonly message: "method not allowed on this path";
        readonly status: 405;
        readonly closeCode: 4565;
    };
    readonly CP_ERR_SHUTTING_DOWN: {
        readonly message: "the control plane is shutting down";
        readonly status: 503;
        readonly closeCode: 4566;
    };
    readonly CP_ERR_UNREACHABLE: {
        readonly message: "cannot reach the control plane";
        readonly status: 503;
        readonly closeCode: 4567;
    };
    readonly CP_ERR_BAD_RESPONSE: {
        readonly message: "the control plane's answer was not understood";
        readonly status: 502;
        readonly closeCode: 4568;
    };
    readonly CP_ERR_USAGE: {
        readonly message: "invalid command-line usage";
        readonly status: 400;
        readonly closeCode: 4569;
    };
    readonly CP_ERR_TOKEN_FILE: {
        readonly message: "token file is missing, unreadable or does not hold a token";
        readonly status: 400;
        readonly closeCode: 4570;
    };
    readonly CP_ERR_LAST_ADMIN: {
        readonly message: "this is the last active admin token; create another admin token before revoking it";
        readonly status: 409;
        readonly closeCode: 4600;
    };
    readonly CP_ERR_TOKEN_REVOKED: {
        readonly message: "the operator token is already revoked";
        readonly status: 409;
        readonly closeCode: 4601;
    };
    readonly CP_ERR_AUDIT_TIME: {
        readonly message: "audit time bound must be milliseconds since the epoch or an ISO 8601 time";
        readonly status: 400;
        readonly closeCode: 4602;
    };
    readonly CP_ERR_AUDIT_INCOMPLETE: {
        readonly message: "the audit export ended before it was complete; nothing was written";
        readonly status: 502;
        readonly closeCode: 4603;
    };
    readonly CP_ERR_KEY_EXISTS: {
        readonly message: "a key with this name already exists";
        readonly status: 409;
        readonly closeCode: 4580;
    };
    readonly CP_ERR_KEY_NOT_FOUND: {
        readonly message: "no such key";
        readonly status: 404;
        readonly closeCode: 4581;
    };
    readonly CP_ERR_KEY_VERSION_NOT_FOUND: {
        readonly message: "no such key version";
        readonly status: 404;
        readonly closeCode: 4582;
    };
    readonly CP_ERR_KEY_NAME: {
        readonly message: "key name breaks the naming rules";
        readonly status: 400;
        readonly closeCode: 4583;
    };
    readonly CP_ERR_KEY_TYPE: {
        readonly message: "this operation does not apply to a key of this type";
        readonly status: 409;
        readonly closeCode: 4584;
    };
    readonly CP_ERR_GRANT: {
        readonly message: "grant names an invalid service or right";
        readonly status: 400;
        readonly closeCode: 4585;
    };
    readonly CP_ERR_FILE_EXISTS: {
        readonly message: "output file exists; pass --force to overwrite it";
        readonly status: 409;
        readonly closeCode: 4586;
    };
    readonly CP_ERR_SERVICE_NAME: {
        readonly message: "service name must be 1-63 of a-z, 0-9 and \"-\", not starting or ending with \"-\"";
        readonly status: 400;
        readonly closeCode: 4590;
    };
    readonly CP_ERR_SAME_SERVICE: {
        readonly message: "an intention or pair needs two distinct services";
        readonly status: 400;
        readonly closeCode: 4591;
    };
    readonly CP_ERR_INTENTION_NOT_FOUND: {
        readonly message: "no such intention";
        readonly status: 404;
        readonly closeCode: 4592;
    };
    readonly CP_ERR_PAIR_NOT_FOUND: {
        readonly message: "no pair key for these services (allow an intention between them first)";
        readonly status: 404;
        readonly closeCode: 4593;
    };
    readonly CP_ERR_JOIN_TOKEN: {
        readonly message: "join token is unknown, malformed, expired or already used";
        readonly status: 401;
        readonly closeCode: 4610;
    };
    readonly CP_ERR_AGENT_REVOKED: {
        readonly message: "agent is revoked";
        readonly status: 403;
        readonly closeCode: 4611;
    };
    readonly CP_ERR_AGENT_UNKNOWN: {
        readonly message: "agent static key is not enrolled and no join token was given";
        readonly status: 401;
        readonly closeCode: 4612;
    };
    readonly CP_ERR_SERVICE_MISMATCH: {
        readonly message: "agent or join token belongs to another service";
        readonly status: 403;
        readonly closeCode: 4613;
    };
    readonly CP_ERR_HANDSHAKE_TIMEOUT: {
        readonly message: "agent handshake did not finish in time";
        readonly status: 408;
        readonly closeCode: 4614;
    };
    readonly CP_ERR_HANDSHAKE_LIMIT: {
        readonly message: "too many agent handshakes in progress; retry later";
        readonly status: 503;
        readonly closeCode: 4615;
    };
    readonly CP_ERR_AGENT_FRAME: {
        readonly message: "agent endpoint accepts binary WebSocket messages only";
        readonly status: 400;
        readonly closeCode: 4616;
    };
    readonly CP_ERR_AGENT_MESSAGE: {
        readonly message: "agent sent a control message that is not allowed at this point";
        readonly status: 400;
        readonly closeCode: 4617;
    };
    readonly CP_ERR_AGENT_REPLACED: {
        readonly message: "a newer session of the same agent replaced this one";
        readonly status: 409;
        readonly closeCode: 4618;
    };
    readonly CP_ERR_AGENT_BACKPRESSURE: {
        readonly message: "agent is not reading; too many bytes are waiting to be sent";
        readonly status: 503;
        readonly closeCode: 4619;
    };
    readonly CP_ERR_AGENT_PATH: {
        readonly message: "no WebSocket endpoint at this path; agents connect to /v1/agent";
        readonly status: 404;
        readonly closeCode: 4620;
    };
    readonly CP_ERR_DECRYPT: {
        readonly message: "ciphertext does not open with this key version and context";
        readonly status: 400;
        readonly closeCode: 4630;
    };
    readonly CP_ERR_NOT_RECIPIENT: {
        readonly message: "the context names another service as the recipient";
        readonly status: 403;
        readonly closeCode: 4631;
    };
    readonly CP_ERR_NOT_SENDER: {
        readonly message: "the context names another service as the sender";
        readonly status: 403;
        readonly closeCode: 4632;
    };
    readonly CP_ERR_CIPHERTEXT_KEY: {
        readonly message: "the ciphertext names a different key than the request";
        readonly status: 400;
        readonly closeCode: 4633;
    };
    readonly CP_ERR_PUBLIC_KEY: {
        readonly message: "public key is not a usable X25519 point (low order)";
        readonly status: 400;
        readonly closeCode: 4634;
    };
    readonly CP_ERR_KMS_BUSY: {
        readonly message: "too many KMS requests in flight from this agent; retry when some have answered";
        readonly status: 503;
        readonly closeCode: 4635;
    };
    readonly CP_ERR_KMS_TOO_LARGE: {
        readonly message: "the plaintext would exceed the KMS size limit; use a data key for larger data";
        readonly status: 413;
        readonly closeCode: 4636;
    };
};
export type CpErrorCode = keyof typeof CP_ERRORS;
export declare const cpError: (code: "CP_ERR_INTERNAL" | "CP_ERR_BAD_REQUEST" | "CP_ERR_NOT_FOUND" | "CP_ERR_CONFLICT" | "CP_ERR_UNAUTHENTICATED" | "CP_ERR_FORBIDDEN" | "CP_ERR_STORE" | "CP_ERR_MASTER_KEY" | "CP_ERR_UNSEAL" | "CP_ERR_DATA_DIR" | "CP_ERR_OUTPUT" | "CP_ERR_LISTEN" | "CP_ERR_AUDIT" | "CP_ERR_KEY_STATE" | "CP_ERR_KEY_PRIMARY" | "CP_ERR_DESTROY_WINDOW" | "CP_ERR_VERSION_DISABLED" | "CP_ERR_VERSION_DESTROYED" | "CP_ERR_VERSION_DECRYPT_ONLY" | "CP_ERR_VERSION_NOT_PRIMARY" | "CP_ERR_VERSION_BELOW_MIN" | "CP_ERR_VERSION_EXPIRED" | "CP_ERR_MIN_VERSION" | "CP_ERR_ROTATION_PERIOD" | "CP_ERR_TOKEN_FORM" | "CP_ERR_BODY_TOO_LARGE" | "CP_ERR_BAD_JSON" | "CP_ERR_UNSUPPORTED_MEDIA_TYPE" | "CP_ERR_UNKNOWN_FIELD" | "CP_ERR_INVALID_FIELD" | "CP_ERR_METHOD_NOT_ALLOWED" | "CP_ERR_SHUTTING_DOWN" | "CP_ERR_UNREACHABLE" | "CP_ERR_BAD_RESPONSE" | "CP_ERR_USAGE" | "CP_ERR_TOKEN_FILE" | "CP_ERR_LAST_ADMIN" | "CP_ERR_TOKEN_REVOKED" | "CP_ERR_AUDIT_TIME" | "CP_ERR_AUDIT_INCOMPLETE" | "CP_ERR_KEY_EXISTS" | "CP_ERR_KEY_NOT_FOUND" | "CP_ERR_KEY_VERSION_NOT_FOUND" | "CP_ERR_KEY_NAME" | "CP_ERR_KEY_TYPE" | "CP_ERR_GRANT" | "CP_ERR_FILE_EXISTS" | "CP_ERR_SERVICE_NAME" | "CP_ERR_SAME_SERVICE" | "CP_ERR_INTENTION_NOT_FOUND" | "CP_ERR_PAIR_NOT_FOUND" | "CP_ERR_JOIN_TOKEN" | "CP_ERR_AGENT_REVOKED" | "CP_ERR_AGENT_UNKNOWN" | "CP_ERR_SERVICE_MISMATCH" | "CP_ERR_HANDSHAKE_TIMEOUT" | "CP_ERR_HANDSHAKE_LIMIT" | "CP_ERR_AGENT_FRAME" | "CP_ERR_AGENT_MESSAGE" | "CP_ERR_AGENT_REPLACED" | "CP_ERR_AGENT_BACKPRESSURE" | "CP_ERR_AGENT_PATH" | "CP_ERR_DECRYPT" | "CP_ERR_NOT_RECIPIENT" | "CP_ERR_NOT_SENDER" | "CP_ERR_CIPHERTEXT_KEY" | "CP_ERR_PUBLIC_KEY" | "CP_ERR_KMS_BUSY" | "CP_ERR_KMS_TOO_LARGE", detail?: string, options?: {
    cause?: unknown;
}) => import("../../protocol/src/errors.js").KeymeshError;
