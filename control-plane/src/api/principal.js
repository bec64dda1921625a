// The admin API's caller: an operator token, as authenticated by app.ts.
import { routeFactory } from '../http/router.js';
/** `route()` for admin routes: handlers see an OperatorPrincipal. */
export const operatorRoute = routeFactory();
export function operatorActor(p) {
    return { kind: 'operator', id: p.id, name: p.name, role: p.role };
}
//# sourceMappingURL=principal.js.map