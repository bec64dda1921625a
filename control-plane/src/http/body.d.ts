import type { IncomingMessage } from 'node:http';
export declare const DEFAULT_BODY_LIMIT: number;
interface Optional {
    readonly optional?: boolean;
}
export interface StringField extends Optional {
    readonly type: 'string';
    readonly minLength?: number;
    readonly maxLength?: number;
    readonly pattern?: RegExp;
    readonly enum?: readonly string[];
}
export interface IntegerField extends Optional {
    readonly type: 'integer';
    readonly min?: number;
    readonly max?: number;
}
export interface BooleanField extends Optional {
    readonly type: 'boolean';
}
export interface ArrayField extends Optional {
    readonly type: 'array';
    readonly items: FieldSchema;
    readonly minItems?: number;
    readonly maxItems?: number;
}
export interface ObjectField extends Optional {
    readonly type: 'object';
    readonly fields: FieldMap;
}
export type FieldSchema = StringField | IntegerField | BooleanField | ArrayField | ObjectField;
export type FieldMap = Readonly<Record<string, FieldSchema>>;
/** A request body schema: a JSON object with exactly these fields. */
export interface ObjectSchema {
    readonly fields: FieldMap;
}
/** A query schema: strings, integers (decimal) and booleans (`true`/`false`) only. */
export type QuerySchema = Readonly<Record<string, StringField | IntegerField | BooleanField>>;
/** The TypeScript type a field schema validates to (declare schemas `as const`). */
export type Infer<F> = F extends {
    type: 'string';
    enum: readonly (infer E)[];
} ? E : F extends {
    type: 'string';
} ? string : F extends {
    type: 'integer';
} ? number : F extends {
    type: 'boolean';
} ? boolean : F extends {
    type: 'array';
    items: infer I;
} ? Infer<I>[] : F extends {
    type: 'object';
    fields: infer M;
} ? InferFields<M> : F extends {
    fields: infer M;
} ? InferFields<M> : never;
type Simplify<T> = {
    [K in keyof T]: T[K];
};
export type InferFields<M> = Simplify<{
    [K in keyof M as M[K] extends {
        optional: true;
    } ? never : K]: Infer<M[K]>;
} & {
    [K in keyof M as M[K] extends {
        optional: true;
    } ? K : never]?: Infer<M[K]>;
}>;
export type InferQuery<Q> = InferFields<Q>;
/**
 * Reads a JSON body. Returns undefined for an empty body. A body must be declared
 * `application/json` (charset utf-8 if any); bytes that are not UTF-8 are bad JSON.
 */
export declare function readJsonBody(req: IncomingMessage, limit?: number): Promise<unknown>;
/** Validates a parsed body against a schema; an absent body counts as `{}`. */
export declare function validateBody<S extends ObjectSchema>(schema: S, value: unknown): InferFields<S['fields']>;
/**
 * Validates query parameters (already split, each name at most once). Integers
 * are decimal strings, booleans `true` or `false`; other values keep their text.
 */
export declare function validateQuery<Q extends QuerySchema>(schema: Q, query: Readonly<Record<string, string>>): InferQuery<Q>;
export {};
