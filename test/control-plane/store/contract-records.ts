// The store contract, part 1: every repository method, its filters, orders and
// typed refusals. Registered per back-end by contract.ts.
import type { Test } from 'tap'

import { fresh, rejectsCode, write, type StoreBackend } from './contract-support.js'
import { agent, aeadKey, bytes, joinToken, keyVersion, operatorToken, pairKey } from './fixtures.js'

export function recordContract(t: Test, b: StoreBackend): void {
  t.test('meta values are stored, replaced, inserted only when absent and deleted', async (t) => {
    const s = await fresh(t, b)
    if (!s) return
    await write(s, async (tx) => {
      t.equal(await tx.getMeta('cp-identity'), null)
      await tx.putMeta('cp-identity', bytes(1))
      await tx.putMeta('cp-identity', bytes(2))
      t.same(await tx.getMeta('cp-identity'), bytes(2))
      t.equal(await tx.insertMetaIfAbsent('cp-identity', bytes(3)), false)
      t.equal(await tx.insertMetaIfAbsent('other', bytes(4)), true)
      t.same(await tx.getMeta('other'), bytes(4))
      t.equal(await tx.deleteMeta('other'), true)
      t.equal(await tx.deleteMeta('other'), false)
    })
  })

  t.test('the elapsed ledger starts empty and advances only by compare-and-set', async (t) => {
    const s = await fresh(t, b)
    if (!s) return
    await write(s, async (tx) => {
      const empty = { observedMs: 0, writer: '', advancedAt: 0 }
      t.same(await tx.getElapsedLedger(), empty)
      const a = { observedMs: 5_000, writer: 'a', advancedAt: 70 }
      t.equal(await tx.advanceElapsedLedger(empty, a), true, 'the first advance makes the row')
      t.equal(await tx.advanceElapsedLedger(empty, { observedMs: 9, writer: 'b', advancedAt: 71 }), false, 'a second first advance finds it made')
      t.equal(await tx.advanceElapsedLedger({ ...a, writer: 'b' }, { observedMs: 9_000, writer: 'b', advancedAt: 72 }), false, 'another writer\'s stale reading')
      t.equal(await tx.advanceElapsedLedger({ ...a, observedMs: 4_000 }, { observedMs: 9_000, writer: 'a', advancedAt: 72 }), false, 'a stale count')
      t.same(await tx.getElapsedLedger(), a)
      t.equal(await tx.advanceElapsedLedger(a, { observedMs: 8_000, writer: 'b', advancedAt: 73 }), true)
      t.same(await tx.getElapsedLedger(), { observedMs: 8_000, writer: 'b', advancedAt: 73 })
    })
  })

  t.test('keys are inserted, found, listed by filter, updated and deleted with their versions and grants', async (t) => {
    const s = await fresh(t, b)
    if (!s) return
    await write(s, async (tx) => {
      await tx.insertKey(aeadKey('orders', { rotationPeriodMs: 1000, nextRotationAt: 2000 }))
      await tx.insertKey(aeadKey('x', { type: 'x25519' }))
      await tx.insertKey(pairKey('pair:api:db', 'api', 'db'))
      t.same(await tx.getKey('orders'), aeadKey('orders', { rotationPeriodMs: 1000, nextRotationAt: 2000 }))
      t.equal(await tx.getKey('nope'), null)
      t.same((await tx.findPairKey('db', 'api'))?.pairServices, ['api', 'db'], 'matches either order')
      t.equal((await tx.findPairKey('api', 'db'))?.name, 'pair:api:db')
      t.equal(await tx.findPairKey('api', 'web'), null)
      t.same((await tx.listKeys()).map((k) => k.name), ['orders', 'pair:api:db', 'x'], 'ordered by name')
      t.same((await tx.listKeys({ type: 'x25519' })).map((k) => k.name), ['x'])
      t.same((await tx.listKeys({ service: 'db' })).map((k) => k.name), ['pair:api:db'])
      t.same((await tx.listKeys({ rotationDueBy: 4999 })).map((k) => k.name), ['orders'])
      t.same((await tx.listKeys({ rotationDueBy: 5000 })).map((k) => k.name), ['orders', 'pair:api:db'])

      t.equal(await tx.updateKey('orders', { primaryVersion: 2, nextRotationAt: null }), true)
      const k = await tx.getKey('orders')
      t.equal(k?.primaryVersion, 2)
      t.equal(k?.nextRotationAt, null)
      t.equal(k?.rotationPeriodMs, 1000, 'fields left out of the patch are kept')
      t.equal(await tx.updateKey('nope', { primaryVersion: 2 }), false)
      t.equal(await tx.updateKey('orders', {}), true, 'an empty patch reports whether the row exists')
      t.equal(await tx.updateKey('nope', {}), false)

      await tx.insertKeyVersion(keyVersion('orders', 1))
      await tx.putGrant({ keyName: 'orders', service: 'api', rights: ['encrypt'] })
      t.equal(await tx.deleteKey('orders'), true)
      t.equal(await tx.deleteKey('orders'), false)
      t.same(await tx.listKeyVersions({ keyName: 'orders' }), [], 'versions go with the key')
      t.same(await tx.listGrants({ keyName: 'orders' }), [], 'grants go with the key')
    })
  })

  t.test('key inserts that break the rules are refused with typed errors', async (t) => {
    const s = await fresh(t, b)
    if (!s) return
    await write(s, (tx) => tx.insertKey(aeadKey('orders')))
    await rejectsCode(t, write(s, (tx) => tx.insertKey(aeadKey('orders'))), 'CP_ERR_CONFLICT', /keys\.name/)
    await rejectsCode(t, write(s, (tx) => tx.insertKey(aeadKey('p', { type: 'pair' }))), 'CP_ERR_STORE', /CHECK/)
    await write(s, (tx) => tx.insertKey(pairKey('p1', 'a', 'b')))
    await rejectsCode(t, write(s, (tx) => tx.insertKey(pairKey('p2', 'a', 'b'))), 'CP_ERR_CONFLICT', /UNIQUE/)
  })

  t.test('key versions are inserted, listed by filter, counted and updated with compare-and-set', async (t) => {
    const s = await fresh(t, b)
    if (!s) return
    await write(s, async (tx) => {
      await tx.insertKey(aeadKey('a'))
      await tx.insertKey(aeadKey('b'))
      t.equal(await tx.lastKeyVersion('a'), 0, 'a key without versions has last version 0')
      await tx.insertKeyVersion(keyVersion('a', 1, { state: 'decrypt-only', notAfter: 500 }))
      await tx.insertKeyVersion(keyVersion('a', 2, { state: 'scheduled-destruction', destroyAt: 900, previousState: 'disabled' }))
      await tx.insertKeyVersion(keyVersion('a', 3))
      await tx.insertKeyVersion(keyVersion('b', 1, { state: 'destroyed', sealedMaterial: null }))
      t.equal(await tx.lastKeyVersion('a'), 3)
      t.same(await tx.getKeyVersion('a', 2), keyVersion('a', 2, { state: 'scheduled-destruction', destroyAt: 900, previousState: 'disabled' }))
      t.equal(await tx.getKeyVersion('a', 9), null)
      t.equal((await tx.getKeyVersion('b', 1))?.sealedMaterial, null)

      const ids = (vs: { keyName: string; version: number }[]) => vs.map((v) => `${v.keyName}:${v.version}`)
      t.same(ids(await tx.listKeyVersions()), ['a:1', 'a:2', 'a:3', 'b:1'])
      t.same(ids(await tx.listKeyVersions({ keyName: 'a', states: ['enabled', 'decrypt-only'] })), ['a:1', 'a:3'])
      t.same(ids(await tx.listKeyVersions({ states: [] })), [], 'no states asked, none returned')
      t.same(ids(await tx.listKeyVersions({ destroyDueBy: 899 })), [])
      t.same(ids(await tx.listKeyVersions({ destroyDueBy: 900 })), ['a:2'])
      t.same(ids(await tx.listKeyVersions({ notAfterBy: 500 })), ['a:1'])

      t.equal(await tx.updateKeyVersion('a', 3, { state: 'disabled', previousState: 'enabled', stateChangedAt: 77 }, 'decrypt-only'), false,
        'compare-and-set refuses a version not in the expected state')
      t.equal(await tx.updateKeyVersion('a', 3, { state: 'disabled', previousState: 'enabled', stateChangedAt: 77 }, 'enabled'), true)
      t.match(await tx.getKeyVersion('a', 3), { state: 'disabled', previousState: 'enabled', stateChangedAt: 77 })
      t.equal(await tx.updateKeyVersion('a', 3, { state: 'destroyed', sealedMaterial: null }), true)
      t.equal((await tx.getKeyVersion('a', 3))?.sealedMaterial, null)
      t.equal(await tx.updateKeyVersion('a', 9, { stateChangedAt: 1 }), false)
      t.equal(await tx.updateKeyVersion('a', 1, {}, 'decrypt-only'), true)
      // The elapsed guards of the deadlines (schema 7): absent unless set.
      t.equal(await tx.updateKeyVersion('a', 1, { notAfterObserved: 123 }), true)
      t.match(await tx.getKeyVersion('a', 1), { notAfter: 500, notAfterObserved: 123 })
      t.equal((await tx.getKeyVersion('a', 1))?.destroyAtObserved, undefined)
      await tx.insertKeyVersion(keyVersion('a', 4, { state: 'scheduled-destruction', destroyAt: 950, previousState: 'enabled', destroyAtObserved: 456 }))
      t.match(await tx.getKeyVersion('a', 4), { destroyAt: 950, destroyAtObserved: 456 })
      t.equal(await tx.updateKeyVersion('a', 4, { destroyAtObserved: null }), true)
      t.equal((await tx.getKeyVersion('a', 4))?.destroyAtObserved, undefined)
    })
    await rejectsCode(t, write(s, (tx) => tx.insertKeyVersion(keyVersion('a', 1))), 'CP_ERR_CONFLICT')
    await rejectsCode(t, write(s, (tx) => tx.insertKeyVersion(keyVersion('missing', 1))), 'CP_ERR_NOT_FOUND')
    await rejectsCode(t, write(s, (tx) => tx.insertKeyVersion(keyVersion('a', 4, { state: 'destroyed' }))), 'CP_ERR_STORE',
      /CHECK/, )
    await rejectsCode(t, write(s, (tx) => tx.updateKeyVersion('a', 1, { sealedMaterial: null })), 'CP_ERR_STORE',
      /CHECK/)
  })

  t.test('grants hold a set of rights per key and service, replaced whole', async (t) => {
    const s = await fresh(t, b)
    if (!s) return
    await write(s, async (tx) => {
      await tx.insertKey(aeadKey('a'))
      await tx.insertKey(aeadKey('b'))
      t.equal(await tx.getGrant('a', 'api'), null)
      await tx.putGrant({ keyName: 'a', service: 'api', rights: ['manage', 'encrypt', 'encrypt', 'decrypt'] })
      t.same(await tx.getGrant('a', 'api'), { keyName: 'a', service: 'api', rights: ['encrypt', 'decrypt', 'manage'] },
        'rights come back once each, in RIGHTS order')
      await tx.putGrant({ keyName: 'a', service: 'api', rights: ['rotate'] })
      t.same((await tx.getGrant('a', 'api'))?.rights, ['rotate'], 'put replaces the set')
      await tx.putGrant({ keyName: 'a', service: 'web', rights: ['generate-data-key'] })
      await tx.putGrant({ keyName: 'b', service: 'api', rights: ['decrypt'] })
      t.same((await tx.listGrants()).map((g) => `${g.keyName}/${g.service}`), ['a/api', 'a/web', 'b/api'])
      t.same((await tx.listGrants({ service: 'api' })).map((g) => g.keyName), ['a', 'b'])
      t.same((await tx.listGrants({ keyName: 'a', service: 'web' })).map((g) => g.rights), [['generate-data-key']])
      await tx.putGrant({ keyName: 'a', service: 'web', rights: [] })
      t.equal(await tx.getGrant('a', 'web'), null, 'an empty set removes the grant')
      t.equal(await tx.deleteGrant('b', 'api'), true)
      t.equal(await tx.deleteGrant('b', 'api'), false)
    })
    await rejectsCode(t, write(s, (tx) => tx.putGrant({ keyName: 'zz', service: 'api', rights: ['encrypt'] })), 'CP_ERR_NOT_FOUND')
  })

  t.test('intentions are added once, listed by side and deleted', async (t) => {
    const s = await fresh(t, b)
    if (!s) return
    await write(s, async (tx) => {
      t.equal(await tx.addIntention({ src: 'api', dst: 'db', createdAt: 10 }), true)
      t.equal(await tx.addIntention({ src: 'api', dst: 'db', createdAt: 99 }), false, 'a repeat is not new')
      t.same(await tx.getIntention('api', 'db'), { src: 'api', dst: 'db', createdAt: 10, effect: 'allow', expiresAt: null }, 'and keeps its first createdAt')
      t.equal(await tx.getIntention('db', 'api'), null, 'intentions have a direction')
      await tx.addIntention({ src: 'web', dst: 'api', createdAt: 11 })
      await tx.addIntention({ src: 'web', dst: 'cache', createdAt: 12 })
      const pairs = (is: { src: string; dst: string }[]) => is.map((i) => `${i.src}>${i.dst}`)
      t.same(pairs(await tx.listIntentions()), ['api>db', 'web>api', 'web>cache'])
      t.same(pairs(await tx.listIntentions({ service: 'api' })), ['api>db', 'web>api'])
      t.same(pairs(await tx.listIntentions({ src: 'web', dst: 'cache' })), ['web>cache'])
      t.equal(await tx.deleteIntention('api', 'db'), true)
      t.equal(await tx.deleteIntention('api', 'db'), false)
      // Rules: a deny, `*` sides, and a removal's expiry.
      t.equal(await tx.addIntention({ src: '*', dst: 'db', createdAt: 13, effect: 'deny' }), true)
      t.same(pairs(await tx.listIntentions({ service: 'db' })), ['*>db'], 'a wildcard rule concerns every service')
      t.equal(await tx.updateIntention('web', 'api', { expiresAt: 50 }), true)
      t.equal(await tx.updateIntention('no', 'such', { expiresAt: 50 }), false)
      t.same(pairs(await tx.listIntentions({ expiresBy: 50 })), ['web>api'])
      t.same(pairs(await tx.listIntentions({ expiresBy: 49 })), [])
      t.match(await tx.getIntention('*', 'db'), { effect: 'deny', expiresAt: null })
      t.equal(await tx.updateIntention('web', 'api', { expiresAtObserved: 60 }), true)
      t.same(await tx.getIntention('web', 'api'), { src: 'web', dst: 'api', createdAt: 11, effect: 'allow', expiresAt: 50, expiresAtObserved: 60 })
      t.equal(await tx.addIntention({ src: 'x', dst: 'y', createdAt: 14, expiresAt: 70, expiresAtObserved: 80 }), true)
      t.match(await tx.getIntention('x', 'y'), { expiresAt: 70, expiresAtObserved: 80 })
    })
  })

  t.test('join tokens are revoked once', async (t) => {
    const s = await fresh(t, b)
    if (!s) return
    await write(s, async (tx) => {
      await tx.insertJoinToken({ id: 'jt1', tokenHash: new Uint8Array(32).fill(7), service: 'api', createdAt: 1, expiresAt: 100, usedAt: null, usedByAgent: null })
      t.equal((await tx.getJoinToken('jt1'))?.revokedAt, null)
      t.equal(await tx.revokeJoinToken('jt1', 5), true)
      t.equal(await tx.revokeJoinToken('jt1', 6), false, 'a second revocation changes nothing')
      t.equal((await tx.getJoinToken('jt1'))?.revokedAt, 5)
    })
  })

  t.test('agents are enrolled, found by id and static key, listed and updated', async (t) => {
    const s = await fresh(t, b)
    if (!s) return
    await write(s, async (tx) => {
      await tx.insertAgent(agent('ag1', 'api'))
      await tx.insertAgent(agent('ag2', 'api', { enrolledAt: 2001 }))
      await tx.insertAgent(agent('ag3', 'db', { enrolledAt: 2002, endpoint: 'ws://db:7000' }))
      t.same(await tx.getAgent('ag1'), agent('ag1', 'api'))
      t.equal(await tx.getAgent('nope'), null)
      t.equal((await tx.getAgentByStaticKey(agent('ag3', 'db').staticKey))?.id, 'ag3')
      t.equal(await tx.getAgentByStaticKey(bytes(0)), null)
      t.equal(await tx.updateAgent('ag2', { revokedAt: 3000, lastSeenAt: 2500 }), true)
      t.equal(await tx.updateAgent('nope', { lastSeenAt: 1 }), false)
      t.same((await tx.listAgents()).map((a) => a.id), ['ag1', 'ag3'], 'revoked agents are left out')
      t.same((await tx.listAgents({ includeRevoked: true })).map((a) => a.id), ['ag1', 'ag2', 'ag3'])
      t.same((await tx.listAgents({ service: 'api', includeRevoked: true })).map((a) => a.revokedAt), [null, 3000])
      t.equal(await tx.updateAgent('ag3', { endpoint: null }), true)
      t.equal((await tx.getAgent('ag3'))?.endpoint, null)
    })
    await rejectsCode(t, write(s, (tx) => tx.insertAgent(agent('ag9', 'web', { staticKey: agent('ag1', 'api').staticKey }))),
      'CP_ERR_CONFLICT', /static_key/)
  })

  t.test('join tokens are used exactly once and expire', async (t) => {
    const s = await fresh(t, b)
    if (!s) return
    await write(s, async (tx) => {
      await tx.insertJoinToken(joinToken('j1', 'api'))
      await tx.insertJoinToken(joinToken('j2', 'db', { createdAt: 3001, expiresAt: 9000 }))
      t.same(await tx.getJoinToken('j1'), joinToken('j1', 'api'))
      t.equal(await tx.getJoinToken('zz'), null)
      t.equal((await tx.getJoinTokenByHash(joinToken('j2', 'db').tokenHash))?.id, 'j2')
      t.equal(await tx.getJoinTokenByHash(bytes(0)), null)
      t.equal(await tx.markJoinTokenUsed('j1', 3500, 'ag1'), true)
      t.equal(await tx.markJoinTokenUsed('j1', 3600, 'ag2'), false, 'a used token cannot be used again')
      t.equal(await tx.markJoinTokenUsed('zz', 3600, 'ag2'), false)
      t.match(await tx.getJoinToken('j1'), { usedAt: 3500, usedByAgent: 'ag1' })
      t.same((await tx.listJoinTokens()).map((j) => j.id), ['j1', 'j2'])
      t.same((await tx.listJoinTokens({ unusedOnly: true })).map((j) => j.id), ['j2'])
      t.same((await tx.listJoinTokens({ service: 'api' })).map((j) => j.id), ['j1'])
      t.equal(await tx.deleteJoinTokensExpiredBefore(4000), 0, 'expiry is exclusive')
      t.equal(await tx.deleteJoinTokensExpiredBefore(4001), 1)
      t.same((await tx.listJoinTokens()).map((j) => j.id), ['j2'])
    })
  })

  t.test('operator tokens are found by hash, listed and revoked once', async (t) => {
    const s = await fresh(t, b)
    if (!s) return
    await write(s, async (tx) => {
      await tx.insertOperatorToken(operatorToken('o1', { role: 'admin' }))
      await tx.insertOperatorToken(operatorToken('o2', { role: 'auditor', expiresAt: 9999, createdAt: 3001 }))
      t.same(await tx.getOperatorToken('o1'), operatorToken('o1', { role: 'admin' }))
      t.equal(await tx.getOperatorToken('zz'), null)
      t.equal((await tx.getOperatorTokenByHash(operatorToken('o2').tokenHash))?.role, 'auditor')
      t.equal(await tx.getOperatorTokenByHash(bytes(0)), null)
      t.equal(await tx.revokeOperatorToken('o1', 5000), true)
      t.equal(await tx.revokeOperatorToken('o1', 6000), false, 'revoking twice changes nothing')
      t.equal((await tx.getOperatorToken('o1'))?.revokedAt, 5000)
      t.same((await tx.listOperatorTokens()).map((o) => o.id), ['o2'])
      t.same((await tx.listOperatorTokens({ includeRevoked: true })).map((o) => o.id), ['o1', 'o2'])
    })
    await rejectsCode(t, write(s, (tx) => tx.insertOperatorToken(operatorToken('o3', { role: 'root' as 'admin' }))), 'CP_ERR_STORE')
  })

  t.test('a usage batch is recorded exactly once per agent and sequence number', async (t) => {
    const s = await fresh(t, b)
    if (!s) return
    await write(s, async (tx) => {
      await tx.insertAgent(agent('ag1', 'api'))
      await tx.insertAgent(agent('ag2', 'api'))
      t.equal(await tx.lastUsageBatchSeq('ag1'), null)
      t.equal(await tx.recordUsageBatch({ agentId: 'ag1', seq: 1, receivedAt: 10 }), true)
      t.equal(await tx.recordUsageBatch({ agentId: 'ag1', seq: 1, receivedAt: 11 }), false, 'a resent batch is not new')
      t.equal(await tx.recordUsageBatch({ agentId: 'ag1', seq: 2, receivedAt: 12 }), true)
      t.equal(await tx.recordUsageBatch({ agentId: 'ag2', seq: 1, receivedAt: 13 }), true, 'numbering is per agent')
      t.equal(await tx.lastUsageBatchSeq('ag1'), 2)
    })
    await rejectsCode(t, write(s, (tx) => tx.recordUsageBatch({ agentId: 'ghost', seq: 1, receivedAt: 1 })), 'CP_ERR_NOT_FOUND')
  })

  t.test('key usage adds to daily buckets, lists by key from a day, prunes old days and goes with its key', async (t) => {
    const s = await fresh(t, b)
    if (!s) return
    await write(s, async (tx) => {
      await tx.insertKey(aeadKey('k'))
      await tx.insertKeyVersion(keyVersion('k', 1, { origin: 'imported' }))
      await tx.insertKeyVersion(keyVersion('k', 2))
      t.same(await tx.getKeyVersion('k', 1), keyVersion('k', 1, { origin: 'imported' }), 'an imported version says so')
      t.same(await tx.getKeyVersion('k', 2), keyVersion('k', 2), 'a made one has no origin field')
      const use = (version: number, service: string, day: number, uses: number, lastUsedAt: number) => ({ keyName: 'k', version, service, day, uses, lastUsedAt })
      await tx.addKeyUsage([use(1, 'app', 10, 2, 1000), use(2, 'app', 11, 1, 2000), use(1, 'ops', 9, 1, 900)])
      await tx.addKeyUsage([use(1, 'app', 10, 3, 999), use(1, 'app', 10, 0, 1001)])
      t.same(await tx.listKeyUsage('k', 10), [use(1, 'app', 10, 5, 1001), use(2, 'app', 11, 1, 2000)], 'summed, the later time kept, ordered by version')
      t.equal(await tx.deleteKeyUsageBefore(10), 1)
      t.same((await tx.listKeyUsage('k', 0)).length, 2)
      await tx.deleteKey('k')
      t.same(await tx.listKeyUsage('k', 0), [], 'deleted with its key')
    })
  })

  const auditRow = (seq: number, over: object = {}) => ({
    seq, at: 100 + seq, actor: seq % 2 ? 'operator:o1' : 'agent:ag1', action: seq < 3 ? 'key.create' : 'key.rotate',
    target: `key:k${seq}`, outcome: 'ok' as const, reason: 'because', detailsJson: '{}',
    prevHash: bytes(seq - 1), hash: bytes(seq), mac: seq % 2 ? bytes(100 + seq) : null, ...over,
  })

  t.test('audit rows append behind the head and are listed by filter, order and page', async (t) => {
    const s = await fresh(t, b)
    if (!s) return
    await write(s, async (tx) => {
      t.same(await tx.lockAuditHead(), { seq: 0, hash: bytes(0) }, 'an empty log has head 0 and the zero hash')
      for (let i = 1; i <= 5; i++) await tx.appendAuditRow(auditRow(i))
      t.same(await tx.getAuditHead(), { seq: 5, hash: bytes(5) })
    })
    await rejectsCode(t, write(s, (tx) => tx.appendAuditRow(auditRow(7))), 'CP_ERR_CONFLICT', /head moved/)
    await rejectsCode(t, write(s, (tx) => tx.appendAuditRow(auditRow(5))), 'CP_ERR_CONFLICT')
    await s.read(async (tx) => {
      const seqs = async (f: Parameters<typeof tx.listAuditEntries>[0]) => (await tx.listAuditEntries(f)).map((r) => r.seq)
      t.same(await seqs({ limit: 10 }), [1, 2, 3, 4, 5])
      t.same(await seqs({ limit: 2, order: 'desc' }), [5, 4])
      t.same(await seqs({ limit: 10, afterSeq: 3 }), [4, 5])
      t.same(await seqs({ limit: 10, beforeSeq: 3, order: 'desc' }), [2, 1])
      t.same(await seqs({ limit: 10, from: 102, to: 104 }), [2, 3], 'from is inclusive, to exclusive')
      t.same(await seqs({ limit: 10, actor: 'agent:ag1' }), [2, 4])
      t.same(await seqs({ limit: 10, action: 'key.rotate', target: 'key:k4' }), [4])
      t.same(await seqs({ limit: 10, outcome: 'deny' }), [])
      t.same(await seqs({ limit: -1 }), [], 'a negative limit returns nothing, not everything')
      t.same((await tx.listAuditEntries({ limit: 1 }))[0], auditRow(1))
    })
  })

  t.test('audit checkpoints are kept once per seq and listed by range and order', async (t) => {
    const s = await fresh(t, b)
    if (!s) return
    const cp = (seq: number, at = seq * 10) => ({ seq, hash: bytes(seq), at, signature: new Uint8Array(64).fill(seq) })
    await write(s, async (tx) => {
      for (const seq of [3, 1, 7]) t.equal(await tx.insertAuditCheckpoint(cp(seq)), true)
      t.equal(await tx.insertAuditCheckpoint(cp(3, 999)), false, 'a second checkpoint of seq 3 is not kept')
    })
    await s.read(async (tx) => {
      const seqs = async (f: Parameters<typeof tx.listAuditCheckpoints>[0]) => (await tx.listAuditCheckpoints(f)).map((c) => c.seq)
      t.same(await seqs({ limit: 10 }), [1, 3, 7])
      t.same(await seqs({ limit: 1, order: 'desc' }), [7])
      t.same(await seqs({ limit: 10, afterSeq: 1, upToSeq: 3 }), [3])
      t.same((await tx.listAuditCheckpoints({ limit: 10, afterSeq: 2, upToSeq: 3 }))[0], cp(3), 'the first one kept, byte for byte')
    })
  })

  t.test('console sessions, replicas and open tunnels: kept, found, replaced, counted and cleared', async (t) => {
    const s = await fresh(t, b)
    if (!s) return
    const session = { id: 'cs1', secretHash: bytes(7), kind: 'session' as const, tokenId: 'tok1', createdAt: 10, expiresAt: 100 }
    await write(s, async (tx) => {
      await tx.insertConsoleSession(session)
      await tx.insertConsoleSession({ ...session, id: 'cs2', secretHash: bytes(8), kind: 'link', expiresAt: 50 })
    })
    await rejectsCode(t, write(s, (tx) => tx.insertConsoleSession({ ...session, id: 'cs3' })), 'CP_ERR_CONFLICT', /./)
    await write(s, async (tx) => {
      t.same(await tx.getConsoleSession(bytes(7)), session)
      t.equal((await tx.getConsoleSession(bytes(8)))?.kind, 'link')
      t.equal(await tx.getConsoleSession(bytes(9)), null)
      t.equal(await tx.deleteConsoleSessionsExpiredBefore(60), 1, 'the link expired at 50')
      t.equal(await tx.deleteConsoleSession('cs1'), true)
      t.equal(await tx.deleteConsoleSession('cs1'), false, 'gone once')

      await tx.putConsoleReplica({ id: 'r2', url: 'https://b', startedAt: 1, seenAt: 5, statusJson: '{}' })
      await tx.putConsoleReplica({ id: 'r1', url: 'https://a', startedAt: 1, seenAt: 5, statusJson: '{}' })
      await tx.putConsoleReplica({ id: 'r1', url: 'https://a', startedAt: 1, seenAt: 9, statusJson: '{"ready":true}' })
      t.same(await tx.listConsoleReplicas(), [
        { id: 'r1', url: 'https://a', startedAt: 1, seenAt: 9, statusJson: '{"ready":true}' },
        { id: 'r2', url: 'https://b', startedAt: 1, seenAt: 5, statusJson: '{}' },
      ], 'replaced in place, ordered by id')
      t.equal(await tx.deleteConsoleReplicasSeenBefore(6), 1)

      await tx.addAgentTunnels('agt_b', new Map([['api:web', 2]]), 1)
      await tx.addAgentTunnels('agt_a', new Map([['api:web', 1], ['db:web', -1]]), 2)
      await tx.addAgentTunnels('agt_a', new Map([['api:web', 2]]), 3)
      await tx.addAgentTunnels('agt_b', new Map([['api:web', -5]]), 4)
      t.same(await tx.listAgentTunnels(), [{ agentId: 'agt_a', pairId: 'api:web', open: 3, updatedAt: 3 }],
        'deltas add up; a count never goes below zero; empty ones are left out')
      t.same(await tx.listAgentTunnels({ agentId: 'agt_b' }), [])
    })
  })
}
