// Shared pieces of the control plane's KMS tests: text <-> bytes, and an enrolled
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
