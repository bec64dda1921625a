// A small declarative field schema for control messages. One schema both checks
// and converts: `decodeValue` takes parsed JSON and returns typed values (base64
// fields become Uint8Array), `encodeValue` takes typed values and returns JSON-ready
// ones (Uint8Array becomes base64). Both reject unknown fields, wrong types and
// out-of-range values with PROTO_ERR_MESSAGE_FIELD naming the field's path, never
// its value (values may be key material or tokens).
//
// The TypeScript type of a message is inferred from its schema (`Infer`), so the
// types and the checks cannot drift apart.
import { protoError, type ProtoErrorCode } from '../errors.js'

export interface StringField {
  readonly kind: 'string'
  readonly min: number
  readonly max: number
  readonly pattern?: RegExp
  /** Extra rule after the pattern (e.g. URL parsing). */
  readonly check?: (s: string) => boolean
  readonly secret?: boolean
}
export interface IntField {
  readonly kind: 'int'
  readonly min: number
  readonly max: number
}
export interface BoolField {
  readonly kind: 'bool'
}
export interface BytesField {
  readonly kind: 'bytes'
  readonly min: number
  readonly max: number
  readonly secret?: boolean
}
export interface EnumField<V extends string = string> {
  readonly kind: 'enum'
  readonly values: readonly V[]
}
export interface LiteralField<V extends string = string> {
  readonly kind: 'literal'
  readonly value: V
  /** The error code for a different value (e.g. PROTO_ERR_VERSION); default PROTO_ERR_MESSAGE_FIELD. */
  readonly code?: ProtoErrorCode
}
export interface ArrayField<F extends Field = Field> {
  readonly kind: 'array'
  readonly of: F
  readonly min: number
  readonly max: number
}
export interface MapField {
  readonly kind: 'map'
  readonly key: StringField
  readonly value: StringField
  readonly max: number
  readonly secret?: boolean
}
export interface NullableField<F extends Field = Field> {
  readonly kind: 'nullable'
  readonly of: F
}
export interface OptionalField<F extends Field = Field> {
  readonly kind: 'optional'
  readonly of: F
}
export type Shape = { readonly [name: string]: Field }
export interface ObjectField<S extends Shape = Shape> {
  readonly kind: 'object'
  readonly shape: S
  /** Cross-field rule: returns the name of the offending field, or undefined when the object is fine. */
  readonly refine?: (value: Record<string, unknown>) => string | undefined
  /**
   * A hand-written decoder for the usual shapes of a hot object (KMS items):
   * returns exactly what the generic walk returns for that value, or undefined
   * to let the walk run (and raise its errors). Tests hold the two equal.
   */
  readonly fastDecode?: (value: unknown) => Record<string, unknown> | undefined
}
export type Field =
  | StringField
  | IntField
  | BoolField
  | BytesField
  | EnumField
  | LiteralField
  | ArrayField
  | MapField
  | NullableField
  | OptionalField
  | ObjectField

// ---- builders -------------------------------------------------------------

export const str = (max: number, opts: { min?: number; pattern?: RegExp; check?: (s: string) => boolean; secret?: boolean } = {}): StringField => ({
  kind: 'string',
  min: opts.min ?? 1,
  max,
  ...opts,
})
export const int = (min: number, max: number): IntField => ({ kind: 'int', min, max })
export const bool = (): BoolField => ({ kind: 'bool' })
export const bytes = (min: number, max = min, opts: { secret?: boolean } = {}): BytesField => ({ kind: 'bytes', min, max, ...opts })
export const oneOf = <V extends string>(...values: V[]): EnumField<V> => ({ kind: 'enum', values })
export const literal = <V extends string>(value: V, code?: ProtoErrorCode): LiteralField<V> =>
  code === undefined ? { kind: 'literal', value } : { kind: 'literal', value, code }
