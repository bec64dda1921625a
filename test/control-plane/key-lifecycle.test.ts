import t from 'tap'

import {
  DEFAULT_LIFECYCLE_POLICY,
  TRANSITIONS,
  VERSION_STATES,
  assertUsable,
  createKey,
  dueForDestruction,
  dueForRotation,
  expirePairVersion,
  expiredPairVersions,
  lifecyclePolicy,
  permits,
  rotate,
  setMinDecryptVersion,
  setRotationPeriod,
  transition,
  undo,
  type LifecycleKey,
  type LifecycleVersion,
  type VersionState,
} from '../../control-plane/src/key-lifecycle.js'
import { DAY, FAKE_EPOCH, FakeClock, HOUR, MINUTE } from '../kit/fake-clock.js'

const T0 = FAKE_EPOCH
const SHORT = lifecyclePolicy({ allowShortWindows: true })

/** Key "k", type aead unless told, versions 1..2 with 2 primary. */
const key = (over: Partial<LifecycleKey> = {}): LifecycleKey => ({
  name: 'k', type: 'aead', primaryVersion: 2, minDecryptVersion: 1,
  rotationPeriodMs: null, nextRotationAt: null, createdAt: T0, ...over,
})

/** A version of key "k" in `state`, with the fields that state carries filled in plausibly. */
const version = (n: number, state: VersionState, over: Partial<LifecycleVersion> = {}): LifecycleVersion => ({
  keyName: 'k', version: n, state, createdAt: T0, stateChangedAt: T0,
  destroyAt: state === 'scheduled-destruction' || state === 'destroyed' ? T0 + DAY : null,
  previousState: state === 'disabled' ? 'enabled' : state === 'scheduled-destruction' ? 'disabled' : null,
  notAfter: null, ...over,
})

// The whole state machine, written out: rows are "from", columns "to".
// Destruction is attempted after destroyAt, so its cell shows the state rule alone.
const EXPECTED: Record<VersionState, Record<VersionState, 'allowed' | 'refused'>> = {
  enabled: { enabled: 'refused', 'decrypt-only': 'allowed', disabled: 'allowed', 'scheduled-destruction': 'allowed', destroyed: 'refused' },
  'decrypt-only': { enabled: 'allowed', 'decrypt-only': 'refused', disabled: 'allowed', 'scheduled-destruction': 'allowed', destroyed: 'refused' },
  disabled: { enabled: 'allowed', 'decrypt-only': 'allowed', disabled: 'refused', 'scheduled-destruction': 'allowed', destroyed: 'refused' },
  'scheduled-destruction': { enabled: 'refused', 'decrypt-only': 'refused', disabled: 'refused', 'scheduled-destruction': 'refused', destroyed: 'allowed' },
  destroyed: { enabled: 'refused', 'decrypt-only': 'refused', disabled: 'refused', 'scheduled-destruction': 'refused', destroyed: 'refused' },
}

t.test('every from × to transition is allowed or refused exactly as the table says', async (t) => {
  const now = T0 + 2 * DAY
  let cells = 0
  for (const from of VERSION_STATES) {
    t.same([...TRANSITIONS[from]].sort(), VERSION_STATES.filter((to) => EXPECTED[from][to] === 'allowed').sort(), `TRANSITIONS[${from}] matches the table`)
    for (const to of VERSION_STATES) {
      cells++
      const v = version(1, from)
      if (EXPECTED[from][to] === 'allowed') {
        const out = transition(key(), v, to, now)
        t.equal(out.state, to, `${from} → ${to} is allowed`)
        t.equal(out.stateChangedAt, now, `${from} → ${to} stamps the change time`)
        t.equal(v.state, from, `${from} → ${to} leaves the input record alone`)
      } else {
        t.throws(() => transition(key(), v, to, now), { code: 'CP_ERR_KEY_STATE', status: 409, message: new RegExp(`${from} → ${to} is not allowed`) }, `${from} → ${to} is refused`)
      }
    }
  }
  t.equal(cells, 25)
})

