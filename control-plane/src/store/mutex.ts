// A FIFO lock for the stores: transactions of one process queue here, in the
// order they were started, before they touch the database.

export interface Mutex {
  /** Resolves with the release function once every earlier holder released. */
  acquire(): Promise<() => void>
}

export function createMutex(): Mutex {
  let tail: Promise<void> = Promise.resolve()
  return {
    acquire() {
      let release!: () => void
      const held = new Promise<void>((resolve) => (release = resolve))
      const before = tail
      tail = before.then(() => held)
      return before.then(() => release)
    },
  }
}
