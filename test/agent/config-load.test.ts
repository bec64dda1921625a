// Agent configuration: flags over KEYMESH_* variables over the config file over
// defaults, every validation error (AGENT_ERR_CONFIG naming the source, never the
// secret), the frozen result, and the accepted spellings of --connect and --api.
import t, { type Test } from 'tap'
import { chmodSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'

import { DEFAULT_LIMITS, formatHostPort, isLoopbackHost, isWildcardHost, parseHostPort } from '../../agent/src/config.js'
import { loadAgentConfig, parseApiListen, type LoadAgentConfigInput } from '../../agent/src/config-load.js'
import { isKeymeshError } from '../../protocol/src/index.js'
import { formatPublicKey } from '../../protocol/src/index.js'

const KEY_BYTES = new Uint8Array(32).map((_, i) => i + 1)
const KEY_TEXT = formatPublicKey(KEY_BYTES)
const OTHER_KEY_TEXT = formatPublicKey(new Uint8Array(32).fill(7))
const TOKEN = 'jt-secret-0123456789abcdef'
const BASE = { cp: 'http://127.0.0.1:7400', cpKey: KEY_TEXT, service: 'web', stateDir: '/var/lib/km' }

/** Files served from memory; a missing one fails like fs does. */
function files(map: Record<string, string>): (path: string) => string {
  return (path) => {
    const text = map[path]
    if (text === undefined) throw Object.assign(new Error(`ENOENT: ${path}`), { code: 'ENOENT' })
    return text
  }
}

function load(args: Record<string, unknown>, env: Record<string, string> = {}, fileMap: Record<string, string> = {}) {
  const input: LoadAgentConfigInput = { args, env, readFile: files(fileMap) }
  return loadAgentConfig(input)
}

/** The AGENT_ERR_CONFIG message `fn` throws (fails the test on anything else). */
function configError(t: Test, fn: () => unknown): string {
  try {
    fn()
  } catch (e) {
    t.ok(isKeymeshError(e, 'AGENT_ERR_CONFIG'), `AGENT_ERR_CONFIG, got ${String(e)}`)
    return (e as Error).message
  }
  t.fail('expected AGENT_ERR_CONFIG')
  return ''
}

t.test('minimal flags give the documented defaults', async (t) => {
  const c = load(BASE)
  t.same(c.cpUrls, ['http://127.0.0.1:7400'])
  t.same([...c.cpKey], [...KEY_BYTES])
  t.equal(c.service, 'web')
  t.equal(c.stateDir, '/var/lib/km')
  t.same(c.tunnelListen, { host: '127.0.0.1', port: 7401 })
  t.equal(c.logLevel, 'info')
  t.same(c.connect, [])
  t.same(c.limits, DEFAULT_LIMITS)
  for (const absent of ['joinToken', 'advertise', 'expose', 'api']) t.notOk(absent in c, `${absent} is absent`)
})

t.test('a flag beats the environment, which beats the file, which beats the default', async (t) => {
  const file = JSON.stringify({ service: 'from-file', 'state-dir': '/file', logLevel: 'warn', tunnelListen: '127.0.0.1:9001', connect: ['api=127.0.0.1:1'], cp: 'http://file:1' })
  const env = { KEYMESH_SERVICE: 'from-env', KEYMESH_STATE_DIR: '/env', KEYMESH_CONNECT: 'api=127.0.0.1:2', KEYMESH_CP: 'http://env:1', KEYMESH_CONFIG: '/agent.json' }
  const flags = { cpKey: KEY_TEXT, service: 'from-flag', connect: 'db=127.0.0.1:3' }
  const c = load(flags, env, { '/agent.json': file })
  t.equal(c.service, 'from-flag', 'flag over env and file')
  t.equal(c.stateDir, '/env', 'env over file')
  t.same(c.cpUrls, ['http://env:1'], 'env over file')
  t.same(c.connect, [{ peerService: 'db', host: '127.0.0.1', port: 3 }], 'a list is replaced whole, not merged')
  t.equal(c.logLevel, 'warn', 'file over default')
  t.same(c.tunnelListen, { host: '127.0.0.1', port: 9001 }, 'file over default')
  const noEnv = load({ config: '/agent.json', cpKey: KEY_TEXT }, {}, { '/agent.json': file })
  t.equal(noEnv.service, 'from-file')
  t.same(noEnv.connect, [{ peerService: 'api', host: '127.0.0.1', port: 1 }])
  t.equal(load(BASE, { KEYMESH_SERVICE: '' }).service, 'web', 'an empty variable is unset')
  t.equal(load({ ...BASE, service: undefined }, { KEYMESH_SERVICE: 'orders' }).service, 'orders', 'kebab or camel args, undefined is unset')
  t.equal(load({ ...BASE, 'log-level': 'debug' }).logLevel, 'debug', 'kebab-case args')
})

t.test('the config file takes kebab-case or camelCase keys and limits in ms', async (t) => {
  const file = JSON.stringify({
    cp: ['http://a:1', 'http://b:2'], cpKeyFile: '/cp/identity.pub', service: 'web', 'state-dir': '/s', expose: '127.0.0.1:8080',
    api: 'unix:/run/km.sock', limits: { rehandshakeAfterMs: 30_000, maxTunnels: 10 },
  })
  const c = load({ config: '/a.json' }, {}, { '/a.json': file, '/cp/identity.pub': `${KEY_TEXT}\n` })
  t.same(c.cpUrls, ['http://a:1', 'http://b:2'])
  t.same([...c.cpKey], [...KEY_BYTES], 'identity.pub as the control plane writes it, newline and all')
  t.same(c.expose, { host: '127.0.0.1', port: 8080 })
  t.same(c.api, { socketPath: '/run/km.sock' })
  t.equal(c.limits.rehandshakeAfterMs, 30_000)
  t.equal(c.limits.maxTunnels, 10)
  t.equal(c.limits.sweepMs, DEFAULT_LIMITS.sweepMs, 'unset limits keep their default')
})

t.test('the result is deep-frozen and holds nothing from process.*', async (t) => {
  const saved = process.env['KEYMESH_STATE_DIR']
  process.env['KEYMESH_STATE_DIR'] = '/from/process/env'
  t.teardown(() => {
    if (saved === undefined) delete process.env['KEYMESH_STATE_DIR']
    else process.env['KEYMESH_STATE_DIR'] = saved
  })
  const c = load({ ...BASE, stateDir: undefined, connect: ['api=127.0.0.1:15001'], api: '127.0.0.1:7402' }, { KEYMESH_STATE_DIR: '/given' })
  t.equal(c.stateDir, '/given', 'only the env record passed in is read')
  for (const [name, v] of Object.entries({ config: c, cpUrls: c.cpUrls, connect: c.connect, target: c.connect[0], tunnelListen: c.tunnelListen, api: c.api, limits: c.limits })) {
    t.ok(Object.isFrozen(v), `${name} is frozen`)
  }
  t.throws(() => (c.connect as unknown[]).push({}), TypeError)
  t.throws(() => { (c as { service: string }).service = 'x' }, TypeError)
  const e = configError(t, () => load({ ...BASE, stateDir: undefined }))
  t.match(e, /--state-dir DIR/, 'process.env is not a fallback')
})

t.test('--connect: repeated, comma lists, env list, file array or object, IPv6', async (t) => {
  const want = [{ peerService: 'api', host: '127.0.0.1', port: 15001 }, { peerService: 'db', host: '::1', port: 15002 }]
  t.same(load({ ...BASE, connect: ['api=127.0.0.1:15001', 'db=[::1]:15002'] }).connect, want, 'repeated flag')
  t.same(load({ ...BASE, connect: 'api=127.0.0.1:15001, db=[::1]:15002' }).connect, want, 'comma list')
  t.same(load(BASE, { KEYMESH_CONNECT: 'api=127.0.0.1:15001,db=[::1]:15002' }).connect, want, 'env comma list')
  const arr = JSON.stringify({ connect: ['api=127.0.0.1:15001', 'db=[::1]:15002'] })
  t.same(load({ ...BASE, config: '/c.json' }, {}, { '/c.json': arr }).connect, want, 'file array')
  const obj = JSON.stringify({ connect: { api: '127.0.0.1:15001', db: '[::1]:15002' } })
  t.same(load({ ...BASE, config: '/c.json' }, {}, { '/c.json': obj }).connect, want, 'file object')
  t.same(load({ ...BASE, connect: 'api=localhost:0' }).connect, [{ peerService: 'api', host: 'localhost', port: 0 }], 'port 0 picks a free port')
})

t.test('--api takes HOST:PORT or unix:PATH', async (t) => {
  t.same(load({ ...BASE, api: '127.0.0.1:7402' }).api, { host: '127.0.0.1', port: 7402 })
  t.same(load({ ...BASE, api: '[::1]:7402' }).api, { host: '::1', port: 7402 })
  t.same(load(BASE, { KEYMESH_API: 'unix:/run/keymesh/web.sock' }).api, { socketPath: '/run/keymesh/web.sock' })
  t.same(parseApiListen('unix:rel.sock', '--api'), { socketPath: 'rel.sock' })
  t.match(configError(t, () => load({ ...BASE, api: `unix:/${'d'.repeat(100)}` })), /--api: a unix socket path may be at most 96 bytes/)
  t.match(configError(t, () => load({ ...BASE, api: 'unix:' })), /--api must be HOST:PORT or unix:/)
  t.match(configError(t, () => load({ ...BASE, api: '/run/x.sock' })), /--api must be HOST:PORT \(e\.g\. 127\.0\.0\.1:7402\) or unix:/)
})

t.test('a non-loopback --api is refused unless --api-allow-remote says so', async (t) => {
  for (const api of ['0.0.0.0:7402', '[::]:7402', '192.168.1.20:7402', 'web.internal:7402']) {
    t.match(configError(t, () => load({ ...BASE, api })), /--api is not a loopback address: .* add --api-allow-remote \(env KEYMESH_API_ALLOW_REMOTE\)/, api)
  }
  t.match(configError(t, () => load(BASE, { KEYMESH_API: '0.0.0.0:7402' })), /^.*KEYMESH_API is not a loopback address/)
  t.same(load({ ...BASE, api: 'localhost:7402' }).api, { host: 'localhost', port: 7402 }, 'localhost is loopback')
  t.notOk('apiAllowRemote' in load({ ...BASE, api: '127.0.0.1:7402' }))
  const flag = load({ ...BASE, api: '0.0.0.0:7402', apiAllowRemote: true })
  t.same([flag.api, flag.apiAllowRemote], [{ host: '0.0.0.0', port: 7402 }, true])
  t.equal(load({ ...BASE, api: '[::]:7402' }, { KEYMESH_API_ALLOW_REMOTE: '1' }).apiAllowRemote, true, 'from the environment')
  const file = JSON.stringify({ api: '10.0.0.5:7402', 'api-allow-remote': true })
  t.equal(load({ ...BASE, config: '/agent.json' }, {}, { '/agent.json': file }).apiAllowRemote, true, 'from the config file')
  t.match(configError(t, () => load({ ...BASE, api: '0.0.0.0:7402' }, { KEYMESH_API_ALLOW_REMOTE: 'no' })), /not a loopback address/, 'no is no')
  t.match(configError(t, () => load({ ...BASE, api: '0.0.0.0:7402' }, { KEYMESH_API_ALLOW_REMOTE: 'maybe' })), /KEYMESH_API_ALLOW_REMOTE must be true or false/)
  t.same(load({ ...BASE, api: 'unix:/run/km.sock', apiAllowRemote: 'true' }).api, { socketPath: '/run/km.sock' }, 'with a unix socket it allows nothing more')
})

t.test('--cp: several URLs, normalised, each checked', async (t) => {
  t.same(load({ ...BASE, cp: ['http://a:1/', 'wss://b.example/km/'] }).cpUrls, ['http://a:1', 'wss://b.example/km'])
  t.same(load({ ...BASE, cp: 'http://a:1,https://b:2' }).cpUrls, ['http://a:1', 'https://b:2'])
  t.match(configError(t, () => load({ ...BASE, cp: 'ftp://a' })), /--cp must be an http:\/\/, https:\/\/, ws:\/\/ or wss:\/\/ URL with a host/)
  t.match(configError(t, () => load({ ...BASE, cp: 'http://a:1,nope' })), /--cp \(URL 2\) is not a URL/)
  const creds = configError(t, () => load({ ...BASE, cp: 'http://user:hunter2secret@a:1' }))
  t.match(creds, /must not carry credentials/)
  t.notMatch(creds, /hunter2secret/, 'credentials are not echoed')
  t.match(configError(t, () => load({ ...BASE, cp: 'http://a:1?x=1' })), /must not have a query or fragment/)
  t.match(configError(t, () => load({ ...BASE, cp: ['http://a:1', 'http://a:1/'] })), /repeats an earlier control-plane URL/)
  t.match(configError(t, () => load({ ...BASE, cp: ' , ' })), /--cp names no control-plane URL/)
  t.match(configError(t, () => load({ ...BASE, cp: Array.from({ length: 17 }, (_, i) => `http://h${i}:1`) })), /more than 16/)
  t.match(configError(t, () => load({ ...BASE, cp: [1] })), /--cp must be one or more control-plane URLs/)
})

t.test('the control-plane key: text or file, one form per source', async (t) => {
  const fromFile = load({ ...BASE, cpKey: undefined, cpKeyFile: '/id.pub' }, { KEYMESH_CP_KEY: OTHER_KEY_TEXT }, { '/id.pub': KEY_TEXT })
  t.same([...fromFile.cpKey], [...KEY_BYTES], 'the flag (file form) beats the env (text form)')
  const envFile = load({ ...BASE, cpKey: undefined }, { KEYMESH_CP_KEY_FILE: '/id.pub' }, { '/id.pub': `${KEY_TEXT}\n` })
  t.same([...envFile.cpKey], [...KEY_BYTES])
  t.equal(envFile.cpKey.byteLength, envFile.cpKey.buffer.byteLength, 'a private copy, not a view into a shared pool')
  const both = configError(t, () => load({ ...BASE, cpKeyFile: '/id.pub' }, {}, { '/id.pub': KEY_TEXT }))
  t.match(both, /--cp-key and --cp-key-file are both given; give one/)
  const bad = configError(t, () => load({ ...BASE, cpKey: `${KEY_TEXT.slice(0, -1)}!` }))
  t.match(bad, /--cp-key must hold the control plane's public key as "x25519:"/)
  t.notMatch(bad, new RegExp(KEY_TEXT.slice(7, 30)), 'the key text is not echoed')
  t.match(configError(t, () => load({ ...BASE, cpKey: undefined, cpKeyFile: '/nope' })), /--cp-key-file: cannot read \/nope \(ENOENT\)/)
  t.match(configError(t, () => load({ ...BASE, cpKey: undefined, cpKeyFile: '/big' }, {}, { '/big': 'x'.repeat(5000) })), /larger than 4096 bytes/)
  t.match(configError(t, () => load({ ...BASE, cpKey: undefined, cpKeyFile: '/junk' }, {}, { '/junk': 'junk' })), /--cp-key-file: the file must hold/)
  t.match(configError(t, () => load({ ...BASE, cpKey: undefined })), /pin the control plane's public key with --cp-key-file FILE/)
})

t.test('the join token: flag, env or file, never echoed', async (t) => {
  t.equal(load({ ...BASE, joinToken: TOKEN }).joinToken, TOKEN)
  t.equal(load(BASE, { KEYMESH_JOIN_TOKEN_FILE: '/tok' }, { '/tok': `${TOKEN}\n` }).joinToken, TOKEN)
  t.equal(load({ ...BASE, joinTokenFile: '/tok' }, { KEYMESH_JOIN_TOKEN: 'other-token-0123456789' }, { '/tok': TOKEN }).joinToken, TOKEN)
  const short = configError(t, () => load({ ...BASE, joinToken: 'tooShortSecret1' }))
  t.match(short, /--join-token must hold a join token: 16-256 of/)
  t.notMatch(short, /tooShortSecret1/)
  const badFile = configError(t, () => load({ ...BASE, joinTokenFile: '/tok' }, {}, { '/tok': `${TOKEN} and more` }))
  t.match(badFile, /--join-token-file: the file must hold a join token/)
  t.notMatch(badFile, /jt-secret/)
  t.match(configError(t, () => load(BASE, { KEYMESH_JOIN_TOKEN: TOKEN, KEYMESH_JOIN_TOKEN_FILE: '/tok' })), /KEYMESH_JOIN_TOKEN and KEYMESH_JOIN_TOKEN_FILE are both given/)
  const inFile = configError(t, () => load({ ...BASE, config: '/c.json' }, {}, { '/c.json': `{"join-token": "${TOKEN}", ` }))
  t.match(inFile, /config file \/c\.json \(--config\) is not valid JSON/)
  t.notMatch(inFile, /jt-secret/, 'a broken config file is not quoted')
})

t.test('every other validation error names its source and what is expected', async (t) => {
  const cases: Array<[string, Record<string, unknown>, Record<string, string>, Record<string, string>, RegExp]> = [
    ['no service', { ...BASE, service: undefined }, {}, {}, /name this agent's service with --service NAME \(env KEYMESH_SERVICE\)/],
    ['bad service', { ...BASE, service: 'Web_1' }, {}, {}, /--service must be a service name/],
    ['bad service from env', { ...BASE, service: undefined }, { KEYMESH_SERVICE: '-x' }, {}, /KEYMESH_SERVICE must be a service name/],
    ['no cp', { ...BASE, cp: undefined }, {}, {}, /name the control plane with --cp URL/],
    ['empty state dir', { ...BASE, stateDir: ' ' }, {}, {}, /--state-dir must be a directory name/],
    ['bad tunnel-listen', { ...BASE, tunnelListen: '127.0.0.1' }, {}, {}, /--tunnel-listen must be HOST:PORT \(e\.g\. 127\.0\.0\.1:7401/],
    ['port too big', { ...BASE, tunnelListen: '127.0.0.1:65536' }, {}, {}, /--tunnel-listen must be HOST:PORT/],
    ['host is a URL', { ...BASE, expose: 'http://127.0.0.1:80' }, {}, {}, /--expose must be HOST:PORT \(e\.g\. 127\.0\.0\.1:8080/],
    ['expose port 0', { ...BASE, expose: '127.0.0.1:0' }, {}, {}, /--expose must name a port from 1 to 65535/],
    ['wildcard without advertise', { ...BASE, tunnelListen: '0.0.0.0:7401' }, {}, {}, /--tunnel-listen binds every interface, so peers need --advertise URL/],
    ['v6 wildcard from env', BASE, { KEYMESH_TUNNEL_LISTEN: '[::]:7401' }, {}, /KEYMESH_TUNNEL_LISTEN binds every interface/],
    ['bad advertise', { ...BASE, advertise: 'http://a:1' }, {}, {}, /--advertise must be a ws:\/\/ or wss:\/\/ URL/],
    ['connect without =', { ...BASE, connect: '127.0.0.1:1' }, {}, {}, /--connect \(entry 1\) must be PEER=HOST:PORT/],
    ['connect bad peer', { ...BASE, connect: 'API=127.0.0.1:1' }, {}, {}, /--connect \(entry 1\): the peer must be a service name/],
    ['connect own service', { ...BASE, connect: 'web=127.0.0.1:1' }, {}, {}, /cannot connect to its own service/],
    ['connect duplicate peer', { ...BASE, connect: ['api=127.0.0.1:1', 'api=127.0.0.1:2'] }, {}, {}, /--connect \(entry 2\): peer api is given twice/],
    ['connect bad address', { ...BASE, connect: 'api=nowhere' }, {}, {}, /--connect \(entry 1\) for api must be HOST:PORT/],
    ['connect not a string', { ...BASE, connect: [5] }, {}, {}, /--connect must be a list of PEER=HOST:PORT/],
    ['listener clash', { ...BASE, connect: 'api=127.0.0.1:7401' }, {}, {}, /--tunnel-listen and --connect api listen on the same address/],
    ['api clash', { ...BASE, api: '127.0.0.1:7401' }, {}, {}, /--tunnel-listen and --api listen on the same address/],
    ['bad log level', { ...BASE, logLevel: 'loud' }, {}, {}, /--log-level must be one of fatal, error, warn, info, debug, trace, silent/],
    ['no config file', { ...BASE, config: '/missing.json' }, {}, {}, /--config: cannot read \/missing\.json \(ENOENT\)/],
    ['config not an object', { ...BASE, config: '/c.json' }, {}, { '/c.json': '[1]' }, /config file \/c\.json must hold a JSON object/],
    ['config unknown key', { ...BASE, config: '/c.json' }, {}, { '/c.json': '{"servcie":"x"}' }, /config file \/c\.json has an unknown key "servcie"; the keys are the flag names/],
    ['config key twice', { ...BASE, config: '/c.json' }, {}, { '/c.json': '{"stateDir":"a","state-dir":"b"}' }, /gives "state-dir" twice/],
    ['file value wrong type', { ...BASE, service: undefined, config: '/c.json' }, {}, { '/c.json': '{"service": 7}' }, /"service" in \/c\.json must be a service name/],
    ['limits not object', { ...BASE, config: '/c.json' }, {}, { '/c.json': '{"limits": 5}' }, /"limits" in \/c\.json must be an object of limits/],
    ['unknown limit', { ...BASE, config: '/c.json' }, {}, { '/c.json': '{"limits": {"maxTunels": 5}}' }, /has an unknown limit "maxTunels"/],
    ['limit not integer', { ...BASE, config: '/c.json' }, {}, { '/c.json': '{"limits": {"sweepMs": 1.5}}' }, /sweepMs must be an integer from 1 to 86400000 \(milliseconds\)/],
    ['limit zero', { ...BASE, config: '/c.json' }, {}, { '/c.json': '{"limits": {"maxTunnels": 0}}' }, /maxTunnels must be an integer from 1 to 1000000/],
    ['limit too big', { ...BASE, config: '/c.json' }, {}, { '/c.json': '{"limits": {"highWaterBytes": 4294967296}}' }, /highWaterBytes must be an integer from 65536 to 1073741824 \(bytes\)/],
    ['backoff inverted', { ...BASE, config: '/c.json' }, {}, { '/c.json': '{"limits": {"reconnectMinMs": 5000, "reconnectMaxMs": 1000}}' }, /reconnectMinMs must not be larger than reconnectMaxMs/],
    ['key set wait past the handshake', { ...BASE, config: '/c.json' }, {}, { '/c.json': '{"limits": {"keySetWaitMs": 10000}}' }, /keySetWaitMs must be smaller than handshakeTimeoutMs/],
    ['config from env, empty name', BASE, { KEYMESH_CONFIG: '/c.json' }, { '/c.json': '' }, /config file \/c\.json \(KEYMESH_CONFIG\) is not valid JSON/],
  ]
  for (const [name, args, env, fileMap, expected] of cases) {
    t.match(configError(t, () => load(args, env, fileMap)), expected, name)
  }
})

t.test('an advertised URL makes a wildcard listener acceptable', async (t) => {
  const c = load({ ...BASE, tunnelListen: '0.0.0.0:7401', advertise: 'wss://web.internal:7401/v1/tunnel' })
  t.equal(c.advertise, 'wss://web.internal:7401/v1/tunnel')
  t.same(c.tunnelListen, { host: '0.0.0.0', port: 7401 })
})

t.test('the default readFile reads real files', async (t) => {
  const dir = t.testdir({ 'identity.pub': `${KEY_TEXT}\n`, 'token': `${TOKEN}\n` })
  chmodSync(join(dir, 'token'), 0o644)
  const loose = t.throws(() => loadAgentConfig({ args: { joinTokenFile: join(dir, 'token'), cpKey: KEY_TEXT, cp: 'http://127.0.0.1:7400', service: 'web', stateDir: dir }, env: {} }))
  t.match(loose, { code: 'AGENT_ERR_TOKEN_FILE_MODE', message: /--join-token-file: .*token is readable or writable by other users \(mode 0644\); run chmod 600 / })
  chmodSync(join(dir, 'token'), 0o600)
  const path = join(dir, 'agent.json')
  writeFileSync(path, JSON.stringify({ cpKeyFile: join(dir, 'identity.pub'), joinTokenFile: join(dir, 'token') }))
  const c = loadAgentConfig({ args: { config: path, cp: 'http://127.0.0.1:7400', service: 'web', stateDir: dir }, env: {} })
  t.same([...c.cpKey], [...KEY_BYTES])
  t.equal(c.joinToken, TOKEN)
})

t.test('HOST:PORT helpers', async (t) => {
  t.same(parseHostPort('example.com:80'), { host: 'example.com', port: 80 })
  t.same(parseHostPort('[fe80::1]:443'), { host: 'fe80::1', port: 443 })
  for (const bad of ['example.com', ':80', '[::1]', '[zz]:1', '[1.2.3.4]:1', 'a b:1', 'a/b:1', '1.2.3.4:99999', 'h:-1']) {
    t.equal(parseHostPort(bad), undefined, `refuses ${bad}`)
  }
  t.equal(formatHostPort({ host: '::1', port: 1 }), '[::1]:1')
  t.equal(formatHostPort({ host: 'a', port: 1 }), 'a:1')
  t.ok(isWildcardHost('0.0.0.0') && isWildcardHost('::') && !isWildcardHost('127.0.0.1'))
  t.ok(isLoopbackHost('127.0.0.1') && isLoopbackHost('::1') && isLoopbackHost('localhost') && !isLoopbackHost('10.0.0.1'))
})

t.test('a TLS control plane is trusted by a pinned fingerprint, else a CA file, else the default store', async (t) => {
  const https = { ...BASE, cp: 'https://kms.internal:7400' }
  const pem = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n'
  t.equal(load(https).cpTrust, undefined, 'neither: the default trust store')
  t.same(load({ ...https, cpFingerprint: `SHA256:${'AB'.repeat(32)}` }).cpTrust, { fingerprint: `sha256:${'ab'.repeat(32)}` })
  t.same(load(https, { KEYMESH_CA_FILE: '/etc/km/ca.pem' }, { '/etc/km/ca.pem': pem }).cpTrust, { ca: pem })
  const file = { '/etc/km/agent.json': JSON.stringify({ 'ca-file': '/etc/km/ca.pem', 'cp-fingerprint': `sha256:${'0'.repeat(64)}` }), '/etc/km/ca.pem': pem }
  t.same(load({ ...https, config: '/etc/km/agent.json' }, {}, file).cpTrust, { fingerprint: `sha256:${'0'.repeat(64)}` }, 'a pin wins; the CA is not consulted')
  t.match(configError(t, () => load({ ...BASE, cpFingerprint: `sha256:${'0'.repeat(64)}` })), /--cp-fingerprint verifies TLS, but no control-plane URL is https:\/\/ or wss:\/\//)
  t.match(configError(t, () => load({ ...https, cpFingerprint: 'sha256:00' })), /--cp-fingerprint must be sha256: and 64 hex digits/)
  t.match(configError(t, () => load({ ...https, caFile: '/etc/km/token' }, {}, { '/etc/km/token': TOKEN })), /--ca-file: \/etc\/km\/token does not hold a PEM certificate/)
  t.match(configError(t, () => load({ ...https, caFile: '/missing.pem' })), /--ca-file: cannot read \/missing\.pem \(ENOENT\)/)
})
