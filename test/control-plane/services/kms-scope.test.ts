// The grant decisions of a KMS scope (control-plane/src/services/kms-scope.ts):
// made once per grant row and right, and always the decision policy.ts makes.
import t from 'tap'

import type { CpContext } from '../../../control-plane/src/context.js'
import { authorizeService } from '../../../control-plane/src/policy.js'
import type { PolicyReader } from '../../../control-plane/src/services/kms-policy.js'
import { KmsScope } from '../../../control-plane/src/services/kms-scope.js'
import type { GrantRecord } from '../../../control-plane/src/store/records.js'
import { nodeSuite } from '../../../protocol/src/index.js'

const grant = (rights: GrantRecord['rights']): GrantRecord => ({ keyName: 'records', service: 'app', rights }) as GrantRecord

t.test('a scope decides each grant row and right once, as authorizeService does', async (t) => {
  const scope = new KmsScope({ suite: nodeSuite } as unknown as CpContext, {} as PolicyReader, 100)
  const g = grant(['encrypt'])
  const first = scope.authorize(g, 'app', 'records', 'encrypt')
  t.same(first, authorizeService([g], 'app', 'records', 'encrypt'))
  t.equal(first.allow, true)
  t.equal(scope.authorize(g, 'app', 'records', 'encrypt'), first, 'the same decision, not made again')
  t.same(scope.authorize(g, 'app', 'records', 'decrypt'), authorizeService([g], 'app', 'records', 'decrypt'), 'another right: its own decision')
  t.equal(scope.authorize(g, 'app', 'records', 'decrypt').allow, false)
  const changed = grant(['encrypt', 'decrypt'])
  t.equal(scope.authorize(changed, 'app', 'records', 'decrypt').allow, true, 'another grant row is decided afresh')
  t.same(scope.authorize(null, 'app', 'records', 'decrypt'), authorizeService([], 'app', 'records', 'decrypt'), 'no grant: denied')
  t.same(scope.authorize(null, 'other', 'records', 'decrypt'), authorizeService([], 'other', 'records', 'decrypt'), 'per service')
})
