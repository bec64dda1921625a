// The rows the control plane keeps, as plain typed values shared by every Store
// back-end. Times are integer milliseconds since the epoch. Byte fields are
// Uint8Array (back-ends convert their driver's Buffer). Key material only ever
// appears here sealed (see ../seal.ts); nothing in this file is a secret in clear.
export const KEY_TYPES = ['aead', 'x25519', 'pair'];
export const VERSION_STATES = ['enabled', 'decrypt-only', 'disabled', 'scheduled-destruction', 'destroyed'];
export const RIGHTS = ['encrypt', 'decrypt', 'generate-data-key', 'rotate', 'manage'];
export const OPERATOR_ROLES = ['admin', 'operator', 'auditor'];
export const AUDIT_OUTCOMES = ['allow', 'deny', 'ok', 'error'];
//# sourceMappingURL=records.js.map