t.test('a refusal says what to do instead', async (t) => {
  const now = T0 + 2 * DAY
  t.throws(() => transition(key(), version(1, 'enabled'), 'enabled', now), { message: /already in that state/ })
  t.throws(() => transition(key(), version(1, 'destroyed'), 'enabled', now), { message: /destruction is final/ })
  t.throws(() => transition(key(), version(1, 'scheduled-destruction'), 'enabled', now), { message: /cancel the scheduled destruction first/ })
  t.throws(() => transition(key(), version(1, 'enabled'), 'destroyed', now), { message: /destruction must be scheduled first/ })
})

t.test('disabling remembers the state before it and enabling forgets it', async (t) => {
  const off = transition(key(), version(1, 'decrypt-only'), 'disabled', T0 + 1)
  t.equal(off.previousState, 'decrypt-only')
  const on = transition(key(), off, 'enabled', T0 + 2)
  t.same([on.state, on.previousState, on.destroyAt], ['enabled', null, null])
})

t.test('undo returns a disabled version to the state before it', async (t) => {
  for (const before of ['enabled', 'decrypt-only'] as const) {
    const off = transition(key(), version(1, before), 'disabled', T0)
    const back = undo(key(), off, T0 + DAY)
    t.same([back.state, back.previousState, back.stateChangedAt], [before, null, T0 + DAY], `disabled from ${before} comes back ${before}`)
  }
  t.throws(() => undo(key(), version(1, 'disabled', { previousState: null }), T0), { code: 'CP_ERR_KEY_STATE', message: /nothing to undo from disabled/ })
})

t.test('undo cancels a scheduled destruction before its time, and not at or after it', async (t) => {
  const scheduled = transition(key(), version(1, 'decrypt-only'), 'scheduled-destruction', T0)
  t.equal(scheduled.destroyAt, T0 + 7 * DAY)
  t.equal(scheduled.previousState, 'decrypt-only')
  const back = undo(key(), scheduled, T0 + 7 * DAY - 1)
  t.same([back.state, back.destroyAt, back.previousState], ['decrypt-only', null, null], 'one ms before: cancelled')
  t.throws(() => undo(key(), scheduled, T0 + 7 * DAY), { code: 'CP_ERR_KEY_STATE', message: /destruction time has passed/ }, 'at the time: refused')
  t.throws(() => undo(key(), scheduled, T0 + 8 * DAY), { code: 'CP_ERR_KEY_STATE' }, 'after: refused')
  const odd = undo(key(), version(1, 'scheduled-destruction', { previousState: null }), T0)
  t.equal(odd.state, 'disabled', 'a row without a previous state comes back disabled, the safe choice')
})

t.test('a version disabled then scheduled comes back disabled, with nothing further to undo', async (t) => {
  const off = transition(key(), version(1, 'enabled'), 'disabled', T0)
  const back = undo(key(), transition(key(), off, 'scheduled-destruction', T0), T0 + HOUR)
  t.same([back.state, back.previousState], ['disabled', null])
  t.throws(() => undo(key(), back, T0 + HOUR), { code: 'CP_ERR_KEY_STATE' })
})

t.test('undo is refused from enabled, decrypt-only and destroyed', async (t) => {
  for (const s of ['enabled', 'decrypt-only', 'destroyed'] as const) {
    t.throws(() => undo(key(), version(1, s), T0), { code: 'CP_ERR_KEY_STATE', message: new RegExp(`nothing to undo from ${s}`) }, s)
  }
})

t.test('destruction waits for its time', async (t) => {
  const scheduled = transition(key(), version(1, 'disabled'), 'scheduled-destruction', T0, { windowMs: HOUR })
  t.throws(() => transition(key(), scheduled, 'destroyed', T0 + HOUR - 1), { code: 'CP_ERR_KEY_STATE', message: /not due until 2026-01-01T01:00:00.000Z/ })
  const gone = transition(key(), scheduled, 'destroyed', T0 + HOUR)
  t.same([gone.state, gone.destroyAt, gone.previousState], ['destroyed', T0 + HOUR, null], 'the destruction time is kept as metadata')
  t.throws(() => transition(key(), version(1, 'scheduled-destruction', { destroyAt: null }), 'destroyed', T0 + DAY), { message: /not due until scheduled/ })
})

