// How the CLI and the agents check the control plane's TLS certificate, in one place.
//
// Two ways to trust it, as the operator chose:
//   - a CA (`--ca-file`, or the default trust store when none is given): the chain must
//     verify and the certificate must name the host the URL names;
//   - a pinned fingerprint (`--cp-fingerprint sha256:…`): the SHA-256 of the
//     certificate's DER must be that one; chain and name are not looked at (a pin says
//     more than either).
// Contract: `connectTls` hands back a socket only once the certificate has passed, so
// nothing (a request line, a bearer token, a WebSocket upgrade) is written to a server
// that has not. Every refusal is a TlsRefusal whose `kind` says why and whose message
// names the certificate's fingerprint (and the pinned one), so an operator can tell a
// self-signed certificate from a wrong pin from a wrong host name.
import { createHash } from 'node:crypto'
import { isIP, type Socket } from 'node:net'
import { connect, type ConnectionOptions, type PeerCertificate, type TLSSocket } from 'node:tls'

export interface TlsTrust {
  /** PEM of the CA certificates to trust instead of the default store (`--ca-file`). */
  readonly ca?: string | Buffer
  /** `sha256:` and 64 hex digits: the only certificate to accept (`--cp-fingerprint`). */
  readonly fingerprint?: string
}

export type TlsRefusalKind = 'unknown-ca' | 'fingerprint' | 'hostname' | 'expired' | 'not-yet-valid' | 'not-tls' | 'invalid'

/** The control plane's certificate was not accepted, or the port does not speak TLS. */
export class TlsRefusal extends Error {
  readonly kind: TlsRefusalKind
  /** The certificate's fingerprint, when one was presented. */
  readonly actual: string | undefined
  /** The pinned fingerprint, for `fingerprint`. */
  readonly expected: string | undefined
  constructor(kind: TlsRefusalKind, message: string, fingerprints: { actual?: string | undefined; expected?: string | undefined } = {}, options?: { cause?: unknown }) {
    super(message, options)
    this.name = 'TlsRefusal'
    this.kind = kind
    this.actual = fingerprints.actual
    this.expected = fingerprints.expected
  }
}

/** What to tell an operator whose client does not trust the certificate. */
export const TRUST_HINT = 'trust it with --ca-file DATA_DIR/tls.crt (KEYMESH_CA_FILE) or pin it with --cp-fingerprint (KEYMESH_CP_FINGERPRINT)'

const FINGERPRINT_RE = /^sha256:[0-9a-f]{64}$/

/** `sha256:` and the lower-case hex SHA-256 of a certificate's DER. */
export function certificateFingerprint(der: Uint8Array): string {
  return `sha256:${createHash('sha256').update(der).digest('hex')}`
}

/**
 * A fingerprint as an operator may paste it (`sha256:AB:CD:…`, upper or lower case, with
 * or without colons, as openssl prints it) in the one form compared; undefined when it
 * is not 32 bytes of SHA-256.
 */
export function normalizeFingerprint(text: string): string | undefined {
  const t = text.trim().toLowerCase()
  const hex = (t.startsWith('sha256:') ? t.slice(7) : t).replace(/:/g, '')
  const out = `sha256:${hex}`
  return FINGERPRINT_RE.test(out) ? out : undefined
}

export interface TlsTarget {
  readonly host: string
  readonly port: number
}

/**
 * Opens a TLS connection and calls back with the socket once its certificate passed
 * `trust`, or with a TlsRefusal (or the connection's own error: ECONNREFUSED …).
 * Shaped as node's `createConnection(options, callback)`, so http.request and ws use it
 * as is; it returns undefined, which tells them to wait for the callback.
 */
export function connectTls(trust: TlsTrust, options: ConnectionOptions & TlsTarget, callback: (err: Error | null, socket?: TLSSocket) => void): undefined {
  const host = options.host.replace(/^\[|\]$/g, '')
  const pin = trust.fingerprint
  const socket = connect({
    ...options,
    host,
    // The check is made below, before the socket is handed over: with a pin the chain
    // does not matter, and either way the refusal can then name the fingerprint.
    rejectUnauthorized: false,
    ...(trust.ca !== undefined ? { ca: trust.ca } : {}),
    ...(isIP(host) === 0 ? { servername: host } : {}),
  })
  let done = false
  const finish = (err: Error | null): void => {
    if (done) return
    done = true
    socket.off('error', onError)
    if (err === null) return callback(null, socket)
    socket.destroy()
    callback(err)
  }
  const onError = (err: NodeJS.ErrnoException): void => finish(notTls(err, options) ?? err)
  socket.once('error', onError)
  socket.once('secureConnect', () => finish(verdict(trust, socket, host, pin)))
  return undefined
}

