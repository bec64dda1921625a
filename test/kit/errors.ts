import { isKeymeshError } from '../../protocol/src/index.js'

/** The code of the KeymeshError `fn` throws, 'no error' if it returns, or a marker for an untyped error. */
export function codeOf(fn: () => unknown): string {
  try {
    fn()
    return 'no error'
  } catch (e) {
    return isKeymeshError(e) ? e.code : `untyped error: ${String(e)}`
  }
}
