// Sample records for the store and audit tests, each overridable per test.
import type {
  AgentRecord,
  JoinTokenRecord,
  KeyRecord,
  KeyVersionRecord,
  OperatorTokenRecord,
} from '../../../control-plane/src/store/records.js'

export const bytes = (fill: number, n = 32): Uint8Array => new Uint8Array(n).fill(fill)

export const aeadKey = (name: string, over: Partial<KeyRecord> = {}): KeyRecord => ({
  name,
  type: 'aead',
  createdAt: 1000,
  rotationPeriodMs: null,
  nextRotationAt: null,
  primaryVersion: 1,
  minDecryptVersion: 1,
  pairServices: null,
  ...over,
})

export const pairKey = (name: string, a: string, b: string, over: Partial<KeyRecord> = {}): KeyRecord =>
  aeadKey(name, { type: 'pair', pairServices: [a, b], rotationPeriodMs: 86_400_000, nextRotationAt: 5000, ...over })

export const keyVersion = (keyName: string, version: number, over: Partial<KeyVersionRecord> = {}): KeyVersionRecord => ({
  keyName,
  version,
  state: 'enabled',
  sealedMaterial: bytes(version, 61),
  createdAt: 1000 + version,
  stateChangedAt: 1000 + version,
  destroyAt: null,
  notAfter: null,
  previousState: null,
  ...over,
})

export const agent = (id: string, service: string, over: Partial<AgentRecord> = {}): AgentRecord => ({
  id,
  service,
  staticKey: bytes(id.charCodeAt(id.length - 1)),
  enrolledAt: 2000,
  revokedAt: null,
  lastSeenAt: null,
  endpoint: null,
  ...over,
})

export const joinToken = (id: string, service: string, over: Partial<JoinTokenRecord> = {}): JoinTokenRecord => ({
  id,
  tokenHash: bytes(id.charCodeAt(id.length - 1) + 100),
  service,
  createdAt: 3000,
  expiresAt: 4000,
  usedAt: null,
  usedByAgent: null,
  revokedAt: null,
  ...over,
})

export const operatorToken = (id: string, over: Partial<OperatorTokenRecord> = {}): OperatorTokenRecord => ({
  id,
  name: `token ${id}`,
  tokenHash: bytes(id.charCodeAt(id.length - 1) + 50),
  role: 'operator',
  createdAt: 3000,
  expiresAt: null,
  revokedAt: null,
  ...over,
})
