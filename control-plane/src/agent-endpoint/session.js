import { NoiseChannel } from '../../../protocol/src/index.js';
import { isKeymeshError } from '../../../protocol/src/index.js';
import { decodeMessage } from '../../../protocol/src/index.js';
import { createXkResponder } from '../../../protocol/src/index.js';
import { Liveness } from '../../../platform/src/index.js';
import { cpError } from '../errors.js';
import { auditFailure } from '../operation.js';
import { admitAgent } from '../services/enrollment.js';
import { KmsSessionCalls } from '../services/kms-session.js';
import { KeySetStream } from './keyset-stream.js';
import { recordUsageBatch } from './usage.js';
/** Going Away (RFC 6455): the control plane is shutting down. */
export const CLOSE_GOING_AWAY = 1001;
export class AgentSession {
    #ctx;
    #hub;
    #ws;
    #remote;
    #limits;
    #channel;
    #early = [];
    #keyset;
    #liveness;
    #state = 'handshake';
    #agent;
    #cancelTimer;
    #usage = Promise.resolve();
    #kms;
    /** Called once when the session ends, whatever the reason. */
    onClosed;
    /** Called once when the session stops being a pending handshake. */
    onSettled;
    /** Called at most once, with the code, when the session fails or is refused before admission. */
    onHandshakeFailed;
    constructor(ctx, hub, ws, remote, limits) {
        this.#ctx = ctx;
        this.#hub = hub;
        this.#ws = ws;
        this.#remote = remote;
        this.#limits = limits;
        this.#channel = new NoiseChannel({
            handshake: createXkResponder({ suite: ctx.suite, staticKey: ctx.identity }),
            transport: {
                send: (bytes) => this.#send(bytes),
                close: (code, reason) => this.#closeSocket(code, reason),
            },
            handler: {
                onHandshake: (r) => this.#onHandshake(r),
                onMessage: (m) => this.#onMessage(m),
                onPeerClose: () => this.#finish(),
                onError: (err) => this.#onChannelError(err),
            },
        });
        this.#keyset = new KeySetStream(this.#channel);
        const idleMs = ctx.settings.agentIdleTimeoutMs;
        this.#liveness = new Liveness({
            clock: ctx.clock,
            pingMs: Math.ceil(idleMs / 2),
            deadMs: idleMs,
            ping: () => {
                if (ws.readyState !== ws.OPEN)
                    return false;
                ws.ping();
                return true;
            },
            dead: (silentMs) => this.#onIdle(silentMs),
        });
        const seen = () => this.#liveness.seen();
        ws.on('message', (data, isBinary) => {
            seen();
            this.#onFrame(data, isBinary);
        });
        ws.on('ping', seen);
        ws.on('pong', seen);
        ws.on('close', () => this.#finish());
        ws.on('error', (err) => {
            // ws has already closed the socket (e.g. 1009 for a frame over maxPayload).
            this.#ctx.logger.info({ err: { message: err.message }, remote: this.#remote }, 'agent socket error');
            this.#handshakeFailed('CP_ERR_BAD_REQUEST');
            void this.#audit(cpError('CP_ERR_BAD_REQUEST', `WebSocket error: ${err.code ?? 'unknown'}`));
        });
        this.#cancelTimer = ctx.clock.setTimer(limits.handshakeTimeoutMs, () => this.#refuse(cpError('CP_ERR_HANDSHAKE_TIMEOUT', `${limits.handshakeTimeoutMs} ms`)));
        this.#channel.start();
    }
    get state() {
        return this.#state;
    }
    get agentId() {
        return this.#agent?.id ?? '';
    }
    get service() {
        return this.#agent?.service ?? '';
    }
    /** Closes the session with a typed error: an 'error' message when the channel is open, then the close code. */
    terminate(error) {
        this.#refuse(error);
    }
    /** Closes for shutdown (1001). */
    shutdown() {
        this.#channel.close(CLOSE_GOING_AWAY, 'control plane shutting down');
        if (this.#channel.state !== 'closed')
            this.#closeSocket(CLOSE_GOING_AWAY, 'control plane shutting down');
    }
    applyUpdate(seq, set) {
        if (this.#state !== 'ready')
            return;
        try {
            this.#keyset.apply(seq, set);
        }
        catch (err) {
            this.#fail(err);
        }
    }
    #onFrame(data, isBinary) {
        if (this.#state === 'closed')
            return;
        if (!isBinary)
            return this.#refuse(cpError('CP_ERR_AGENT_FRAME'));
        try {
            this.#channel.receive(new Uint8Array(data.buffer, data.byteOffset, data.length));
        }
        catch (err) {
            this.#fail(err);
        }
    }
    // Liveness is stopped when the session finishes, so this runs on a live session only.
    #onIdle(silentMs) {
        this.#ctx.logger.info({ agentId: this.#agent?.id, remote: this.#remote, silentMs }, 'agent silent; session cut');
        // Terminated, not closed: a close frame would wait for an answer that will not come.
        this.#ws.terminate();
        this.#finish();
    }
    #onHandshake(r) {
        this.#state = 'admitting';
        const [first, hello] = r.payloads;
        let message;
        try {
            if (first === undefined || first.length !== 0 || hello === undefined || r.remoteStatic === undefined) {
                throw cpError('CP_ERR_AGENT_MESSAGE', 'message 3 must carry hello and nothing may precede it');
            }
            message = decodeMessage(hello);
            hello.fill(0); // it may hold a join token
            if (message.type !== 'hello')
                throw cpError('CP_ERR_AGENT_MESSAGE', `expected hello, got ${message.type}`);
        }
        catch (err) {
            return this.#refuse(isKeymeshError(err) ? err : cpError('CP_ERR_INTERNAL'));
        }
        const staticKey = r.remoteStatic;
        admitAgent(this.#ctx, { staticKey, hello: message, remote: this.#remote }).then((a) => this.#ready(a.agent), (err) => {
            // admitAgent has audited the refusal already.
            this.#refuse(isKeymeshError(err) ? err : cpError('CP_ERR_INTERNAL'), false);
        });
    }
    async #ready(agent) {
        this.#settle();
        if (this.#state === 'closed')
            return;
        this.#agent = agent;
        this.#state = 'ready';
        this.#kms = new KmsSessionCalls(this.#ctx, { agentId: agent.id, service: agent.service }, {
            send: (encoded) => this.#channel.sendEncoded(encoded, true),
            isOpen: () => this.#state === 'ready',
            fail: (err) => this.#fail(err),
        });
        this.#hub.register(this);
        try {
            this.#channel.send({ type: 'welcome', agentId: agent.id, service: agent.service, serverTime: this.#ctx.clock.now() });
            for (const m of this.#early.splice(0))
                this.#onMessage(m);
            const sent = await this.#keyset.sendFirst(this.#ctx, this.#hub, agent, () => this.#state === 'ready');
            if (sent === 'revoked')
                this.#refuse(cpError('CP_ERR_AGENT_REVOKED', `agent ${agent.id}`));
        }
        catch (err) {
            this.#fail(err);
        }
    }
    #onMessage(m) {
        if (this.#state !== 'ready') {
            if (this.#early.length >= this.#limits.maxEarlyMessages)
                return this.#refuse(cpError('CP_ERR_AGENT_MESSAGE', 'too many messages before welcome'));
            this.#early.push(m);
            return;
        }
        switch (m.type) {
            case 'usage.batch':
                this.#usage = this.#usage.then(() => this.#onUsage(m));
                return;
            case 'kms.request':
                return this.#kms?.request(m);
            case 'kms.batch':
                return this.#kms?.batch(m);
            case 'error':
                this.#ctx.logger.info({ agentId: this.agentId, code: m.code }, 'agent reported an error');
                return;
            default:
                return this.#refuse(cpError('CP_ERR_AGENT_MESSAGE', `${m.type} is not accepted from an agent`));
        }
    }
    async #onUsage(batch) {
        const agent = this.#agent;
        if (!agent || this.#state !== 'ready')
            return;
        try {
            await recordUsageBatch(this.#ctx, agent, batch);
        }
        catch (err) {
            // Not acked: the agent keeps the batch and sends it again.
            this.#ctx.logger.warn({ err: { code: err.code }, agentId: agent.id, seq: batch.seq }, 'usage batch not recorded');
            return;
        }
        if (this.#state !== 'ready')
            return;
        try {
            this.#channel.send({ type: 'usage.ack', seq: batch.seq });
        }
        catch (err) {
            this.#fail(err);
        }
    }
    #onChannelError(err) {
        // The channel has closed the socket with the error's close code.
        this.#ctx.logger.info({ code: err.code, remote: this.#remote, agentId: this.#agent?.id }, 'agent channel failed');
        this.#handshakeFailed(err.code);
        void this.#audit(err);
        this.#finish();
    }
    /** Typed refusal: tell the agent why when the channel is open, close with the code, audit unless already done. */
    #refuse(error, audit = true) {
        if (this.#state === 'closed')
            return;
        this.#handshakeFailed(error.code);
        if (this.#channel.state === 'open') {
            try {
                this.#channel.send({ type: 'error', code: error.code, message: error.message.slice(0, 512) });
            }
            catch {
                // Still close below.
            }
        }
        this.#channel.close(error.closeCode, error.code);
        if (this.#channel.state !== 'closed')
            this.#closeSocket(error.closeCode, error.code);
        if (audit)
            void this.#audit(error);
        this.#finish();
    }
    #fail(err) {
        if (isKeymeshError(err))
            return this.#refuse(err);
        this.#ctx.logger.error({ err, agentId: this.#agent?.id }, 'agent session failed');
        this.#refuse(cpError('CP_ERR_INTERNAL'));
    }
    async #audit(error) {
        const agent = this.#agent;
        const actor = agent ? { kind: 'agent', id: agent.id, service: agent.service } : { kind: 'anonymous', remote: this.#remote };
        const action = agent ? 'agent.session' : 'agent.handshake';
        await auditFailure(this.#ctx, actor, action, agent ? `agent:${agent.id}` : `remote:${this.#remote ?? 'unknown'}`, error);
    }
    /** Reports a failure that came before admission (once); later failures are not handshake failures. */
    #handshakeFailed(code) {
        if (this.#agent !== undefined || this.#state === 'closed')
            return;
        const report = this.onHandshakeFailed;
        this.onHandshakeFailed = undefined;
        report?.(code);
    }
    #send(bytes) {
        if (this.#ws.readyState !== this.#ws.OPEN)
            return;
        if (this.#ws.bufferedAmount > this.#limits.maxBufferedBytes)
            throw cpError('CP_ERR_AGENT_BACKPRESSURE', `${this.#ws.bufferedAmount} bytes waiting`);
        this.#ws.send(bytes, { binary: true });
    }
    #closeSocket(code, reason) {
        if (this.#ws.readyState === this.#ws.OPEN || this.#ws.readyState === this.#ws.CONNECTING)
            this.#ws.close(code, reason);
    }
    #settle() {
        this.#cancelTimer?.();
        this.#cancelTimer = undefined;
        const settled = this.onSettled;
        this.onSettled = undefined;
        settled?.();
    }
    #finish() {
        if (this.#state === 'closed')
            return;
        this.#state = 'closed';
        this.#settle();
        this.#liveness.stop();
        this.#early.length = 0;
        this.#hub.unregister(this);
        this.onClosed?.();
    }
}
//# sourceMappingURL=session.js.map