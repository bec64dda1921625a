// The control plane's TLS certificate: the operator's own (`--tls-cert` / `--tls-key`),
// or one made on the first start and kept in the data directory (DIR/tls.crt and
// DIR/tls.key, 0600, each written atomically).
//
// The made one is self-signed (RFC 5280 v3), ECDSA P-256 with SHA-256, valid for
// `validityDays` (default 365), for localhost, 127.0.0.1, ::1, the listen host (unless
// it is the any-address) and every `--tls-san`. It is not a CA (basicConstraints
// cA=false, keyUsage digitalSignature, extKeyUsage serverAuth): clients trust it by
// naming the file itself as their CA (`--ca-file DIR/tls.crt`) or by pinning its
// fingerprint, the SHA-256 of its DER, printed as `sha256:` and hex at every start.
// It is never renewed behind the operator's back (a new one would break every pin):
// within RENEW_WARNING_DAYS of its end every start warns, and renewing is removing the
// two files and restarting (docs/operations.md).
//
// The structures are @peculiar/asn1-x509's, loaded only to make a certificate (every
// CLI command imports this package's entry); the signature is node:crypto's.
import { createPrivateKey, generateKeyPairSync, randomBytes, sign, X509Certificate } from 'node:crypto'
import { existsSync, mkdirSync, readFileSync } from 'node:fs'
import { isIP } from 'node:net'
import { join } from 'node:path'
import { createSecureContext } from 'node:tls'
import type { Logger } from 'pino'
import type * as Asn from '@peculiar/asn1-x509'

import { certificateFingerprint, lockDir, writeFileAtomic, type Clock } from '../../../platform/src/index.js'
import { CP_LOCK_FILE } from '../bootstrap.js'
import { cpError } from '../errors.js'

export const TLS_CERT_FILE = 'tls.crt'
export const TLS_KEY_FILE = 'tls.key'
export const DEFAULT_TLS_VALIDITY_DAYS = 365
export const RENEW_WARNING_DAYS = 30

const DAY_MS = 86_400_000
const MAX_PEM_BYTES = 1024 * 1024
const ECDSA_WITH_SHA256 = '1.2.840.10045.4.3.2'
const COMMON_NAME = '2.5.4.3'
const SERVER_AUTH = '1.3.6.1.5.5.7.3.1'
const DNS_NAME = /^(?=.{1,253}$)[A-Za-z0-9*](?:[A-Za-z0-9-]{0,62})(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}))*$/

/** A certificate and key to serve, as startControlPlane takes them. */
export interface ServerTls {
  /** PEM: the certificate, then any intermediates. */
  readonly cert: string
  /** PEM: its private key. */
  readonly key: string
}

export interface LoadedTls extends ServerTls {
  readonly fingerprint: string
  /** Where it came from, for the start-up log. */
  readonly source: 'files' | 'data-dir' | 'created'
  readonly certPath: string
}

export interface TlsSetupOptions {
  readonly dataDir: string
  /** `--tls-cert` and `--tls-key`: both or neither. */
  readonly certFile?: string | undefined
  readonly keyFile?: string | undefined
  /** The listen host, named in a made certificate unless it is the any-address. */
  readonly host: string
  /** `--tls-san`: more DNS names or IP addresses for a made certificate. */
  readonly sans?: readonly string[]
  readonly clock: Clock
  readonly logger: Logger
  readonly validityDays?: number
}

/**
 * The certificate to serve: the operator's files, else DIR's, else a new one written
 * there (under the data directory's lock, so two first starts cannot write halves of
 * two pairs). Every problem is CP_ERR_TLS_CERT naming the file.
 */
