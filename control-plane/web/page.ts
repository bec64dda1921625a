// What a page of the console is: it draws itself into its root, draws itself
// again when asked (something changed), and may take the live audit entries.

export interface AuditEntry {
  readonly seq: number
  readonly at: number
  readonly actor: string
  readonly action: string
  readonly target: string
  readonly outcome: string
  readonly reason: string
  readonly details: unknown
  readonly hash: string
}

export interface FeedBatch {
  readonly entries: readonly AuditEntry[]
  readonly skipped: number
}

export interface Page {
  /** Fetches and draws again. */
  refresh(): Promise<void>
  /** New audit entries (the live feed); without it the page is refreshed instead. */
  onAudit?(batch: FeedBatch): void
}

/** Draws a page into `root`; `params` are the route's parts after the page name. */
export type PageFn = (root: HTMLElement, params: readonly string[]) => Promise<Page>

/** Marks the page drawn, for people (nothing) and for tests and the bench (data-ready). */
export function drawn(root: HTMLElement): void {
  root.dataset['ready'] = String(Number(root.dataset['ready'] ?? '0') + 1)
}