export const array = <F extends Field>(of: F, max: number, min = 0): ArrayField<F> => ({ kind: 'array', of, min, max })
export const map = (key: StringField, value: StringField, max: number, opts: { secret?: boolean } = {}): MapField => ({ kind: 'map', key, value, max, ...opts })
export const nullable = <F extends Field>(of: F): NullableField<F> => ({ kind: 'nullable', of })
export const optional = <F extends Field>(of: F): OptionalField<F> => ({ kind: 'optional', of })
export const object = <S extends Shape>(shape: S, refine?: ObjectField['refine']): ObjectField<S> =>
  refine === undefined ? { kind: 'object', shape } : { kind: 'object', shape, refine }

// ---- inferred types -------------------------------------------------------

type Simplify<T> = { [K in keyof T]: T[K] } & {}
type OptionalKeys<S extends Shape> = { [K in keyof S]: S[K] extends OptionalField ? K : never }[keyof S]
type RequiredKeys<S extends Shape> = Exclude<keyof S, OptionalKeys<S>>

export type InferShape<S extends Shape> = Simplify<
  { [K in RequiredKeys<S>]: Infer<S[K]> } & { [K in OptionalKeys<S>]?: S[K] extends OptionalField<infer F> ? Infer<F> : never }
>

export type Infer<F> = F extends StringField
  ? string
  : F extends IntField
    ? number
    : F extends BoolField
      ? boolean
      : F extends BytesField
        ? Uint8Array
        : F extends EnumField<infer V>
          ? V
          : F extends LiteralField<infer V>
            ? V
            : F extends ArrayField<infer G>
              ? Infer<G>[]
              : F extends MapField
                ? Record<string, string>
                : F extends NullableField<infer G>
                  ? Infer<G> | null
                  : F extends ObjectField<infer S>
                    ? InferShape<S>
                    : never

// ---- checking and converting ----------------------------------------------

function fail(path: string, what: string): never {
  throw protoError('PROTO_ERR_MESSAGE_FIELD', `${path || '(message)'}: ${what}`)
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Uint8Array)
}

function checkString(f: StringField, v: unknown, path: string): string {
  if (typeof v !== 'string') return fail(path, 'expected a string')
  if (v.length < f.min || v.length > f.max) return fail(path, `length must be ${f.min}..${f.max}`)
  if ((f.pattern && !f.pattern.test(v)) || (f.check && !f.check(v))) return fail(path, 'does not match the required form')
  return v
}

type Direction = 'decode' | 'encode'

/** Checks `v` against `f` and converts bytes fields in the given direction. */
function convert(f: Field, v: unknown, path: string, dir: Direction): unknown {
  switch (f.kind) {
    case 'string':
      return checkString(f, v, path)
    case 'int':
      if (typeof v !== 'number' || !Number.isSafeInteger(v)) return fail(path, 'expected an integer')
      if (v < f.min || v > f.max) return fail(path, `must be in ${f.min}..${f.max}`)
      return v
    case 'bool':
      if (typeof v !== 'boolean') return fail(path, 'expected a boolean')
      return v
    case 'enum':
      if (typeof v !== 'string' || !f.values.includes(v)) return fail(path, `expected one of ${f.values.join(', ')}`)
      return v
    case 'literal':
      if (v !== f.value) {
        if (f.code) throw protoError(f.code, `${path}: expected ${f.value}`)
        return fail(path, `expected ${f.value}`)
      }
      return v
    case 'bytes':
      return dir === 'decode' ? decodeBytes(f, v, path) : encodeBytes(f, v, path)
    case 'nullable':
      return v === null ? null : convert(f.of, v, path, dir)
    case 'optional':
      // Reached only for an optional field nested directly in a non-object; objects handle their own.
      return v === undefined ? undefined : convert(f.of, v, path, dir)
    case 'array': {
      if (!Array.isArray(v)) return fail(path, 'expected an array')
      if (v.length < f.min || v.length > f.max) return fail(path, `must have ${f.min}..${f.max} items`)
      const out: unknown[] = new Array(v.length)
      for (let i = 0; i < v.length; i++) out[i] = convert(f.of, v[i], `${path}[${i}]`, dir)
      return out
    }
    case 'map': {
      if (!isPlainObject(v)) return fail(path, 'expected an object')
      const keys = Object.keys(v)
      if (keys.length > f.max) return fail(path, `must have at most ${f.max} entries`)
      const out: Record<string, string> = Object.create(null)
      for (const k of keys) {
        checkString(f.key, k, `${path}{key}`) // the key itself may be sensitive: do not name it
        out[k] = checkString(f.value, v[k], `${path}{value}`)
      }
      return { ...out }
    }
    case 'object':
      return convertObject(f, v, path, dir)
  }
}

