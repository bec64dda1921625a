// Shared pieces of the KMS tests: text <-> bytes, a key with its grants, and an enrolled
// FakeAgent of a service whose first key set has been read (so a test that counts
// the store's reads or commits sees only its own).
import type { TestControlPlane } from './cp.js'
import { FakeAgent } from './fake-agent.js'

export const bytes = (s: string): Uint8Array => new Uint8Array(Buffer.from(s))
export const text = (b: Uint8Array | undefined): string => Buffer.from(b ?? []).toString()

export async function kmsAgent(h: TestControlPlane, t: { teardown(fn: () => unknown): void }, service: string): Promise<FakeAgent> {
  const token = (await h.api('POST', '/v1/join-tokens', { service })).body.token
  const a = new FakeAgent({ url: h.cp.url, cpKey: h.identityPub, service, joinToken: token })
  t.teardown(() => void a.close().catch(() => {}))
  await a.welcome()
  await a.keyset()
  return a
}

/** Creates key `name` of `type` and grants each service its rights; throws on any refusal. */
export async function createKey(h: Pick<TestControlPlane, 'api'>, name: string, type: 'aead' | 'x25519' | 'ed25519' | 'ecdsa-p256' | 'hmac-sha256', grants: Record<string, string[]>): Promise<void> {
  const made = await h.api('POST', '/v1/keys', { name, type })
  if (made.status !== 201) throw new Error(`key ${name}: ${made.status} ${JSON.stringify(made.body)}`)
  for (const [service, rights] of Object.entries(grants)) {
    const g = await h.api('POST', `/v1/keys/${name}/grants`, { service, rights })
    if (g.status !== 200) throw new Error(`grant ${name} ${service}: ${g.status} ${JSON.stringify(g.body)}`)
  }
}
