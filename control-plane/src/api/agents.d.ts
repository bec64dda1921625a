import type { CpContext } from '../context.js';
import type { Route } from '../http/router.js';
import { type OperatorPrincipal } from './principal.js';
export declare function agentsRoutes(ctx: CpContext): Route<OperatorPrincipal>[];