t.test('the destruction window defaults to 7 days, is at least 1 hour and at most 120 days', async (t) => {
  const at = (windowMs: number | undefined, policy = DEFAULT_LIFECYCLE_POLICY): number | null =>
    transition(key(), version(1, 'enabled'), 'scheduled-destruction', T0, { windowMs, policy }).destroyAt
  t.equal(at(undefined), T0 + 7 * DAY)
  t.equal(at(HOUR), T0 + HOUR, 'exactly the minimum is accepted')
  t.equal(at(120 * DAY), T0 + 120 * DAY, 'exactly the maximum is accepted')
  for (const bad of [HOUR - 1, 0, -1, 120 * DAY + 1, 1.5 * HOUR + 0.5, Number.NaN, Infinity]) {
    t.throws(() => at(bad), { code: 'CP_ERR_DESTROY_WINDOW', status: 400 }, `${bad} ms is refused`)
  }
  t.equal(at(undefined, lifecyclePolicy({ destroyWindowMs: 2 * HOUR })), T0 + 2 * HOUR, 'the default comes from the policy')
})

t.test('allowShortWindows lets a test clock destroy within milliseconds, never with a negative window', async (t) => {
  const v = transition(key(), version(1, 'enabled'), 'scheduled-destruction', T0, { windowMs: 0, policy: SHORT })
  t.equal(transition(key(), v, 'destroyed', T0).state, 'destroyed')
  t.equal(transition(key(), version(1, 'enabled'), 'scheduled-destruction', T0, { windowMs: 1, policy: SHORT }).destroyAt, T0 + 1)
  t.throws(() => transition(key(), version(1, 'enabled'), 'scheduled-destruction', T0, { windowMs: -1, policy: SHORT }), { code: 'CP_ERR_DESTROY_WINDOW' })
})

t.test('the primary version cannot be scheduled for destruction from any state', async (t) => {
  for (const s of ['enabled', 'decrypt-only', 'disabled'] as const) {
    t.throws(() => transition(key(), version(2, s), 'scheduled-destruction', T0), { code: 'CP_ERR_KEY_PRIMARY', status: 409, message: /k v2 is the primary/ }, s)
  }
})

t.test('the primary can be disabled, which stops encryption until it is enabled', async (t) => {
  const off = transition(key(), version(2, 'enabled'), 'disabled', T0)
  t.throws(() => assertUsable(key(), off, 'encrypt', T0), { code: 'CP_ERR_VERSION_DISABLED' })
  t.doesNotThrow(() => assertUsable(key(), undo(key(), off, T0), 'encrypt', T0))
})

t.test('stored records keep their other fields, and destruction drops their material', async (t) => {
  const stored = { ...version(1, 'scheduled-destruction', { destroyAt: T0 }), sealedMaterial: new Uint8Array([1, 2, 3]) }
  const gone = transition(key(), stored, 'destroyed', T0)
  t.equal(gone.sealedMaterial, null, 'transition to destroyed')
  t.equal(stored.sealedMaterial?.length, 3, 'the input is untouched')
  const pairV = { ...version(1, 'decrypt-only', { notAfter: T0 }), sealedMaterial: new Uint8Array([4]) }
  t.equal(expirePairVersion(pairV, T0).sealedMaterial, null, 'pair expiry')
  const off = transition(key(), { ...version(1, 'enabled'), sealedMaterial: new Uint8Array([5]) }, 'disabled', T0)
  t.same(off.sealedMaterial, new Uint8Array([5]), 'other transitions keep the material')
  const storedKey = { ...key({ type: 'pair' }), pairServices: ['a', 'b'] as const }
  const r = rotate(storedKey, version(2, 'enabled'), T0)
  t.same(r.key.pairServices, ['a', 'b'], 'rotation keeps the key record\'s other fields')
  t.notOk('sealedMaterial' in r.created, 'the new version has no material until the caller seals some')
})

t.test('a version of another key is refused', async (t) => {
  const other = version(1, 'enabled', { keyName: 'other' })
  t.throws(() => transition(key(), other, 'disabled', T0), { code: 'CP_ERR_CONFLICT' })
  t.throws(() => undo(key(), other, T0), { code: 'CP_ERR_CONFLICT' })
  t.throws(() => rotate(key(), other, T0), { code: 'CP_ERR_CONFLICT' })
  t.throws(() => assertUsable(key(), other, 'decrypt', T0), { code: 'CP_ERR_CONFLICT' })
})

