import { cpError } from '../errors.js';
import { readBodyLimited } from '../../../platform/src/index.js';
export const DEFAULT_BODY_LIMIT = 1024 * 1024;
/**
 * Reads a JSON body. Returns undefined for an empty body. A body must be declared
 * `application/json` (charset utf-8 if any); bytes that are not UTF-8 are bad JSON.
 */
export async function readJsonBody(req, limit = DEFAULT_BODY_LIMIT) {
    const declared = req.headers['content-length'];
    // Refuse before reading a byte when the client announces an oversized body.
    if (declared !== undefined && Number(declared) > limit) {
        throw cpError('CP_ERR_BODY_TOO_LARGE', `limit is ${limit} bytes`);
    }
    const raw = await readLimited(req, limit);
    if (raw.length === 0)
        return undefined;
    checkContentType(req.headers['content-type']);
    let text;
    try {
        text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: false }).decode(raw);
    }
    catch {
        throw cpError('CP_ERR_BAD_JSON', 'body is not UTF-8');
    }
    try {
        return JSON.parse(text);
    }
    catch {
        // JSON.parse's message quotes the input, so it is not passed on.
        throw cpError('CP_ERR_BAD_JSON');
    }
}
function checkContentType(header) {
    const [type = '', ...params] = (header ?? '').split(';').map((s) => s.trim().toLowerCase());
    if (type !== 'application/json')
        throw cpError('CP_ERR_UNSUPPORTED_MEDIA_TYPE');
    for (const p of params) {
        if (p.startsWith('charset=') && p.slice(8).replace(/"/g, '') !== 'utf-8') {
            throw cpError('CP_ERR_UNSUPPORTED_MEDIA_TYPE');
        }
    }
}
const BODY_ERRORS = {
    tooLarge: (limit) => cpError('CP_ERR_BODY_TOO_LARGE', `limit is ${limit} bytes`),
    cutOff: (cause) => cpError('CP_ERR_BAD_REQUEST', 'request body was cut off', { cause }),
};
const readLimited = (req, limit) => readBodyLimited(req, limit, BODY_ERRORS);
/** Validates a parsed body against a schema; an absent body counts as `{}`. */
export function validateBody(schema, value) {
    return checkObject(schema.fields, value === undefined ? {} : value, '');
}
/**
 * Validates query parameters (already split, each name at most once). Integers
 * are decimal strings, booleans `true` or `false`; other values keep their text.
 */
export function validateQuery(schema, query) {
    const coerced = {};
    for (const [name, text] of Object.entries(query)) {
        const field = Object.hasOwn(schema, name) ? schema[name] : undefined;
        if (field === undefined)
            throw cpError('CP_ERR_UNKNOWN_FIELD', `query parameter ${safeName(name)}`);
        if (field.type === 'integer')
            coerced[name] = /^-?\d{1,15}$/.test(text) ? Number(text) : text;
        else if (field.type === 'boolean')
            coerced[name] = text === 'true' ? true : text === 'false' ? false : text;
        else
            coerced[name] = text;
    }
    return checkObject(schema, coerced, '');
}
function checkObject(fields, value, path) {
    if (typeof value !== 'object' || value === null || Array.isArray(value)) {
        throw invalid(path, 'must be an object');
    }
    const input = value;
    for (const name of Object.keys(input)) {
        if (!Object.hasOwn(fields, name))
            throw cpError('CP_ERR_UNKNOWN_FIELD', safeName(join(path, name)));
    }
    // Built fresh from the schema's names, so only declared fields reach the handler.
    const out = {};
    for (const [name, field] of Object.entries(fields)) {
        const v = Object.hasOwn(input, name) ? input[name] : undefined;
        const at = join(path, name);
        if (v === undefined) {
            if (!field.optional)
                throw invalid(at, 'is required');
            continue;
        }
        out[name] = checkField(field, v, at);
    }
    return out;
}
function checkField(field, v, at) {
    switch (field.type) {
        case 'string': {
            if (typeof v !== 'string')
                throw invalid(at, 'must be a string');
            if (field.enum && !field.enum.includes(v))
                throw invalid(at, `must be one of ${field.enum.join(', ')}`);
            if (field.minLength !== undefined && v.length < field.minLength)
                throw invalid(at, `must be at least ${field.minLength} characters`);
            if (field.maxLength !== undefined && v.length > field.maxLength)
                throw invalid(at, `must be at most ${field.maxLength} characters`);
            if (field.pattern && !field.pattern.test(v))
                throw invalid(at, `must match ${String(field.pattern)}`);
            return v;
        }
        case 'integer': {
            if (typeof v !== 'number' || !Number.isSafeInteger(v))
                throw invalid(at, 'must be an integer');
            if (field.min !== undefined && v < field.min)
                throw invalid(at, `must be at least ${field.min}`);
            if (field.max !== undefined && v > field.max)
                throw invalid(at, `must be at most ${field.max}`);
            return v;
        }
        case 'boolean':
            if (typeof v !== 'boolean')
                throw invalid(at, 'must be true or false');
            return v;
        case 'array': {
            if (!Array.isArray(v))
                throw invalid(at, 'must be an array');
            if (field.minItems !== undefined && v.length < field.minItems)
                throw invalid(at, `must have at least ${field.minItems} items`);
            if (field.maxItems !== undefined && v.length > field.maxItems)
                throw invalid(at, `must have at most ${field.maxItems} items`);
            return v.map((item, i) => checkField(field.items, item, `${at}[${i}]`));
        }
        case 'object':
            return checkObject(field.fields, v, at);
    }
}
function join(path, name) {
    return path === '' ? name : `${path}.${name}`;
}
function invalid(at, rule) {
    return cpError('CP_ERR_INVALID_FIELD', at === '' ? `body ${rule}` : `${safeName(at)} ${rule}`);
}
/** A field name is caller data too: keep it printable and short before echoing it. */
function safeName(name) {
    const clean = name.replace(/[^\x20-\x7e]/g, '?');
    return clean.length > 64 ? `${clean.slice(0, 64)}…` : clean;
}
//# sourceMappingURL=body.js.map