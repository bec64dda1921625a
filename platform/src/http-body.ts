// Reading an HTTP request body within a byte limit, for the control plane's admin
// API and the agent's local API. Nothing past the limit is buffered: the reader
// stops and pauses the request, and the caller answers 413 and closes the
// connection. Errors are the caller's typed errors (each package has its own table).
import type { IncomingMessage } from 'node:http'

export interface BodyErrors {
  /** The body grew past the limit. */
  readonly tooLarge: (limit: number) => Error
  /** The request ended or failed before the body was complete. */
  readonly cutOff: (cause?: unknown) => Error
}

export function readBodyLimited(req: IncomingMessage, limit: number, errors: BodyErrors): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    let size = 0
    const cleanup = (): void => {
      req.off('data', onData)
      req.off('end', onEnd)
      req.off('error', onFail)
      req.off('close', onFail)
    }
    const onData = (chunk: Buffer): void => {
      size += chunk.length
      if (size > limit) {
        cleanup()
        req.pause()
        reject(errors.tooLarge(limit))
        return
      }
      chunks.push(chunk)
    }
    const onEnd = (): void => {
      cleanup()
      resolve(Buffer.concat(chunks, size))
    }
    const onFail = (err?: unknown): void => {
      cleanup()
      reject(errors.cutOff(err instanceof Error ? err : undefined))
    }
    req.on('data', onData)
    req.on('end', onEnd)
    req.on('error', onFail)
    req.on('close', onFail)
  })
}
