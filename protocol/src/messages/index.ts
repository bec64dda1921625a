// Control messages between an agent and the control plane: one message per record,
// UTF-8 JSON with a `type` field, every field checked by its schema before anything
// else sees it.
//
// Contract:
//   - decodeMessage: more than maxBytes (default and at most 65,510) is
//     PROTO_ERR_MESSAGE_TOO_LARGE, checked before parsing; bad UTF-8, bad JSON or a
//     non-object is PROTO_ERR_MESSAGE_MALFORMED; an unknown `type` is
//     PROTO_ERR_MESSAGE_TYPE; any field error is PROTO_ERR_MESSAGE_FIELD naming the
//     field's path and never its value; hello with another protocol is PROTO_ERR_VERSION.
//   - encodeMessage runs the same checks, so nothing invalid is ever sent, and
//     throws PROTO_ERR_MESSAGE_TOO_LARGE above 65,510 bytes.
//   - Binary fields are base64 (RFC 4648 §4, padded, canonical) on the wire and
//     Uint8Array in memory.
import { protoError } from '../errors.js'
import { MAX_MESSAGE_BYTES } from './fields.js'
import { errorSchema, featuresSchema, helloSchema, welcomeSchema } from './enrollment.js'
import { keysetBeginSchema, keysetEndSchema, keysetPairSchema, keysetRequestSchema, pairPeersSchema, pairRemoveSchema, pairUpdateSchema, peerUpSchema } from './keyset.js'
import { kmsBatchResponseSchema, kmsBatchSchema, kmsRequestSchema, kmsResponseSchema } from './kms.js'
import { decodeKmsFrame, isKmsFrame } from './kms-frame.js'
import { decodeValue, encodeValue, object, secretPaths, str, type InferShape, type ObjectField, type Shape } from './schema.js'
import { usageAckSchema, usageBatchSchema } from './usage.js'

export const MESSAGE_SCHEMAS = {
  features: featuresSchema,
  hello: helloSchema,
  welcome: welcomeSchema,
  'keyset.begin': keysetBeginSchema,
  'keyset.pair': keysetPairSchema,
  'keyset.end': keysetEndSchema,
  'pair.update': pairUpdateSchema,
  'pair.remove': pairRemoveSchema,
  'keyset.request': keysetRequestSchema,
  'peer.up': peerUpSchema,
  'pair.peers': pairPeersSchema,
  'usage.batch': usageBatchSchema,
  'usage.ack': usageAckSchema,
  'kms.request': kmsRequestSchema,
  'kms.response': kmsResponseSchema,
  'kms.batch': kmsBatchSchema,
  'kms.batch.response': kmsBatchResponseSchema,
  error: errorSchema,
} as const

type Schemas = typeof MESSAGE_SCHEMAS
export type MessageType = keyof Schemas
export const MESSAGE_TYPES = Object.keys(MESSAGE_SCHEMAS) as MessageType[]

type ShapeOf<T extends MessageType> = Schemas[T] extends ObjectField<infer S> ? S : never
/** The message of one type, e.g. `MessageOf<'hello'>`. */
export type MessageOf<T extends MessageType> = { type: T } & InferShape<ShapeOf<T>>
/** Every control message, discriminated by `type`. */
export type Message = { [T in MessageType]: MessageOf<T> }[MessageType]

export type FeaturesMessage = MessageOf<'features'>
export type HelloMessage = MessageOf<'hello'>
export type WelcomeMessage = MessageOf<'welcome'>
export type KeysetBeginMessage = MessageOf<'keyset.begin'>
export type KeysetPairMessage = MessageOf<'keyset.pair'>
export type KeysetEndMessage = MessageOf<'keyset.end'>
export type PairUpdateMessage = MessageOf<'pair.update'>
export type PairRemoveMessage = MessageOf<'pair.remove'>
export type PairPeersMessage = MessageOf<'pair.peers'>
export type KeysetRequestMessage = MessageOf<'keyset.request'>
export type PeerUpMessage = MessageOf<'peer.up'>
export type UsageBatchMessage = MessageOf<'usage.batch'>
export type UsageAckMessage = MessageOf<'usage.ack'>
export type KmsRequestMessage = MessageOf<'kms.request'>
export type KmsResponseMessage = MessageOf<'kms.response'>
export type KmsBatchMessage = MessageOf<'kms.batch'>
export type KmsBatchResponseMessage = MessageOf<'kms.batch.response'>
export type ErrorMessage = MessageOf<'error'>