function convertObject(f: ObjectField, v: unknown, path: string, dir: Direction): Record<string, unknown> {
  if (dir === 'decode' && f.fastDecode !== undefined) {
    const fast = f.fastDecode(v)
    if (fast !== undefined) return fast
  }
  if (!isPlainObject(v)) return fail(path, 'expected an object')
  const prefix = path === '' ? '' : `${path}.`
  for (const k of Object.keys(v)) {
    // Object.hasOwn, not `in`: "toString" or "__proto__" must be unknown fields.
    if (!Object.hasOwn(f.shape, k)) {
      // The unknown name is the sender's text; bound it rather than echo it whole.
      return fail(`${prefix}${k.length <= 32 && /^[A-Za-z0-9_.-]+$/.test(k) ? k : '?'}`, 'unknown field')
    }
  }
  const out: Record<string, unknown> = {}
  for (const name of Object.keys(f.shape)) {
    const field = f.shape[name] as Field
    const value = v[name]
    if (field.kind === 'optional') {
      if (value === undefined) continue
      out[name] = convert(field.of, value, prefix + name, dir)
    } else {
      if (value === undefined) return fail(prefix + name, 'missing')
      out[name] = convert(field, value, prefix + name, dir)
    }
  }
  const bad = f.refine?.(out)
  if (bad !== undefined) return fail(prefix + bad, 'not allowed with the other fields')
  return out
}

function decodeBytes(f: BytesField, v: unknown, path: string): Uint8Array {
  if (typeof v !== 'string') return fail(path, 'expected base64 text')
  // Bound the text before decoding so no allocation follows a hostile length.
  if (v.length > Math.ceil(f.max / 3) * 4) return fail(path, 'expected canonical base64')
  const buf = Buffer.from(v, 'base64')
  // Node's decoder skips what is not base64 (and takes base64url and missing
  // padding); the re-encoding is the one canonical spelling of these bytes, so
  // equality proves the text is canonical padded base64. (No regex first: on a
  // KMS plaintext it cost more than the decoding itself.)
  if (buf.toString('base64') !== v) return fail(path, 'expected canonical base64')
  if (buf.length < f.min || buf.length > f.max) return fail(path, `must decode to ${f.min === f.max ? f.min : `${f.min}..${f.max}`} bytes`)
  return new Uint8Array(buf.buffer, buf.byteOffset, buf.length)
}

function encodeBytes(f: BytesField, v: unknown, path: string): string {
  if (!(v instanceof Uint8Array)) return fail(path, 'expected a Uint8Array')
  if (v.length < f.min || v.length > f.max) return fail(path, `must be ${f.min === f.max ? f.min : `${f.min}..${f.max}`} bytes`)
  return Buffer.from(v.buffer, v.byteOffset, v.length).toString('base64')
}

/** Parsed JSON in, checked value out (base64 fields as Uint8Array). Type it with `Infer<typeof schema>`. */
export function decodeValue(f: Field, v: unknown, path = ''): unknown {
  return convert(f, v, path, 'decode')
}

/** Typed value in, checked JSON-ready value out (Uint8Array fields as base64). */
export function encodeValue(f: Field, v: unknown, path = ''): unknown {
  return convert(f, v, path, 'encode')
}

/**
 * Paths of fields marked secret, in pino `redact` syntax (`a.b[*].c`), relative to
 * the value `f` describes.
 */
export function secretPaths(f: Field, path = ''): string[] {
  switch (f.kind) {
    case 'string':
    case 'bytes':
    case 'map':
      return f.secret ? [path] : []
    case 'nullable':
    case 'optional':
      return secretPaths(f.of, path)
    case 'array':
      return secretPaths(f.of, `${path}[*]`)
    case 'object':
      return Object.entries(f.shape).flatMap(([k, g]) => secretPaths(g, path === '' ? k : `${path}.${k}`))
    default:
      return []
  }
}
