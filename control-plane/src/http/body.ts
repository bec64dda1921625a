// Request bodies and query strings: a small schema validator (fastify reads and
// parses the body within the limit, see server.ts).
//
// Contract: a validated value has exactly the declared fields, so a handler never
// sees a field it did not ask for.
// Error details name the field and the rule it broke, never the value sent: a
// value may be a token or plaintext that must not reach a log or another user.
import { cpError } from '../errors.js'

export const DEFAULT_BODY_LIMIT = 1024 * 1024

interface Optional { readonly optional?: boolean }
export interface StringField extends Optional {
  readonly type: 'string'
  readonly minLength?: number
  readonly maxLength?: number
  readonly pattern?: RegExp
  readonly enum?: readonly string[]
}
export interface IntegerField extends Optional { readonly type: 'integer'; readonly min?: number; readonly max?: number }
export interface BooleanField extends Optional { readonly type: 'boolean' }
export interface ArrayField extends Optional {
  readonly type: 'array'
  readonly items: FieldSchema
  readonly minItems?: number
  readonly maxItems?: number
}
export interface ObjectField extends Optional { readonly type: 'object'; readonly fields: FieldMap }
export type FieldSchema = StringField | IntegerField | BooleanField | ArrayField | ObjectField
export type FieldMap = Readonly<Record<string, FieldSchema>>
/** A request body schema: a JSON object with exactly these fields. */
export interface ObjectSchema { readonly fields: FieldMap }
/** A query schema: strings, integers (decimal) and booleans (`true`/`false`) only. */
export type QuerySchema = Readonly<Record<string, StringField | IntegerField | BooleanField>>

/** The TypeScript type a field schema validates to (declare schemas `as const`). */
export type Infer<F> =
  F extends { type: 'string'; enum: readonly (infer E)[] } ? E
  : F extends { type: 'string' } ? string
  : F extends { type: 'integer' } ? number
  : F extends { type: 'boolean' } ? boolean
  : F extends { type: 'array'; items: infer I } ? Infer<I>[]
  : F extends { type: 'object'; fields: infer M } ? InferFields<M>
  : F extends { fields: infer M } ? InferFields<M>
  : never
type Simplify<T> = { [K in keyof T]: T[K] }
export type InferFields<M> = Simplify<
  { [K in keyof M as M[K] extends { optional: true } ? never : K]: Infer<M[K]> } &
  { [K in keyof M as M[K] extends { optional: true } ? K : never]?: Infer<M[K]> }
>
export type InferQuery<Q> = InferFields<Q>

/** Validates a parsed body against a schema; an absent body counts as `{}`. */
export function validateBody<S extends ObjectSchema>(schema: S, value: unknown): InferFields<S['fields']> {
  return checkObject(schema.fields, value === undefined ? {} : value, '') as InferFields<S['fields']>
}

/**
 * Validates query parameters (already split, each name at most once). Integers
 * are decimal strings, booleans `true` or `false`; other values keep their text.
 */
export function validateQuery<Q extends QuerySchema>(schema: Q, query: Readonly<Record<string, string>>): InferQuery<Q> {
  const coerced: Record<string, unknown> = {}
  for (const [name, text] of Object.entries(query)) {
    const field = Object.hasOwn(schema, name) ? schema[name] : undefined
    if (field === undefined) throw cpError('CP_ERR_UNKNOWN_FIELD', `query parameter ${safeName(name)}`)
    if (field.type === 'integer') coerced[name] = /^-?\d{1,15}$/.test(text) ? Number(text) : text
    else if (field.type === 'boolean') coerced[name] = text === 'true' ? true : text === 'false' ? false : text
    else coerced[name] = text
  }
  return checkObject(schema, coerced, '') as InferQuery<Q>
}

function checkObject(fields: FieldMap, value: unknown, path: string): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw invalid(path, 'must be an object')
  }
  const input = value as Record<string, unknown>
  for (const name of Object.keys(input)) {
    if (!Object.hasOwn(fields, name)) throw cpError('CP_ERR_UNKNOWN_FIELD', safeName(join(path, name)))
  }
  // Built fresh from the schema's names, so only declared fields reach the handler.
  const out: Record<string, unknown> = {}
  for (const [name, field] of Object.entries(fields)) {
    const v = Object.hasOwn(input, name) ? input[name] : undefined
    const at = join(path, name)
    if (v === undefined) {
      if (!field.optional) throw invalid(at, 'is required')
      continue
    }
    out[name] = checkField(field, v, at)
  }
  return out
}

function checkField(field: FieldSchema, v: unknown, at: string): unknown {
  switch (field.type) {
    case 'string': {
      if (typeof v !== 'string') throw invalid(at, 'must be a string')
      if (field.enum && !field.enum.includes(v)) throw invalid(at, `must be one of ${field.enum.join(', ')}`)
      if (field.minLength !== undefined && v.length < field.minLength) throw invalid(at, `must be at least ${field.minLength} characters`)
      if (field.maxLength !== undefined && v.length > field.maxLength) throw invalid(at, `must be at most ${field.maxLength} characters`)
      if (field.pattern && !field.pattern.test(v)) throw invalid(at, `must match ${String(field.pattern)}`)
      return v
    }
    case 'integer': {
      if (typeof v !== 'number' || !Number.isSafeInteger(v)) throw invalid(at, 'must be an integer')
      if (field.min !== undefined && v < field.min) throw invalid(at, `must be at least ${field.min}`)
      if (field.max !== undefined && v > field.max) throw invalid(at, `must be at most ${field.max}`)
      return v
    }
    case 'boolean':
      if (typeof v !== 'boolean') throw invalid(at, 'must be true or false')
      return v
    case 'array': {
      if (!Array.isArray(v)) throw invalid(at, 'must be an array')
      if (field.minItems !== undefined && v.length < field.minItems) throw invalid(at, `must have at least ${field.minItems} items`)
      if (field.maxItems !== undefined && v.length > field.maxItems) throw invalid(at, `must have at most ${field.maxItems} items`)
      return v.map((item, i) => checkField(field.items, item, `${at}[${i}]`))
    }
    case 'object':
      return checkObject(field.fields, v, at)
  }
}

function join(path: string, name: string): string {
  return path === '' ? name : `${path}.${name}`
}

function invalid(at: string, rule: string): Error {
  return cpError('CP_ERR_INVALID_FIELD', at === '' ? `body ${rule}` : `${safeName(at)} ${rule}`)
}

/** A field name is caller data too: keep it printable and short before echoing it. */
function safeName(name: string): string {
  const clean = name.replace(/[^\x20-\x7e]/g, '?')
  return clean.length > 64 ? `${clean.slice(0, 64)}…` : clean
}