// Each schema with the `type` field added, so unknown-field checks see it as known.
const WIRE_SCHEMAS = Object.fromEntries(
  Object.entries(MESSAGE_SCHEMAS).map(([t, s]) => [
    t,
    object({ type: str(32), ...(s.shape as Shape) }, (s as ObjectField).refine),
  ]),
) as unknown as Record<MessageType, ObjectField>

const encoder = new TextEncoder()
const decoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: false })

export interface DecodeOptions {
  /** Reject larger input with PROTO_ERR_MESSAGE_TOO_LARGE; at most (and default) 65,510. */
  maxBytes?: number
  /**
   * Also read binary KMS frames (kms-frame.ts): only where the 'kms.frame' feature
   * was agreed. Without it a frame is PROTO_ERR_MESSAGE_MALFORMED, as any bytes that
   * are not JSON.
   */
  kmsFrames?: boolean
}

function schemaFor(type: unknown): ObjectField {
  if (typeof type !== 'string' || !Object.hasOwn(WIRE_SCHEMAS, type)) throw protoError('PROTO_ERR_MESSAGE_TYPE')
  return WIRE_SCHEMAS[type as MessageType]
}

export function encodeMessage(msg: Message): Uint8Array {
  if (typeof msg !== 'object' || msg === null) throw protoError('PROTO_ERR_MESSAGE_MALFORMED', 'not an object')
  const json = JSON.stringify(encodeValue(schemaFor(msg.type), msg))
  const bytes = encoder.encode(json)
  if (bytes.length > MAX_MESSAGE_BYTES) throw protoError('PROTO_ERR_MESSAGE_TOO_LARGE')
  return bytes
}

export function decodeMessage(bytes: Uint8Array, options: DecodeOptions = {}): Message {
  const limit = options.maxBytes ?? MAX_MESSAGE_BYTES
  if (!Number.isSafeInteger(limit) || limit < 0) throw protoError('PROTO_ERR_INVALID_ARGUMENT', 'maxBytes must be a non-negative integer')
  const max = Math.min(limit, MAX_MESSAGE_BYTES)
  if (!(bytes instanceof Uint8Array)) throw protoError('PROTO_ERR_MESSAGE_MALFORMED', 'not bytes')
  if (bytes.length > max) throw protoError('PROTO_ERR_MESSAGE_TOO_LARGE')
  if (options.kmsFrames === true && isKmsFrame(bytes)) return decodeKmsFrame(bytes, max)
  let value: unknown
  try {
    value = JSON.parse(decoder.decode(bytes))
  } catch (cause) {
    // The cause (a SyntaxError) may quote the input: keep it off the error.
    void cause
    throw protoError('PROTO_ERR_MESSAGE_MALFORMED', 'not UTF-8 JSON')
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw protoError('PROTO_ERR_MESSAGE_MALFORMED', 'not a JSON object')
  }
  const schema = schemaFor((value as { type?: unknown }).type)
  return decodeValue(schema, value) as Message
}

/**
 * Paths of secret fields (key material, plaintext, join tokens, KMS context) in
 * pino `redact` syntax, relative to a message object; deduplicated. Prefix them
 * with where the message sits in a log line, e.g. `msg.${path}`.
 */
export const SECRET_FIELD_PATHS: readonly string[] = Object.freeze([
  ...new Set(Object.values(MESSAGE_SCHEMAS).flatMap((s) => secretPaths(s))),
])

export * from './enrollment.js'
export * from './keyset.js'
export * from './usage.js'
export * from './kms.js'
export * from './kms-batch.js'
export * from './kms-frame.js'
export { MAX_MESSAGE_BYTES } from './fields.js'
export { PROTOCOL_VERSION } from '../version.js'
export type { Infer } from './schema.js'
