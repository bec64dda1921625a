import { nodeSuite } from '../../protocol/src/index.js';
import { createAgentEndpoint } from './agent-endpoint/endpoint.js';
import { agentsRoutes } from './api/agents.js';
import { tokensRoutes } from './api/tokens.js';
import { auditRoutes } from './api/audit.js';
import { intentionsRoutes } from './api/intentions.js';
import { keysRoutes } from './api/keys.js';
import { operatorActor } from './api/principal.js';
import { bootstrap } from './bootstrap.js';
import { startReplica } from './cluster/replica.js';
import { systemClock } from '../../platform/src/index.js';
import { settings as makeSettings } from './context.js';
import { cpError } from './errors.js';
import { probeRoutes } from './http/probes.js';
import { createHttpServer } from './http/server.js';
import { CpMetrics } from './metrics.js';
import { auditFailure } from './operation.js';
import { authorizeOperator, hashTokenBytes, OPERATIONS, parseToken } from './policy.js';
import { allReady, listenReadiness, storeReadiness } from './readiness.js';
import { createScheduler } from './scheduler.js';
const OPERATION_SET = new Set(OPERATIONS);
export async function startControlPlane(o) {
    const clock = o.clock ?? systemClock;
    const suite = o.suite ?? nodeSuite;
    const logger = o.logger;
    const booted = await bootstrap({
        dataDir: o.dataDir,
        masterKeyFile: o.masterKeyFile,
        masterKeyEnv: o.masterKeyEnv,
        suite,
        clock,
        logger,
        ...(o.store ? { store: o.store } : {}),
        storeUrl: o.storeUrl,
    });
    // On a shared store: the LISTEN bus (started before serving) and the scheduler lease.
    const cpSettings = makeSettings(o.settings);
    const replica = await startReplica({ store: booted.store, logger, random: suite.randomBytes, bus: o.bus, resyncIntervalMs: cpSettings.resyncIntervalMs }).catch(async (e) => {
        await booted.store.close();
        booted.sealer.wipe();
        booted.lock.release();
        throw e;
    });
    const metrics = new CpMetrics();
    const ctx = {
        store: booted.store,
        suite,
        clock,
        sealer: booted.sealer,
        // Every audit entry is counted and timed on its way in (metrics.ts).
        audit: metrics.instrumentAudit(booted.audit),
        bus: replica.bus,
        logger,
        settings: cpSettings,
        identity: booted.identity,
    };
    const endpoint = createAgentEndpoint(ctx, { onHandshakeFailure: (code) => metrics.handshakeFailed(code) });
    metrics.watchAgents(() => endpoint.connectedCount());
    const scheduler = createScheduler(ctx, { lease: replica.lease });
    const http = createHttpServer({
        routes: [
            ...keysRoutes(ctx), ...intentionsRoutes(ctx), ...tokensRoutes(ctx), ...agentsRoutes(ctx), ...auditRoutes(ctx),
            // GET /readyz and GET /metrics: no token, never audited (http/probes.ts).
            ...probeRoutes({ readiness: allReady(storeReadiness(ctx.store), listenReadiness(replica.listening)), metrics: () => metrics.text() }),
        ],
        logger,
        ...(o.limits ? { limits: o.limits } : {}),
        authenticate: (bearer) => authenticate(ctx, bearer),
        authorize: async (principal, operation) => {
            // A route naming an operation the policy does not know is a programming
            // error; refusing it keeps a typo from becoming an open door.
            if (!OPERATION_SET.has(operation))
                return { allow: false, reason: `unknown operation ${operation}` };
            return authorizeOperator(principal.role, operation);
        },
        // Refusals are audited with the code the client was answered with; so is bad
        // input on a known route (unknown field, wrong type, oversized body …).
        onDenied: (event) => auditRefusal(ctx, event, event.error),
        onRejected: (event) => auditRefusal(ctx, event, event.error),
        onUpgrade: (req, socket, head) => endpoint.handleUpgrade(req, socket, head),
        onAnswered: (event) => metrics.httpAnswered(event),
    });
    let address;
    try {
        address = await http.listen(o.host, o.port);
    }
    catch (e) {
        await replica.close();
        await ctx.store.close();
        ctx.sealer.wipe();
        booted.lock.release();
        const code = e.code ?? 'error';
        const why = code === 'EADDRINUSE' ? 'address already in use' : code === 'EACCES' ? 'permission denied' : code;
        throw cpError('CP_ERR_LISTEN', `${o.host}:${o.port}: ${why}`, { cause: e });
    }
    if (o.runScheduler !== false)
        scheduler.start();
    const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
    const url = `http://${host}:${address.port}`;
    logger.info({ url, dataDir: o.dataDir, store: ctx.store.backend }, 'control plane listening');
    let closing;
    const close = () => (closing ??= (async () => {
        logger.info('control plane shutting down');
        await http.close();
        await endpoint.close();
        await scheduler.stop();
        await replica.close();
        await ctx.store.close();
        ctx.sealer.wipe();
        ctx.identity.secretKey.fill(0);
        booted.lock.release();
        logger.info('control plane stopped');
    })());
    return { ctx, address, url, endpoint, scheduler, metrics, close };
}
/** Audits a request the HTTP layer refused before its handler ran. */
function auditRefusal(ctx, event, error) {
    const actor = event.principal ? operatorActor(event.principal) : { kind: 'anonymous', remote: event.remoteAddress };
    return auditFailure(ctx, actor, event.operation, `http:${event.method} ${event.path}`, error);
}
/** Bearer token → operator principal, or null (a 401) for anything unknown, revoked or expired. */
async function authenticate(ctx, bearer) {
    if (bearer === undefined)
        return null;
    parseToken(bearer, 'operator');
    const record = await ctx.store.read((r) => r.getOperatorTokenByHash(hashTokenBytes(ctx.suite, bearer)));
    if (!record || record.revokedAt !== null)
        return null;
    if (record.expiresAt !== null && record.expiresAt <= ctx.clock.now())
        return null;
    return { id: record.id, name: record.name, role: record.role };
}
//# sourceMappingURL=app.js.map