import type { CpContext } from '../context.js';
import type { Route } from '../http/router.js';
import { type OperatorPrincipal } from './principal.js';
export declare function keysRoutes(ctx: CpContext): Route<OperatorPrincipal>[];
