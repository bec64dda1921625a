// What `--store`, `--from` and `--to` accept, checked before anything is opened
// or created: `sqlite:DIR` (or `sqlite:` alone where the data directory serves)
// or a PostgreSQL URL (control-plane/src/store/pg-url.ts). Refusals are
// CP_ERR_USAGE naming the flag, with any password hidden.
import { cpError } from '../control-plane/src/index.js'
import { STORE_FORMS } from '../control-plane/src/index.js'
import { isPgUrl, parsePgUrl, redactStoreSpec } from '../control-plane/src/index.js'
import type { KeymeshError } from '../protocol/src/index.js'

/** Returns the spec as it may be shown to the operator; throws CP_ERR_USAGE when it is unusable. */
export function checkStoreSpec(spec: string, flag: string, o: { readonly needDir?: boolean } = {}): string {
  if (isPgUrl(spec)) {
    try {
      const location = parsePgUrl(spec)
      return `${location.display} (schema ${location.schema})`
    } catch (e) {
      throw cpError('CP_ERR_USAGE', `${flag}: ${(e as KeymeshError).detail ?? 'invalid URL'}`, { cause: e })
    }
  }
  if (spec.startsWith('sqlite:') && (o.needDir !== true || spec.length > 'sqlite:'.length)) return spec
  throw cpError('CP_ERR_USAGE', `${flag} must be ${STORE_FORMS}, got ${JSON.stringify(redactStoreSpec(spec))}`)
}