/** A createConnection for http(s).request and ws that verifies with `trust` (connectTls). */
export function tlsConnector(trust: TlsTrust): (options: ConnectionOptions & TlsTarget, callback: (err: Error | null, socket?: Socket) => void) => undefined {
  return (options, callback) => connectTls(trust, options, callback)
}

function verdict(trust: TlsTrust, socket: TLSSocket, host: string, pin: string | undefined): TlsRefusal | null {
  const cert = socket.getPeerCertificate()
  const actual = cert.raw === undefined ? undefined : certificateFingerprint(cert.raw)
  if (pin !== undefined) {
    // A fingerprint is public: a plain comparison.
    if (actual === pin) return null
    return new TlsRefusal('fingerprint', `the control plane's certificate is ${actual ?? 'missing'}, not the pinned ${pin} (--cp-fingerprint): a different certificate, or another server`, { actual, expected: pin })
  }
  if (socket.authorized) return null
  const code = String(socket.authorizationError ?? 'UNKNOWN')
  const from = trust.ca === undefined ? 'a CA of the default trust store' : 'the CA of --ca-file'
  switch (code) {
    case 'DEPTH_ZERO_SELF_SIGNED_CERT':
    case 'SELF_SIGNED_CERT_IN_CHAIN':
    case 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY':
    case 'UNABLE_TO_GET_ISSUER_CERT':
    case 'UNABLE_TO_VERIFY_LEAF_SIGNATURE':
    case 'CERT_UNTRUSTED':
    case 'CERT_SIGNATURE_FAILURE':
      return new TlsRefusal('unknown-ca', `the control plane's certificate (${actual}) is not signed by ${from} (${code}); ${TRUST_HINT}`, { actual })
    case 'ERR_TLS_CERT_ALTNAME_INVALID':
      return new TlsRefusal('hostname', `the control plane's certificate (${actual}) is not for ${host}: it names ${names(cert)}; connect by one of those names, or give the control plane --tls-san ${host} and a new certificate`, { actual })
    case 'CERT_HAS_EXPIRED':
      return new TlsRefusal('expired', `the control plane's certificate (${actual}) expired on ${cert.valid_to}; renew it (docs/operations.md, TLS)`, { actual })
    case 'CERT_NOT_YET_VALID':
      return new TlsRefusal('not-yet-valid', `the control plane's certificate (${actual}) is valid only from ${cert.valid_from}: check this machine's clock`, { actual })
    default:
      return new TlsRefusal('invalid', `the control plane's certificate (${actual}) was not accepted (${code})`, { actual })
  }
}

function names(cert: PeerCertificate): string {
  return cert.subjectaltname === undefined || cert.subjectaltname === '' ? 'no subject alternative name' : cert.subjectaltname
}

/** OpenSSL's answer to a server that sent something other than a TLS handshake. */
function notTls(err: NodeJS.ErrnoException, target: TlsTarget): TlsRefusal | undefined {
  const code = err.code ?? ''
  const openssl = /^ERR_SSL_(WRONG_VERSION_NUMBER|PACKET_LENGTH_TOO_LONG|UNKNOWN_PROTOCOL|RECORD_LAYER_FAILURE)$/.test(code) || (code === 'EPROTO' && /wrong version number|packet length too long/i.test(err.message))
  if (!openssl) return undefined
  return new TlsRefusal('not-tls', `${target.host}:${target.port} does not speak TLS; if the control plane runs with --insecure-http, use an http:// URL`, {}, { cause: err })
}

/**
 * Whether `target` answers a TLS handshake (any certificate): the way to tell a client
 * that sent plain HTTP to a TLS port, which only sees the connection drop, what happened.
 */
export function speaksTls(target: TlsTarget, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const host = target.host.replace(/^\[|\]$/g, '')
    const socket = connect({ host, port: target.port, rejectUnauthorized: false, ...(isIP(host) === 0 ? { servername: host } : {}) })
    const settle = (yes: boolean): void => {
      clearTimeout(timer)
      socket.destroy()
      resolve(yes)
    }
    const timer = setTimeout(() => settle(false), timeoutMs)
    socket.once('secureConnect', () => settle(true))
    socket.once('error', () => settle(false))
  })
}
