// Routes of the admin API and how a request path finds one.
//
// A route names its method, a path pattern (`/v1/keys/:name`), whether it needs a
// bearer token, the operation it performs (what the authorizer decides on), and
// optional body and query schemas. The server (server.ts) runs every request
// through the same steps — match, authenticate, read and validate, authorize,
// handle — so no route can skip one by forgetting it.
import { cpError } from '../errors.js';
const METHODS = ['GET', 'POST', 'PUT', 'PATCH', 'DELETE'];
/**
 * Returns a `route()` helper typed for a principal type, so handlers see their
 * body, query and principal with the right types:
 * `const route = routeFactory<OperatorPrincipal>()`.
 */
export function routeFactory() {
    return (spec) => spec;
}
export const route = routeFactory();
export class Router {
    #routes;
    constructor(routes) {
        const compiled = routes.map((r) => compile(r));
        const seen = new Set();
        for (const c of compiled) {
            // Two routes with the same method and shape would make one unreachable.
            const shape = `${c.route.method} ${c.segments.map((s) => (typeof s === 'string' ? s : ':')).join('/')}`;
            if (seen.has(shape))
                throw new Error(`duplicate route: ${c.route.method} ${c.route.path}`);
            seen.add(shape);
        }
        // Literal segments win over parameters at the first place two patterns differ,
        // so `/v1/keys/export` is found before `/v1/keys/:name`.
        this.#routes = compiled.sort((a, b) => specificity(a, b));
    }
    get routes() {
        return this.#routes.map((c) => c.route);
    }
    match(method, path) {
        const parts = path.split('/');
        const allowed = [];
        for (const c of this.#routes) {
            const params = matchSegments(c.segments, parts);
            if (params === null)
                continue;
            if (c.route.method === method)
                return { kind: 'found', route: c.route, params };
            if (!allowed.includes(c.route.method))
                allowed.push(c.route.method);
        }
        return allowed.length > 0 ? { kind: 'method-not-allowed', allowed } : { kind: 'not-found' };
    }
}
function compile(route) {
    if (!METHODS.includes(route.method))
        throw new Error(`route ${route.path}: unsupported method ${route.method}`);
    if (!route.path.startsWith('/'))
        throw new Error(`route ${route.path}: path must start with /`);
    const names = new Set();
    const segments = route.path.slice(1).split('/').map((s) => {
        if (!s.startsWith(':'))
            return s;
        const param = s.slice(1);
        if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(param) || names.has(param)) {
            throw new Error(`route ${route.path}: bad or repeated parameter name :${param}`);
        }
        names.add(param);
        return { param };
    });
    return { route, segments };
}
function specificity(a, b) {
    const n = Math.min(a.segments.length, b.segments.length);
    for (let i = 0; i < n; i++) {
        const la = typeof a.segments[i] === 'string';
        const lb = typeof b.segments[i] === 'string';
        if (la !== lb)
            return la ? -1 : 1;
    }
    return 0;
}
/** `parts` is the path split on `/` (so parts[0] is the empty string before the first slash). */
function matchSegments(segments, parts) {
    if (parts.length !== segments.length + 1 || parts[0] !== '')
        return null;
    const params = {};
    for (let i = 0; i < segments.length; i++) {
        const seg = segments[i];
        const part = parts[i + 1];
        if (typeof seg === 'string') {
            if (seg !== part)
                return null;
        }
        else {
            if (part === '')
                return null;
            params[seg.param] = decodeSegment(part);
        }
    }
    return params;
}
function decodeSegment(part) {
    try {
        return decodeURIComponent(part);
    }
    catch {
        throw cpError('CP_ERR_BAD_REQUEST', 'path has a malformed percent-encoding');
    }
}
/** Splits a query string; a parameter given twice is refused rather than guessed at. */
export function parseQuery(search) {
    const out = {};
    for (const [name, value] of new URLSearchParams(search)) {
        if (Object.hasOwn(out, name))
            throw cpError('CP_ERR_BAD_REQUEST', 'a query parameter is given more than once');
        out[name] = value;
    }
    return out;
}
/** Splits a request target into path and query string (an absolute-form target matches no route). */
export function splitTarget(target) {
    const q = target.indexOf('?');
    const path = q === -1 ? target : target.slice(0, q);
    const search = q === -1 ? '' : target.slice(q + 1);
    return { path, search };
}
//# sourceMappingURL=router.js.map