t.test('dueForDestruction lists scheduled versions whose time has come', async (t) => {
  const vs = [
    version(1, 'scheduled-destruction', { destroyAt: T0 }),
    version(2, 'scheduled-destruction', { destroyAt: T0 + 1 }),
    version(3, 'scheduled-destruction', { destroyAt: null }),
    version(4, 'destroyed', { destroyAt: T0 - 1 }),
    version(5, 'enabled'),
  ]
  t.same(dueForDestruction(vs, T0).map((v) => v.version), [1])
  t.same(dueForDestruction(vs, T0 + 1).map((v) => v.version), [1, 2])
})

t.test('a new key starts at version 1, enabled and primary', async (t) => {
  const { key: k, version: v } = createKey({ name: 'orders', type: 'aead' }, T0)
  t.same(k, { name: 'orders', type: 'aead', primaryVersion: 1, minDecryptVersion: 1, rotationPeriodMs: null, nextRotationAt: null, createdAt: T0 })
  t.same(v, { keyName: 'orders', version: 1, state: 'enabled', createdAt: T0, stateChangedAt: T0, destroyAt: null, previousState: null, notAfter: null })
  const pair = createKey({ name: 'a--b', type: 'pair' }, T0).key
  t.same([pair.rotationPeriodMs, pair.nextRotationAt], [DAY, T0 + DAY], 'pair keys rotate daily by default')
  t.equal(createKey({ name: 'p', type: 'pair', rotationPeriodMs: null }, T0).key.nextRotationAt, null, 'unless told not to')
  t.equal(createKey({ name: 'x', type: 'x25519', rotationPeriodMs: 30 * DAY }, T0).key.nextRotationAt, T0 + 30 * DAY)
})

t.test('a rotation period is at least an hour, unless short windows are allowed', async (t) => {
  for (const bad of [HOUR - 1, 0, -HOUR, 1.5, Number.NaN]) {
    t.throws(() => createKey({ name: 'k', type: 'aead', rotationPeriodMs: bad }, T0), { code: 'CP_ERR_ROTATION_PERIOD', status: 400 }, `${bad}`)
  }
  t.equal(createKey({ name: 'k', type: 'aead', rotationPeriodMs: MINUTE }, T0, SHORT).key.nextRotationAt, T0 + MINUTE)
  t.throws(() => createKey({ name: 'k', type: 'aead', rotationPeriodMs: 0 }, T0, SHORT), { code: 'CP_ERR_ROTATION_PERIOD' })
})

t.test('setting the rotation period schedules the next rotation one period from now', async (t) => {
  const k = setRotationPeriod(key(), 2 * DAY, T0 + HOUR)
  t.same([k.rotationPeriodMs, k.nextRotationAt], [2 * DAY, T0 + HOUR + 2 * DAY])
  t.same([setRotationPeriod(k, null, T0).rotationPeriodMs, setRotationPeriod(k, null, T0).nextRotationAt], [null, null])
  t.throws(() => setRotationPeriod(k, MINUTE, T0), { code: 'CP_ERR_ROTATION_PERIOD' })
  t.equal(setRotationPeriod(k, MINUTE, T0, SHORT).nextRotationAt, T0 + MINUTE)
})

t.test('the minimum decryption version runs from 1 to the primary, up or down', async (t) => {
  const k = key({ primaryVersion: 3 })
  t.equal(setMinDecryptVersion(k, 3).minDecryptVersion, 3)
  t.equal(setMinDecryptVersion(setMinDecryptVersion(k, 3), 2).minDecryptVersion, 2, 'lowering is allowed')
  for (const bad of [0, 4, 1.5, -1, Number.NaN]) {
    t.throws(() => setMinDecryptVersion(k, bad), { code: 'CP_ERR_MIN_VERSION', status: 400 }, `${bad}`)
  }
})

