// The tunnel session's state: one phase at a time, each holding exactly the keys it
// uses, and the table of what every event does in every phase. tunnel-session.ts
// runs the table (one method per event, one case per phase); the wire messages are
// in its header. I = initiator, R = responder; "fail X" = the session fails with
// PROTO_ERR_X (every key wiped, onError once).
//
//   phase        keys held                      public state
//   ready        hs (KK, message 1 unwritten)   handshake    I, before start()
//   hello        hs                             handshake    I, message 1 sent
//   listening    -                              handshake    R, waiting for message 1
//   confirming   records                        handshake    R, message 2 sent
//   open         records                        open
//   closing      records                        open         one direction has sent CLOSE (ended)
//   requesting   old records, hs (KK to next)   open         I, request sent, waiting for message 2
//   switching    tx = next keys, rx = old       open         R, answer sent, waiting for the marker
//   closed       -                              closed       both directions ended cleanly
//   failed       -                              failed       bad bytes in, or destroy()
//
//   event                phase                       → next phase; what is sent / called
//   start() (I)          ready                       → hello; message 1
//   message 1 (R)        listening                   → confirming; resolve(ctx), message 2
//   message 2 (I)        hello                       → open; the confirmation; onOpen
//   record (R)           confirming                  → open; onOpen, if it is the empty HANDSHAKE
//                                                      record, else fail HANDSHAKE_STATE
//   DATA, REKEY          open, closing(local),       → same; onData (REKEY: nothing)
//                        requesting, switching
//   request (R)          open                        → switching; resolve(ctx'), message 2 under old
//                        closing(local)              → same; dropped (I abandons it on our CLOSE)
//                        switching                   → fail REHANDSHAKE
//   message 2 (I)        requesting                  → open, or closing(local) if I ended; the
//                                                      marker under old unless I ended; onRekeyed
//   marker (R)           switching                   → open, or closing(local) if R ended; onRekeyed
//   CLOSE                open                        → closing(remote); onEnd
//                        closing(local)              → closed; onEnd
//                        requesting                  → closing(remote), or closed if I ended: the
//                                                      request is abandoned, old keys kept; onEnd
//                        switching                   → closing(remote) on next, or closed if R
//                                                      ended: no marker comes; onRekeyed, onEnd
//   any record           closing(remote), closed     → fail SESSION_CLOSED
//   any other HANDSHAKE  open, closing, requesting   → fail REHANDSHAKE
//   any bytes            ready                       → fail HANDSHAKE_STATE
//   bad bytes            any but closed, failed      → fail with the error's code
//   write()              open, switching             → same; DATA records
//                        requesting                  → same; DATA, one record kept for the marker
//                        closing(remote)             → same; DATA
//   end()                open                        → closing(local); CLOSE
//                        closing(remote)             → closed; CLOSE
//                        requesting, switching       → same, marked ended; CLOSE
//   rehandshake() (I)    open                        → requesting; request under old
//   destroy()            closed                      → closed (marked destroyed)
//                        any other                   → failed; no callback
// The rows without crypto are the functions below (after*, writableTx); the session
// does the crypto rows itself. Every call not in the table does nothing (start, end, rehandshake returns false,
// receive once closed-destroyed or failed) or throws a typed error (write before
// open, after end or failure; end before open), leaving the phase as it was.
import { protoError } from './errors.js'
import type { HandshakeState } from './noise/handshake-state.js'
import type { TunnelContext } from './noise/tunnel-preamble.js'
import type { RecordSession } from './record.js'

/** 'open' covers half-closed and re-handshaking too; see localEnded / remoteEnded / rehandshaking. */
export type TunnelState = 'handshake' | 'open' | 'closed' | 'failed'

/** The record sessions of a phase that has keys. */
export interface Keyed {
  /** Seals our records. */
  readonly tx: RecordSession
  /** Opens the peer's: the same session as tx, except while switching. */
  readonly rx: RecordSession
  /** The context of the keys in use (switching: of rx, the old ones). */
  readonly context: TunnelContext
}

export type Ready = { readonly phase: 'ready'; readonly hs: HandshakeState; readonly context: TunnelContext }
export type Hello = { readonly phase: 'hello'; readonly hs: HandshakeState; readonly context: TunnelContext }
export type Listening = { readonly phase: 'listening' }
export type Confirming = { readonly phase: 'confirming' } & Keyed
export type Open = { readonly phase: 'open' } & Keyed
export type Closing = { readonly phase: 'closing'; readonly ended: 'local' | 'remote' } & Keyed
export type Requesting = { readonly phase: 'requesting'; readonly hs: HandshakeState; readonly next: TunnelContext; readonly localEnded: boolean } & Keyed
export type Switching = { readonly phase: 'switching'; readonly next: TunnelContext; readonly localEnded: boolean } & Keyed
export type Closed = { readonly phase: 'closed'; readonly context: TunnelContext; readonly destroyed: boolean }
/** What the session knew when it failed, for the getters. */
export type Failed = { readonly phase: 'failed'; readonly context: TunnelContext | undefined; readonly localEnded: boolean; readonly remoteEnded: boolean }

