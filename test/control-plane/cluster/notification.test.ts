import t from 'tap'

import { decodeNotification, encodeNotifications } from '../../../control-plane/src/cluster/notification.js'

t.test('a small event travels as one payload and decodes to itself', async (t) => {
  const event = { kind: 'services', services: ['a', 'b'], reason: 'pair.rotate' } as const
  const parts = encodeNotifications('r1', event, 7000)
  t.equal(parts.length, 1)
  t.same(decodeNotification(parts[0]!), { ok: true, replicaId: 'r1', event })

  const revoked = { kind: 'agent-revoked', agentId: 'agt_1', service: 'web' } as const
  const [one, ...rest] = encodeNotifications('r1', revoked, 10)
  t.same(rest, [], 'only a services list is ever split')
  t.same(decodeNotification(one!), { ok: true, replicaId: 'r1', event: revoked })

  const connected = { kind: 'agent-connected', agentId: 'agt_1', service: 'web' } as const
  t.same(encodeNotifications('r1', connected, 7000).map((p) => decodeNotification(p)), [{ ok: true, replicaId: 'r1', event: connected }])
  t.same(decodeNotification('{"v":1,"r":"x","e":{"kind":"agent-connected","agentId":"a"}}'), { ok: false, why: 'not a change event' })
})

t.test('a services list too big for one payload is split into parts under the limit that name every service once', async (t) => {
  const services = Array.from({ length: 400 }, (_, i) => `service-${String(i).padStart(3, '0')}-${'x'.repeat(30)}`)
  const parts = encodeNotifications('replica', { kind: 'services', services, reason: 'intention.add' }, 1000)
  t.ok(parts.length > 10, `${parts.length} parts`)
  const seen: string[] = []
  for (const p of parts) {
    t.ok(Buffer.byteLength(p) <= 1000, 'part within the limit')
    const d = decodeNotification(p)
    if (!d.ok || d.event.kind !== 'services') throw new Error('part did not decode')
    t.equal(d.event.reason, 'intention.add')
    seen.push(...d.event.services)
  }
  t.same(seen, services)
})

t.test('a single name longer than the limit is still sent, alone', async (t) => {
  const parts = encodeNotifications('r', { kind: 'services', services: ['a'.repeat(50), 'b'], reason: 'x' }, 60)
  t.equal(parts.length, 2)
  t.ok(Buffer.byteLength(parts[0]!) > 60)
})

t.test('anything but a well-formed notification is refused with a reason', async (t) => {
  const cases: [string, string][] = [
    ['not json', 'not JSON'],
    ['null', 'not an object'],
    ['{"v":2,"r":"x","e":{}}', 'unknown version 2'],
    ['{"v":1,"e":{}}', 'no replica id'],
    ['{"v":1,"r":"","e":{}}', 'no replica id'],
    ['{"v":1,"r":"x","e":null}', 'not a change event'],
    ['{"v":1,"r":"x","e":{"kind":"resync","reason":"x"}}', 'not a change event'],
    ['{"v":1,"r":"x","e":{"kind":"services","services":[1],"reason":"x"}}', 'not a change event'],
    ['{"v":1,"r":"x","e":{"kind":"services","services":"a","reason":"x"}}', 'not a change event'],
    ['{"v":1,"r":"x","e":{"kind":"services","services":["a"]}}', 'not a change event'],
    ['{"v":1,"r":"x","e":{"kind":"agent-revoked","agentId":"a"}}', 'not a change event'],
  ]
  for (const [text, why] of cases) t.same(decodeNotification(text), { ok: false, why }, text)
})

t.test('fields other than the event\'s own are not passed on', async (t) => {
  const d = decodeNotification('{"v":1,"r":"x","e":{"kind":"agent-revoked","agentId":"a","service":"s","extra":1}}')
  t.strictSame(d, { ok: true, replicaId: 'x', event: { kind: 'agent-revoked', agentId: 'a', service: 's' } })
})