export async function setupServerTls(o: TlsSetupOptions): Promise<LoadedTls> {
  if ((o.certFile === undefined) !== (o.keyFile === undefined)) throw cpError('CP_ERR_USAGE', '--tls-cert and --tls-key go together: give both, or neither for a certificate made in the data directory')
  const sans = tlsSans(o.host, o.sans ?? [])
  if (o.certFile !== undefined && o.keyFile !== undefined) return { ...loadPair(o.certFile, o.keyFile), source: 'files', certPath: o.certFile }
  const certPath = join(o.dataDir, TLS_CERT_FILE)
  const keyPath = join(o.dataDir, TLS_KEY_FILE)
  if (existsSync(certPath) || existsSync(keyPath)) {
    const loaded = { ...loadPair(certPath, keyPath), source: 'data-dir' as const, certPath }
    checkMadeCertificate(loaded, sans, o)
    return loaded
  }
  mkdirSync(o.dataDir, { recursive: true, mode: 0o700 })
  // The control plane's own lock, held only while the pair is written; bootstrap takes it again.
  const lock = lockDir(o.dataDir, { file: CP_LOCK_FILE, owner: 'control plane', error: (detail, cause) => cpError('CP_ERR_DATA_DIR', detail, { cause }) })
  try {
    if (existsSync(certPath)) return { ...loadPair(certPath, keyPath), source: 'data-dir', certPath }
    const made = await selfSignedCertificate({ sans, now: o.clock.now(), validityDays: o.validityDays ?? DEFAULT_TLS_VALIDITY_DAYS })
    // The key first: a certificate on disk always has its key beside it.
    writeFileAtomic(keyPath, made.key, 0o600)
    writeFileAtomic(certPath, made.cert, 0o600)
    const fingerprint = fingerprintOf(made.cert, certPath)
    o.logger.info({ path: certPath, fingerprint, sans, days: o.validityDays ?? DEFAULT_TLS_VALIDITY_DAYS }, 'created a self-signed TLS certificate; clients trust it with --ca-file or pin its fingerprint')
    return { ...made, fingerprint, source: 'created', certPath }
  } finally {
    lock.release()
  }
}

/** The names a made certificate carries: the loopback names, the listen host, the extras; each once. */
export function tlsSans(host: string, extra: readonly string[]): string[] {
  const bare = host.replace(/^\[|\]$/g, '')
  const wildcard = bare === '0.0.0.0' || /^[0:]+$/.test(bare)
  const all = ['localhost', '127.0.0.1', '::1', ...(wildcard ? [] : [bare]), ...extra.map((s) => s.trim().replace(/^\[|\]$/g, ''))]
  for (const name of all) {
    if (isIP(name) === 0 && !DNS_NAME.test(name)) throw cpError('CP_ERR_USAGE', `--tls-san ${JSON.stringify(name.slice(0, 80))} is neither a DNS name nor an IP address`)
  }
  return [...new Set(all)]
}

