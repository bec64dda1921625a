// Where a PostgreSQL writer of this process waits for its turn (pg-store.ts), and
// when it is refused at once instead. Writers run one at a time (a FIFO mutex), so
// during an outage each queued writer would wait out its own connect timeout in
// turn, and a burst of requests would hang for minutes. A new writer is refused
// with CP_ERR_STORE "database unreachable at <url>: …" when:
//   - `maxWaiting` writers already wait for their turn or their connection;
//   - the writer whose turn it is has had no answer for `connectTimeoutMs` to
//     its connect or BEGIN (a database gone silent). Waiting for the write lock
//     that another replica holds comes after that (pg-store.ts) and is not timed
//     here: a long write elsewhere is not an outage;
//   - the last writer to try could not reach the database and others still wait.
// A writer queued before such a failure is refused when its turn comes, without
// trying again. Once the queue is empty, the next writer tries (the probe); its
// success ends the outage.
import { cpError } from '../errors.js';
import { createMutex } from './mutex.js';
export class WriterQueue {
    #o;
    #mutex = createMutex();
    /** Writers that have not got their connection yet: queued, or connecting. */
    #waiting = 0;
    #tickets = 0;
    /** When the writer whose turn it is started connecting; undefined when none is. */
    #connectingSince;
    /** Set by a writer that could not reach the database: writers with a ticket up to this one were queued before. */
    #outage;
    constructor(o) {
        this.#o = o;
    }
    /**
     * Waits for this writer's turn, then for `connect`. A rejection of `connect`
     * that `unreachable` recognises starts an outage (see above); any success ends it.
     */
    async enter(connect, unreachable) {
        const refusal = this.#refusal();
        if (refusal !== undefined)
            throw this.#error(refusal);
        const ticket = ++this.#tickets;
        this.#waiting++;
        const release = await this.#mutex.acquire(); // never rejects
        try {
            if (this.#outage !== undefined && ticket <= this.#outage)
                throw this.#error('an earlier write could not reach it');
            this.#connectingSince = this.#o.now();
            try {
                const connection = await connect();
                this.#outage = undefined;
                return { connection, release };
            }
            catch (e) {
                if (unreachable(e))
                    this.#outage = this.#tickets;
                throw e;
            }
            finally {
                this.#connectingSince = undefined;
            }
        }
        catch (e) {
            release();
            throw e;
        }
        finally {
            this.#waiting--;
        }
    }
    #refusal() {
        const { maxWaiting, connectTimeoutMs, now } = this.#o;
        if (this.#waiting >= maxWaiting)
            return `${this.#waiting} write transactions are already waiting`;
        if (this.#waiting === 0)
            return undefined;
        if (this.#outage !== undefined)
            return `the last write could not reach it (${this.#waiting} waiting)`;
        const since = this.#connectingSince;
        if (since !== undefined && now() - since >= connectTimeoutMs)
            return `the write whose turn it is has had no answer for ${now() - since} ms`;
        return undefined;
    }
    #error(why) {
        return cpError('CP_ERR_STORE', `database unreachable at ${this.#o.display}: ${why}`);
    }
}
//# sourceMappingURL=pg-writer-queue.js.map