import { WebSocketServer } from 'ws';
import { MAX_RECORD_BYTES } from '../../../protocol/src/index.js';
import { cpError } from '../errors.js';
import { auditFailure } from '../operation.js';
import { Hub } from './hub.js';
import { AgentSession } from './session.js';
export const AGENT_PATH = '/v1/agent';
export const DEFAULT_AGENT_ENDPOINT_OPTIONS = Object.freeze({
    handshakeTimeoutMs: 10_000,
    maxPendingHandshakes: 256,
    maxBufferedBytes: 8 * 1024 * 1024,
    maxEarlyMessages: 16,
    shutdownGraceMs: 2_000,
});
export function createAgentEndpoint(ctx, options = {}) {
    const { onHandshakeFailure, ...limits } = options;
    const o = { ...DEFAULT_AGENT_ENDPOINT_OPTIONS, ...limits };
    for (const [name, value] of Object.entries(o)) {
        if (!Number.isSafeInteger(value) || value < 1)
            throw cpError('CP_ERR_INTERNAL', `agent endpoint option ${name} must be a positive integer`);
    }
    const idleMs = ctx.settings.agentIdleTimeoutMs;
    if (!Number.isSafeInteger(idleMs) || idleMs < 2)
        throw cpError('CP_ERR_INTERNAL', 'setting agentIdleTimeoutMs must be an integer of at least 2 (ms)');
    const hub = new Hub(ctx);
    const wss = new WebSocketServer({ noServer: true, maxPayload: MAX_RECORD_BYTES, perMessageDeflate: false, clientTracking: false });
    const sessions = new Map();
    let pending = 0;
    let closing = false;
    function refuseHttp(socket, status) {
        socket.end(`HTTP/1.1 ${status}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
    }
    function handleUpgrade(req, socket, head) {
        if (closing)
            return refuseHttp(socket, '503 Service Unavailable');
        let path;
        try {
            path = new URL(req.url ?? '/', 'http://agent.invalid').pathname;
        }
        catch {
            path = '';
        }
        if (path !== AGENT_PATH) {
            ctx.logger.info({ path: path.slice(0, 100) }, 'upgrade refused: not the agent endpoint');
            return refuseHttp(socket, '404 Not Found');
        }
        const remote = req.socket.remoteAddress;
        wss.handleUpgrade(req, socket, head, (ws) => {
            if (closing)
                return ws.close(1001, 'control plane shutting down');
            if (pending >= o.maxPendingHandshakes) {
                const err = cpError('CP_ERR_HANDSHAKE_LIMIT', `${o.maxPendingHandshakes} in progress`);
                ws.close(err.closeCode, err.code);
                onHandshakeFailure?.(err.code);
                void auditFailure(ctx, { kind: 'anonymous', remote }, 'agent.handshake', `remote:${remote ?? 'unknown'}`, err);
                return;
            }
            pending++;
            const session = new AgentSession(ctx, hub, ws, remote, o);
            session.onSettled = () => pending--;
            session.onClosed = () => sessions.delete(session);
            session.onHandshakeFailed = onHandshakeFailure;
            if (session.state !== 'closed')
                sessions.set(session, ws);
        });
    }
    async function close() {
        if (closing)
            return;
        closing = true;
        hub.close();
        const open = [...sessions.entries()];
        const done = open.map(([, ws]) => new Promise((resolve) => (ws.readyState === ws.CLOSED ? resolve() : ws.once('close', () => resolve()))));
        for (const [session] of open)
            session.shutdown();
        // A peer that never answers the close frame must not hold shutdown up. This is
        // a wall-clock safety valve, not protocol timing, so it does not use ctx.clock.
        const timer = setTimeout(() => {
            for (const [, ws] of open)
                ws.terminate();
        }, o.shutdownGraceMs);
        timer.unref();
        await Promise.all(done);
        clearTimeout(timer);
        await hub.idle();
        wss.close();
    }
    return {
        hub,
        handleUpgrade,
        connectedCount: () => hub.size,
        pendingCount: () => pending,
        close,
    };
}
//# sourceMappingURL=endpoint.js.map