t.test('rotating an aead key makes version N+1 primary and leaves the old primary enabled', async (t) => {
  const k = key({ rotationPeriodMs: DAY, nextRotationAt: T0 + DAY })
  const old = version(2, 'enabled')
  const r = rotate(k, old, T0 + DAY)
  t.same([r.key.primaryVersion, r.key.nextRotationAt], [3, T0 + 2 * DAY])
  t.same(r.created, { keyName: 'k', version: 3, state: 'enabled', createdAt: T0 + DAY, stateChangedAt: T0 + DAY, destroyAt: null, previousState: null, notAfter: null })
  t.equal(r.previous, old, 'the old primary is stored unchanged')
  t.throws(() => assertUsable(r.key, old, 'encrypt', T0 + DAY), { code: 'CP_ERR_VERSION_NOT_PRIMARY' }, 'the old primary no longer encrypts')
  t.doesNotThrow(() => assertUsable(r.key, old, 'decrypt', T0 + DAY), 'but still decrypts')
  t.equal(rotate(key(), version(2, 'enabled'), T0).key.nextRotationAt, null, 'no period, no next rotation')
  t.throws(() => rotate(k, version(1, 'enabled'), T0), { code: 'CP_ERR_CONFLICT', message: /not the primary \(v2\)/ })
})

t.test('rotating a pair key gives the old primary a grace period in which it only accepts', async (t) => {
  const k = key({ type: 'pair', rotationPeriodMs: DAY })
  const r = rotate(k, version(2, 'enabled'), T0)
  t.same([r.previous.state, r.previous.notAfter, r.previous.stateChangedAt], ['decrypt-only', T0 + HOUR, T0])
  t.doesNotThrow(() => assertUsable(r.key, r.previous, 'decrypt', T0 + HOUR - 1), 'it accepts during the grace period')
  t.throws(() => assertUsable(r.key, r.previous, 'decrypt', T0 + HOUR), { code: 'CP_ERR_VERSION_EXPIRED' }, 'and not at its end')
  t.equal(rotate(k, version(2, 'enabled'), T0, { graceMs: 0 }).previous.notAfter, T0, 'grace 0 when an agent is revoked')
  t.equal(rotate(k, version(2, 'enabled'), T0, { policy: lifecyclePolicy({ pairGraceMs: 5 * MINUTE }) }).previous.notAfter, T0 + 5 * MINUTE)
  const off = rotate(k, version(2, 'disabled', { stateChangedAt: T0 - 1 }), T0).previous
  t.same([off.state, off.stateChangedAt, off.notAfter], ['disabled', T0 - 1, T0 + HOUR], 'a disabled primary stays disabled')
  for (const bad of [-1, 0.5, Number.NaN]) {
    t.throws(() => rotate(k, version(2, 'enabled'), T0, { graceMs: bad }), { code: 'CP_ERR_BAD_REQUEST' }, `grace ${bad}`)
  }
})

t.test('a key is due for rotation at its next rotation time, not before', async (t) => {
  const k = key({ rotationPeriodMs: DAY, nextRotationAt: T0 + DAY })
  t.notOk(dueForRotation(k, T0 + DAY - 1))
  t.ok(dueForRotation(k, T0 + DAY))
  t.ok(dueForRotation(k, T0 + 3 * DAY))
  t.notOk(dueForRotation(key(), T0 + 1000 * DAY), 'a key without a period is never due')
})

t.test('a scheduler on a fake clock rotates once per period, and once after missing several', async (t) => {
  const clock = new FakeClock()
  let { key: k, version: primary } = createKey({ name: 'k', type: 'aead', rotationPeriodMs: DAY }, clock.now())
  const tick = (): void => {
    if (!dueForRotation(k, clock.now())) return
    const r = rotate(k, primary, clock.now())
    k = r.key
    primary = r.created
  }
  for (let h = 0; h < 72; h++) { clock.advance(HOUR); tick() }
  t.equal(k.primaryVersion, 4, 'three days, three rotations')
  t.equal(k.nextRotationAt, T0 + 4 * DAY)
  clock.advance(5 * DAY)
  tick()
  tick()
  t.equal(k.primaryVersion, 5, 'five missed days, one rotation')
  t.equal(k.nextRotationAt, clock.now() + DAY)
})

