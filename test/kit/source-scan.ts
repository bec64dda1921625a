// Reading our own sources as text, for the tests that police them (purity, boundaries).

/** Module specifiers of static and dynamic imports and re-exports. */
export function specifiers(code: string): string[] {
  const out: string[] = []
  const re = /(?:\bimport\s[^'"]*?from\s*|\bexport\s[^'"]*?from\s*|\bimport\s*\(\s*|\bimport\s+)['"]([^'"]+)['"]/g
  for (const m of code.matchAll(re)) out.push(m[1] as string)
  return out
}

/** The code without its comments, so that a comment naming a timer is no finding. */
export const stripComments = (code: string): string => code.replace(/\/\*[\s\S]*?\*\//g, '').replace(/(^|[^:'"])\/\/.*$/gm, '$1')
