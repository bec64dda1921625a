import type { Logger } from 'pino';
import type { CryptoSuite, KeyPair } from '../../protocol/src/index.js';
import { type AuditLog } from './audit.js';
import type { Clock } from '../../platform/src/index.js';
import { type DirLock } from '../../platform/src/index.js';
import { type Sealer } from './seal.js';
import type { Store } from './store/store.js';
/** Held while a control plane runs on the directory (platform/src/dir-lock.ts). */
export declare const CP_LOCK_FILE = "control-plane.lock";
export declare const IDENTITY_META = "cp-identity";
export declare const IDENTITY_PUB_FILE = "identity.pub";
export declare const ADMIN_TOKEN_FILE = "admin.token";
export interface BootstrapOptions {
    readonly dataDir: string;
    readonly masterKeyFile?: string | undefined;
    /** Base64 master key from the environment, read by the CLI, never here. */
    readonly masterKeyEnv?: string | undefined;
    readonly suite: CryptoSuite;
    readonly clock: Clock;
    readonly logger: Logger;
    /** An already opened store (tests); otherwise the one `storeUrl` names. */
    readonly store?: Store;
    /** `--store`: `sqlite:DIR` or `postgres://…` (store/open.ts); SQLite under dataDir when absent. */
    readonly storeUrl?: string | undefined;
}
export interface Bootstrapped {
    readonly store: Store;
    readonly sealer: Sealer;
    readonly audit: AuditLog;
    readonly identity: KeyPair;
    /** Held until the control plane closes: one control plane per data directory. */
    readonly lock: DirLock;
}
export declare function bootstrap(o: BootstrapOptions): Promise<Bootstrapped>;
