// The wire form of a change event between replicas (pg-bus.ts), as pure code:
//   {"v":1,"r":"<sender replicaId>","e":<event>}
// NOTIFY payloads must stay under 8,000 bytes, so a 'services' event naming many
// services is cut into several events with the same reason; a subscriber refreshes
// each named service, so receiving the parts one by one means the same as the whole.
// 'resync' is local to a replica and never encoded.
import type { ChangeEvent } from '../events.js'

export const NOTIFICATION_VERSION = 1

/** The events that travel between replicas. */
export type WireEvent = Exclude<ChangeEvent, { kind: 'resync' }>

export type Decoded =
  | { readonly ok: true; readonly replicaId: string; readonly event: WireEvent }
  | { readonly ok: false; readonly why: string }

function encode(replicaId: string, event: WireEvent): string {
  return JSON.stringify({ v: NOTIFICATION_VERSION, r: replicaId, e: event })
}

/**
 * The payloads that carry `event`, each at most `maxBytes` long (UTF-8). A part
 * always names at least one service, so a single over-long name is sent alone
 * (and refused by the server, which the sender logs).
 */
export function encodeNotifications(replicaId: string, event: WireEvent, maxBytes: number): string[] {
  const whole = encode(replicaId, event)
  if (event.kind !== 'services' || Buffer.byteLength(whole) <= maxBytes) return [whole]
  const base = Buffer.byteLength(encode(replicaId, { ...event, services: [] }))
  const parts: string[][] = []
  let part: string[] = []
  let size = base
  for (const service of event.services) {
    const add = Buffer.byteLength(JSON.stringify(service)) + 1
    if (part.length > 0 && size + add > maxBytes) {
      parts.push(part)
      part = []
      size = base
    }
    part.push(service)
    size += add
  }
  parts.push(part)
  return parts.map((services) => encode(replicaId, { kind: 'services', services, reason: event.reason }))
}

const isString = (v: unknown): v is string => typeof v === 'string'

/** Parses and checks one payload; anything unexpected is `ok: false` with a short reason (no payload text). */
export function decodeNotification(text: string): Decoded {
  let m: unknown
  try {
    m = JSON.parse(text)
  } catch {
    return { ok: false, why: 'not JSON' }
  }
  if (typeof m !== 'object' || m === null) return { ok: false, why: 'not an object' }
  const { v, r, e } = m as { v?: unknown; r?: unknown; e?: unknown }
  if (v !== NOTIFICATION_VERSION) return { ok: false, why: `unknown version ${JSON.stringify(v)}` }
  if (!isString(r) || r === '') return { ok: false, why: 'no replica id' }
  const event = decodeEvent(e)
  return event ? { ok: true, replicaId: r, event } : { ok: false, why: 'not a change event' }
}

function decodeEvent(e: unknown): WireEvent | null {
  if (typeof e !== 'object' || e === null) return null
  const f = e as Record<string, unknown>
  if (f['kind'] === 'services') {
    const services = f['services']
    const reason = f['reason']
    if (!Array.isArray(services) || !services.every(isString) || !isString(reason)) return null
    return { kind: 'services', services, reason }
  }
  if (f['kind'] === 'agent-revoked' || f['kind'] === 'agent-connected') {
    const agentId = f['agentId']
    const service = f['service']
    if (!isString(agentId) || !isString(service)) return null
    return { kind: f['kind'], agentId, service }
  }
  return null
}
