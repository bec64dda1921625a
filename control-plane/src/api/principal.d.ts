import type { Actor } from '../context.js';
import type { OperatorRole } from '../store/records.js';
export interface OperatorPrincipal {
    /** The token id (`tok_…`), never the token. */
    readonly id: string;
    readonly name: string;
    readonly role: OperatorRole;
}
/** `route()` for admin routes: handlers see an OperatorPrincipal. */
export declare const operatorRoute: <A extends "token" | "none", const S extends import("../http/body.js").ObjectSchema | undefined = undefined, const Q extends import("../http/body.js").QuerySchema | undefined = undefined>(spec: import("../http/router.js").RouteSpec<OperatorPrincipal, A, S, Q>) => import("../http/router.js").Route<OperatorPrincipal>;
export declare function operatorActor(p: OperatorPrincipal): Actor;
