// Finding: the endpoint an agent advertises was stored unchecked, and peers dial it. An
// agent (or a stolen join token) could point every peer at the cloud metadata service
// of the peer's own host. The attack: advertise such an endpoint in the enrollment hello;
// the control plane's decoder refuses it, as does the agent's own --advertise check.
import t from 'tap'
import { PROTOCOL_VERSION, decodeMessage, isEndpointUrl, isKeymeshError } from '../../protocol/src/index.js'

const FORBIDDEN = [
  'ws://169.254.169.254/latest/meta-data/',
  'ws://169.254.169.254:80/',
  'wss://2852039166/', // 169.254.169.254 written as one number; URL normalises it
  'ws://0xa9.0xfe.0xa9.0xfe/', // and in hex
  'ws://[::ffff:169.254.169.254]/', // IPv4-mapped
  'ws://[fd00:ec2::254]/', // AWS's IPv6 metadata address
  'ws://[fe80::1%25eth0]:7401/',
  'ws://[FE80::1]:7401/',
  'ws://metadata.google.internal/computeMetadata/v1/',
  'ws://METADATA.GOOGLE.INTERNAL./',
  'ws://0.0.0.0:7401/',
  'ws://[::]:7401/',
  'ws://user:pw@10.0.0.1:7401/', // credentials would be sent to whoever answers
  'ws://100.100.100.200/latest/meta-data/', // Alibaba Cloud's metadata service
  'ws://168.63.129.16/', // Azure's WireServer
  'ws://metadata.goog/',
  'ws://[::a9fe:a9fe]/', // IPv4-compatible 169.254.169.254
  'ws://[64:ff9b::a9fe:a9fe]/', // NAT64
  'ws://[::ffff:0:a9fe:a9fe]/', // SIIT
  'ws://[::ffff:100.100.100.200]/',
]

/** The hello an agent sends in Noise XK message 3, as raw JSON bytes an attacker controls. */
function hello(endpoint: string): Uint8Array {
  return new TextEncoder().encode(JSON.stringify({
    type: 'hello', protocol: PROTOCOL_VERSION, service: 'web', agentVersion: '1.0.0', endpoint,
  }))
}

t.test('the control plane refuses a hello that advertises a link-local, metadata or unspecified endpoint', async (t) => {
  for (const endpoint of FORBIDDEN) {
    t.notOk(isEndpointUrl(endpoint), `${endpoint} is no endpoint`)
    let err: unknown
    try {
      decodeMessage(hello(endpoint))
    } catch (e) {
      err = e
    }
    t.ok(isKeymeshError(err), `${endpoint}: the hello is refused with a typed error`)
  }
})

t.test('ordinary endpoints still pass', async (t) => {
  for (const endpoint of ['ws://10.0.0.7:7401', 'wss://api-1.internal.example:7401/', 'ws://127.0.0.1:7401', 'ws://[fd12::7]:7401/', 'ws://[::1]:7401', 'ws://[64:ff9b::a00:7]:7401/', 'ws://169.255.0.1:7401']) {
    t.ok(isEndpointUrl(endpoint), endpoint)
    t.equal((decodeMessage(hello(endpoint)) as { endpoint?: string }).endpoint, endpoint)
  }
})
