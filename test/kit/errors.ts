import { isKeymeshError } from '../../protocol/src/index.js'

/** codeOf for a promise: the code of the KeymeshError it rejects with, 'no error' if it resolves. */
export async function codeOfAsync(p: Promise<unknown>): Promise<string> {
  try {
    await p
    return 'no error'
  } catch (e) {
    return isKeymeshError(e) ? e.code : `untyped error: ${String(e)}`
  }
}

/** The code of the KeymeshError `fn` throws, 'no error' if it returns, or a marker for an untyped error. */
export function codeOf(fn: () => unknown): string {
  try {
    fn()
    return 'no error'
  } catch (e) {
    return isKeymeshError(e) ? e.code : `untyped error: ${String(e)}`
  }
}