export type TunnelPhase = Ready | Hello | Listening | Confirming | Open | Closing | Requesting | Switching | Closed | Failed

/** The phases that take records from the peer and may have data to pass on. */
export type Live = Open | Closing | Requesting | Switching

export const LISTENING: Listening = Object.freeze({ phase: 'listening' })

export function publicState(s: TunnelPhase): TunnelState {
  switch (s.phase) {
    case 'ready':
    case 'hello':
    case 'listening':
    case 'confirming':
      return 'handshake'
    case 'closed':
    case 'failed':
      return s.phase
    default:
      return 'open'
  }
}

export function contextOf(s: TunnelPhase): TunnelContext | undefined {
  return s.phase === 'listening' ? undefined : s.context
}

/** We sent CLOSE. */
export function localEnded(s: TunnelPhase): boolean {
  switch (s.phase) {
    case 'closing':
      return s.ended === 'local'
    case 'requesting':
    case 'switching':
    case 'failed':
      return s.localEnded
    default:
      return s.phase === 'closed'
  }
}

/** The peer sent CLOSE. */
export function remoteEnded(s: TunnelPhase): boolean {
  switch (s.phase) {
    case 'closing':
      return s.ended === 'remote'
    case 'failed':
      return s.remoteEnded
    default:
      return s.phase === 'closed'
  }
}

export function failedFrom(s: TunnelPhase, context = contextOf(s)): Failed {
  return { phase: 'failed', context, localEnded: localEnded(s), remoteEnded: remoteEnded(s) }
}

export function closed(context: TunnelContext): Closed {
  return { phase: 'closed', context, destroyed: false }
}

/** CLOSE from the peer: the next phase, and the context a switching responder moves to without a marker. */
export function afterPeerClose(s: Live): { next: TunnelPhase; rekeyedTo: TunnelContext | undefined } {
  switch (s.phase) {
    case 'open':
      return { next: { phase: 'closing', ended: 'remote', tx: s.tx, rx: s.rx, context: s.context }, rekeyedTo: undefined }
    case 'closing': // ended locally: after a remote end no record gets this far
      return { next: closed(s.context), rekeyedTo: undefined }
    case 'requesting': {
      // Waiting for message 2: the responder ended first and dropped the request.
      const next: TunnelPhase = s.localEnded ? closed(s.context) : { phase: 'closing', ended: 'remote', tx: s.tx, rx: s.rx, context: s.context }
      return { next, rekeyedTo: undefined }
    }
    case 'switching': {
      // Waiting for the marker: none comes, and our sending side is already on the new keys.
      const next: TunnelPhase = s.localEnded ? closed(s.next) : { phase: 'closing', ended: 'remote', tx: s.tx, rx: s.tx, context: s.next }
      return { next, rekeyedTo: s.next }
    }
  }
}

/** end() in a phase with keys: the next phase, or undefined when our direction has already ended. */
export function afterLocalEnd(s: Live): TunnelPhase | undefined {
  switch (s.phase) {
    case 'open':
      return { phase: 'closing', ended: 'local', tx: s.tx, rx: s.rx, context: s.context }
    case 'closing':
      return s.ended === 'remote' ? closed(s.context) : undefined
    case 'requesting':
    case 'switching':
      return s.localEnded ? undefined : { ...s, localEnded: true }
  }
}

/** A re-handshake done (message 2 read, or the marker): `keys` both ways, on the new context. */
export function afterRekey(s: Requesting | Switching, keys: RecordSession): Open | Closing {
  return s.localEnded
    ? { phase: 'closing', ended: 'local', tx: keys, rx: keys, context: s.next }
    : { phase: 'open', tx: keys, rx: keys, context: s.next }
}

/** destroy(): closed stays closed; anything else but failed fails, silently. Undefined: nothing to do. */
export function afterDestroy(s: TunnelPhase): TunnelPhase | undefined {
  if (s.phase === 'failed' || (s.phase === 'closed' && s.destroyed)) return undefined
  return s.phase === 'closed' ? { ...s, destroyed: true } : failedFrom(s)
}

/** The keys write() seals with outside the open phase, or its typed refusal. */
export function writableTx(s: TunnelPhase): RecordSession {
  switch (s.phase) {
    case 'failed':
      throw protoError('PROTO_ERR_SESSION_FAILED')
    case 'ready':
    case 'hello':
    case 'listening':
    case 'confirming':
      throw protoError('PROTO_ERR_HANDSHAKE_STATE', 'tunnel is not open yet')
    case 'closed':
      if (s.destroyed) throw protoError('PROTO_ERR_SESSION_FAILED')
      break
    case 'closing':
      if (s.ended === 'remote') return s.tx
      break
    default: // open, requesting, switching
      if (!localEnded(s)) return s.tx
  }
  throw protoError('PROTO_ERR_SESSION_CLOSED', 'CLOSE already sent')
}