t.test('pair versions past their grace are listed for destruction and destroyed without a window', async (t) => {
  const vs = [
    version(1, 'decrypt-only', { notAfter: T0 }),
    version(2, 'decrypt-only', { notAfter: T0 + 1 }),
    version(3, 'destroyed', { notAfter: T0 - 1 }),
    version(4, 'enabled'),
  ]
  t.same(expiredPairVersions(vs, T0 - 1).map((v) => v.version), [])
  t.same(expiredPairVersions(vs, T0).map((v) => v.version), [1])
  t.same(expiredPairVersions(vs, T0 + 1).map((v) => v.version), [1, 2])
  const gone = expirePairVersion(vs[0] as LifecycleVersion, T0 + 5)
  t.same([gone.state, gone.destroyAt, gone.stateChangedAt, gone.previousState], ['destroyed', T0 + 5, T0 + 5, null])
  t.throws(() => expirePairVersion(vs[1] as LifecycleVersion, T0), { code: 'CP_ERR_KEY_STATE' }, 'before its grace ends')
  t.throws(() => expirePairVersion(vs[2] as LifecycleVersion, T0), { code: 'CP_ERR_KEY_STATE' }, 'already destroyed')
  t.throws(() => expirePairVersion(vs[3] as LifecycleVersion, T0), { code: 'CP_ERR_KEY_STATE' }, 'no grace deadline')
})

// What each state permits, for the primary (v2) and an older version (v1); 'ok' or the code.
const USE: Record<VersionState, { primary: [string, string]; older: [string, string] }> = {
  enabled: { primary: ['ok', 'ok'], older: ['CP_ERR_VERSION_NOT_PRIMARY', 'ok'] },
  'decrypt-only': { primary: ['CP_ERR_VERSION_DECRYPT_ONLY', 'ok'], older: ['CP_ERR_VERSION_NOT_PRIMARY', 'ok'] },
  disabled: { primary: ['CP_ERR_VERSION_DISABLED', 'CP_ERR_VERSION_DISABLED'], older: ['CP_ERR_VERSION_DISABLED', 'CP_ERR_VERSION_DISABLED'] },
  'scheduled-destruction': { primary: ['CP_ERR_VERSION_DISABLED', 'CP_ERR_VERSION_DISABLED'], older: ['CP_ERR_VERSION_DISABLED', 'CP_ERR_VERSION_DISABLED'] },
  destroyed: { primary: ['CP_ERR_VERSION_DESTROYED', 'CP_ERR_VERSION_DESTROYED'], older: ['CP_ERR_VERSION_DESTROYED', 'CP_ERR_VERSION_DESTROYED'] },
}

t.test('each state permits encrypt and decrypt exactly as the table says', async (t) => {
  for (const state of VERSION_STATES) {
    for (const [which, n] of [['primary', 2], ['older', 1]] as const) {
      const v = version(n, state)
      const [enc, dec] = USE[state][which]
      for (const [use, want] of [['encrypt', enc], ['decrypt', dec]] as const) {
        if (want === 'ok') t.doesNotThrow(() => assertUsable(key(), v, use, T0), `${which} ${state} may ${use}`)
        else t.throws(() => assertUsable(key(), v, use, T0), { code: want, status: 409 }, `${which} ${state} may not ${use}: ${want}`)
      }
      t.same(permits(key(), v, T0), { encrypt: enc === 'ok', decrypt: dec === 'ok' }, `permits() agrees for ${which} ${state}`)
    }
  }
})

t.test('versions below the minimum decryption version are refused with their own code', async (t) => {
  const k = key({ primaryVersion: 3, minDecryptVersion: 2 })
  t.throws(() => assertUsable(k, version(1, 'enabled'), 'decrypt', T0), { code: 'CP_ERR_VERSION_BELOW_MIN', message: /minimum is v2/ })
  t.doesNotThrow(() => assertUsable(k, version(2, 'decrypt-only'), 'decrypt', T0))
  t.throws(() => assertUsable(k, version(1, 'disabled'), 'decrypt', T0), { code: 'CP_ERR_VERSION_DISABLED' }, 'the state is reported first')
})
