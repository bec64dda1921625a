import { type KeymeshError } from '../../../protocol/src/index.js';
import type { PgLocation } from './pg-url.js';
/** Whether `e` means the connection is gone or could not be made (retrying on a new one may work). */
export declare function isConnectionError(e: unknown): boolean;
/** An error's message for logs, with the passwords of `location` removed. */
export declare function pgErrorText(e: unknown, location: PgLocation): string;
/** Maps any error from `pg` (or a socket) onto CP_ERR_CONFLICT / CP_ERR_NOT_FOUND / CP_ERR_STORE. */
export declare function mapPgError(e: unknown, location: PgLocation): KeymeshError;