/** A new self-signed server certificate and its key, both PEM (see the file comment). */
export async function selfSignedCertificate(o: { sans: readonly string[]; now: number; validityDays: number; random?: (n: number) => Uint8Array }): Promise<ServerTls> {
  const asn = await import('@peculiar/asn1-x509')
  const { AsnConvert, OctetString } = await import('@peculiar/asn1-schema')
  const extension = (id: string, critical: boolean, value: object): Asn.Extension =>
    new asn.Extension({ extnID: id, critical, extnValue: new OctetString(AsnConvert.serialize(value)) })
  const { publicKey, privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' })
  const serial = Buffer.from((o.random ?? randomBytes)(16))
  serial[0] = ((serial[0] as number) & 0x7f) | 0x01 // positive, and no leading zero byte to strip
  const algorithm = new asn.AlgorithmIdentifier({ algorithm: ECDSA_WITH_SHA256 })
  const name = new asn.Name([new asn.RelativeDistinguishedName([
    new asn.AttributeTypeAndValue({ type: COMMON_NAME, value: new asn.AttributeValue({ utf8String: 'keymesh control plane' }) }),
  ])])
  // Backdated a minute: a client whose clock is slightly behind still accepts it.
  const notBefore = new Date(o.now - 60_000)
  const notAfter = new Date(o.now + o.validityDays * DAY_MS)
  const tbs = new asn.TBSCertificate({
    version: asn.Version.v3,
    serialNumber: new Uint8Array(serial).buffer,
    signature: algorithm,
    issuer: name,
    validity: new asn.Validity({ notBefore, notAfter }),
    subject: name,
    subjectPublicKeyInfo: AsnConvert.parse(publicKey.export({ type: 'spki', format: 'der' }), asn.SubjectPublicKeyInfo),
    extensions: new asn.Extensions([
      extension(asn.id_ce_basicConstraints, true, new asn.BasicConstraints({ cA: false })),
      extension(asn.id_ce_keyUsage, true, new asn.KeyUsage(asn.KeyUsageFlags.digitalSignature)),
      extension(asn.id_ce_extKeyUsage, false, new asn.ExtendedKeyUsage([SERVER_AUTH])),
      extension(asn.id_ce_subjectAltName, false, new asn.SubjectAlternativeName(o.sans.map((s) => new asn.GeneralName(isIP(s) === 0 ? { dNSName: s } : { iPAddress: s })))),
    ]),
  })
  const signature = sign('sha256', Buffer.from(AsnConvert.serialize(tbs)), { key: privateKey, dsaEncoding: 'der' })
  const der = Buffer.from(AsnConvert.serialize(new asn.Certificate({ tbsCertificate: tbs, signatureAlgorithm: algorithm, signatureValue: new Uint8Array(signature).buffer })))
  return { cert: pem('CERTIFICATE', der), key: privateKey.export({ type: 'pkcs8', format: 'pem' }) as string }
}

function pem(label: string, der: Buffer): string {
  const lines = der.toString('base64').match(/.{1,64}/g) ?? []
  return `-----BEGIN ${label}-----\n${lines.join('\n')}\n-----END ${label}-----\n`
}

/** Reads and checks a pair: both files readable PEM, the key the certificate's. */
function loadPair(certPath: string, keyPath: string): ServerTls & { fingerprint: string } {
  const cert = readPem(certPath, 'certificate')
  const key = readPem(keyPath, 'private key')
  try {
    createPrivateKey(key)
  } catch (cause) {
    throw cpError('CP_ERR_TLS_CERT', `${keyPath} does not hold a PEM private key (an encrypted key is not supported)`, { cause })
  }
  return { cert, key, fingerprint: checkServerTls({ cert, key }, certPath, keyPath) }
}

function readPem(path: string, what: string): string {
  let text: string
  try {
    const bytes = readFileSync(path)
    if (bytes.length > MAX_PEM_BYTES) throw cpError('CP_ERR_TLS_CERT', `${path} is larger than ${MAX_PEM_BYTES} bytes: not a ${what}`)
    text = bytes.toString('utf8')
  } catch (cause) {
    if ((cause as { code?: string }).code === 'CP_ERR_TLS_CERT') throw cause
    const code = (cause as NodeJS.ErrnoException).code
    const why = code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : code ?? 'cannot be read'
    throw cpError('CP_ERR_TLS_CERT', `TLS ${what} ${path}: ${why}`, { cause })
  }
  return text
}

/** Checks that `tls` can be served (a certificate and its own key); its fingerprint. CP_ERR_TLS_CERT otherwise. */
export function checkServerTls(tls: ServerTls, certFrom = 'the TLS certificate', keyFrom = 'the TLS key'): string {
  const fingerprint = fingerprintOf(tls.cert, certFrom)
  try {
    createSecureContext({ cert: tls.cert, key: tls.key })
  } catch (cause) {
    const code = (cause as { code?: string }).code ?? 'rejected'
    const mismatch = /KEY_VALUES_MISMATCH/.test(code)
    throw cpError('CP_ERR_TLS_CERT', mismatch ? `${keyFrom} is not the private key of the certificate in ${certFrom}` : `${certFrom} and ${keyFrom} cannot be served (${code})`, { cause })
  }
  return fingerprint
}

/** The fingerprint of the first certificate in `certPem`; CP_ERR_TLS_CERT when there is none. */
export function fingerprintOf(certPem: string, from: string): string {
  try {
    return certificateFingerprint(new X509Certificate(certPem).raw)
  } catch (cause) {
    throw cpError('CP_ERR_TLS_CERT', `${from} does not hold a PEM certificate`, { cause })
  }
}

/** Warns about a made certificate that is ending, or no longer names what it should. */
function checkMadeCertificate(tls: LoadedTls, sans: readonly string[], o: TlsSetupOptions): void {
  const x = new X509Certificate(tls.cert)
  const now = o.clock.now()
  const end = Date.parse(x.validTo)
  const renew = `remove ${TLS_CERT_FILE} and ${TLS_KEY_FILE} from the data directory and restart to make a new one (then give clients the new file or fingerprint)`
  if (end <= now) o.logger.error({ path: tls.certPath, validTo: x.validTo }, `the TLS certificate has expired and clients refuse it: ${renew}`)
  else if (end - now < RENEW_WARNING_DAYS * DAY_MS) o.logger.warn({ path: tls.certPath, validTo: x.validTo }, `the TLS certificate expires soon: ${renew}`)
  const named = (x.subjectAltName ?? '').split(', ').map((s) => s.replace(/^(DNS|IP Address):/, ''))
  const missing = sans.filter((s) => !named.includes(isIP(s) === 6 ? expandV6(s) : s))
  if (missing.length > 0) o.logger.warn({ path: tls.certPath, missing }, `the TLS certificate does not name ${missing.join(', ')}: ${renew}`)
}

/** As node prints an IPv6 SAN: eight groups, no zero compression. */
function expandV6(ip: string): string {
  const [head = '', tail = ''] = ip.split('::')
  const h = head === '' ? [] : head.split(':')
  const t = tail === '' ? [] : ip.includes('::') ? tail.split(':') : []
  const groups = ip.includes('::') ? [...h, ...Array(8 - h.length - t.length).fill('0'), ...t] : ip.split(':')
  return groups.map((g) => g.replace(/^0+(?=.)/, '').toUpperCase()).join(':')
}
