// PKCS#11 custody of the master key: the 32-byte master key is encrypted
// ("wrapped") by an AES-256 key that lives inside an HSM and never leaves it, so
// the control plane can restart unattended: at start it asks the HSM to decrypt
// the wrapped key, and whoever copies the data directory gets only the blob.
//
// Config (validated by pkcs11Config, once, at the edge):
//   module    path of the vendor's PKCS#11 library (SoftHSM2: /usr/lib/softhsm/libsofthsm2.so)
//   slot      the slot ID the module reports, or
//   tokenLabel  the token's label (exactly one of the two)
//   pinFile   the user PIN, in a file only its owner may read or write (0600),
//             as readMasterKeyFile demands of a key file; one trailing newline is ignored
//   keyLabel  CKA_LABEL of the AES key on the token
//
// The HSM key (pkcs11CreateKey): CKK_AES, 32 bytes, token object, private,
// sensitive, not extractable, usable only to encrypt and decrypt. A key found on
// the token that is extractable or not sensitive is refused: its bytes could leave
// the HSM, which defeats the point.
//
// Blob format, version 1 (61 bytes):
//   0x01 || IV (12 random bytes, node:crypto) || AES-256-GCM(master key) (32 bytes) || tag (16 bytes)
//   AAD = "keymesh master key v1"; the GCM runs inside the HSM (CKM_AES_GCM).
// A random 96-bit IV is safe here: the key wraps one master key per `init`, far
// below NIST SP 800-38D's 2^32 bound for random IVs. The IV is chosen by us, not
// the token, because some HSMs generate it themselves and some refuse to; a token
// that insists on its own IV (FIPS mode on some devices) is not supported yet.
//
// Every call is one whole PKCS#11 conversation: C_Initialize, open a session,
// C_Login, the work, then C_Logout, C_CloseSession, C_Finalize — in `finally`,
// so an error leaves no session or login behind. The calls are synchronous and
// never interleave within a process, so one process may use several tokens (and
// SoftHSM reads SOFTHSM2_CONF at each C_Initialize). pkcs11js is imported on
// first use, so importing this module (the CLI does) loads no native addon.
//
// Errors: CP_ERR_PKCS11 for anything about reaching or using the HSM (module,
// slot, PIN, key), one line naming what to fix, never the PIN; CP_ERR_UNSEAL when
// the blob does not open under the key (wrong key, or the blob was altered).
//
// How to wire it (for the sealed control plane):
//   - `init --pkcs11-module M (--pkcs11-slot N | --pkcs11-token-label L)
//     --pkcs11-pin-file F --pkcs11-key-label K [--pkcs11-create-key]`: build the
//     config with pkcs11Config (it throws CP_ERR_PKCS11 on bad flags), call
//     pkcs11CreateKey when asked, then pkcs11Wrap(cfg, masterKey) and store the blob
//     and the config (without the PIN: only the pin file's path) in the data
//     directory. Keep the flags' names in the error messages you add.
//   - at start, with that config present: pkcs11Unwrap(cfg, blob) gives the master
//     key; on CP_ERR_PKCS11 (HSM unreachable, PIN refused) stay sealed and log the
//     error's message, which says why; on CP_ERR_UNSEAL refuse to start (the blob
//     or the key is not the one the data was sealed under). Zero the key when done.
import { closeSync, fstatSync, openSync, readFileSync } from 'node:fs'

import { nodeRandom, type RandomSource } from '../../../protocol/src/index.js'
import { cpError } from '../errors.js'
import { MASTER_KEY_BYTES } from '../seal.js'

type Pkcs11js = typeof import('pkcs11js')
type Pkcs11 = InstanceType<Pkcs11js['PKCS11']>
type Handle = Buffer

export interface Pkcs11Config {
  /** Path of the PKCS#11 module (.so). */
  readonly module: string
  /** Slot ID, as the module reports it; exactly one of slot and tokenLabel. */
  readonly slot?: number
  /** Token label; exactly one of slot and tokenLabel. */
  readonly tokenLabel?: string
  /** File holding the user PIN; mode 0600 or stricter. */
  readonly pinFile: string
  /** CKA_LABEL of the AES-256 wrapping key. */
  readonly keyLabel: string
}

export const PKCS11_BLOB_VERSION = 1
const IV_BYTES = 12
const TAG_BYTES = 16
export const PKCS11_BLOB_BYTES = 1 + IV_BYTES + MASTER_KEY_BYTES + TAG_BYTES
const AAD = Buffer.from('keymesh master key v1')
const AES_KEY_BYTES = 32
/** PKCS#11 labels are UTF-8 strings; tokens pad theirs to 32 bytes, keys have no fixed limit. */
const MAX_LABEL_BYTES = 128
/** No token takes a PIN this long; a bigger file is the wrong file. */
const MAX_PIN_BYTES = 256

/** Checks the shape of a config (not the token: that takes a call) and freezes it. */
export function pkcs11Config(c: Pkcs11Config): Pkcs11Config {
  if (typeof c.module !== 'string' || c.module === '') throw cpError('CP_ERR_PKCS11', 'give the PKCS#11 module path (--pkcs11-module)')
  if ((c.slot === undefined) === (c.tokenLabel === undefined)) {
    throw cpError('CP_ERR_PKCS11', 'give exactly one of --pkcs11-slot and --pkcs11-token-label')
  }
  if (c.slot !== undefined && (!Number.isSafeInteger(c.slot) || c.slot < 0)) {
    throw cpError('CP_ERR_PKCS11', `--pkcs11-slot must be a slot ID (a non-negative integer), not ${String(c.slot)}`)
  }
  if (c.tokenLabel !== undefined) checkLabel(c.tokenLabel, '--pkcs11-token-label', 32)
  if (typeof c.pinFile !== 'string' || c.pinFile === '') throw cpError('CP_ERR_PKCS11', 'give the file holding the PIN (--pkcs11-pin-file)')
  checkLabel(c.keyLabel, '--pkcs11-key-label', MAX_LABEL_BYTES)
  return Object.freeze({
    module: c.module,
    ...(c.slot !== undefined ? { slot: c.slot } : {}),
    ...(c.tokenLabel !== undefined ? { tokenLabel: c.tokenLabel } : {}),
    pinFile: c.pinFile,
    keyLabel: c.keyLabel,
  })
}

function checkLabel(label: unknown, flag: string, maxBytes: number): void {
  if (typeof label !== 'string' || label.trim() === '' || label !== label.trim()) {
    throw cpError('CP_ERR_PKCS11', `${flag} must be a non-empty label without leading or trailing spaces`)
  }
  if (Buffer.byteLength(label) > maxBytes) throw cpError('CP_ERR_PKCS11', `${flag} is longer than ${maxBytes} bytes`)
}

/**
 * Reads the PIN after checking that only its owner can read the file. The PIN is
 * a JS string when it reaches C_Login (pkcs11js takes no buffer), which cannot be
 * zeroed; the file's bytes are.
 */
export function readPinFile(path: string): string {
  let fd: number
  try {
    fd = openSync(path, 'r')
  } catch (cause) {
    throw cpError('CP_ERR_PKCS11', `cannot read the PIN file ${path} (--pkcs11-pin-file)`, { cause })
  }
  let bytes: Buffer
  try {
    const st = fstatSync(fd)
    if (!st.isFile()) throw cpError('CP_ERR_PKCS11', `the PIN file ${path} is not a regular file`)
    const mode = st.mode & 0o777
    if ((mode & 0o077) !== 0) {
      throw cpError(
        'CP_ERR_PKCS11',
        `the PIN file ${path} has mode ${mode.toString(8).padStart(4, '0')}; it must not be accessible by group or others (chmod 600 ${path})`,
      )
    }
    if (st.size > MAX_PIN_BYTES) throw cpError('CP_ERR_PKCS11', `the PIN file ${path} is larger than ${MAX_PIN_BYTES} bytes; is it the right file?`)
    bytes = readFileSync(fd)
  } finally {
    closeSync(fd)
  }
  try {
    const pin = bytes.toString('utf8').replace(/\r?\n$/, '')
    if (pin === '') throw cpError('CP_ERR_PKCS11', `the PIN file ${path} is empty`)
    return pin
  } finally {
    bytes.fill(0)
  }
}

/** Pure: the version-1 blob from its parts. */
export function encodePkcs11Blob(iv: Uint8Array, sealed: Uint8Array): Uint8Array {
  const blob = new Uint8Array(PKCS11_BLOB_BYTES)
  blob[0] = PKCS11_BLOB_VERSION
  blob.set(iv, 1)
  blob.set(sealed, 1 + IV_BYTES)
  return blob
}

/** Pure: the parts of a version-1 blob; CP_ERR_UNSEAL for anything else. */
export function decodePkcs11Blob(blob: Uint8Array): { iv: Uint8Array; sealed: Uint8Array } {
  if (blob.length !== PKCS11_BLOB_BYTES) {
    throw cpError('CP_ERR_UNSEAL', `the PKCS#11-wrapped master key is ${blob.length} bytes, expected ${PKCS11_BLOB_BYTES}`)
  }
  if (blob[0] !== PKCS11_BLOB_VERSION) {
    throw cpError('CP_ERR_UNSEAL', `the PKCS#11-wrapped master key has version ${String(blob[0])}; this keymesh reads version ${PKCS11_BLOB_VERSION}`)
  }
  return { iv: blob.subarray(1, 1 + IV_BYTES), sealed: blob.subarray(1 + IV_BYTES) }
}

/** Creates the AES-256 wrapping key on the token; refuses a label already in use. */
export async function pkcs11CreateKey(cfg: Pkcs11Config): Promise<void> {
  await withSession(cfg, true, (p, session, c) => {
    const found = findKeys(p, session, c)
    if (found.length > 0) {
      throw cpError('CP_ERR_PKCS11', `a key labelled "${c.keyLabel}" already exists on the token; choose another --pkcs11-key-label, or drop --pkcs11-create-key to use it`)
    }
    call(c, 'C_GenerateKey', () =>
      p.C_GenerateKey(session, { mechanism: c.k.CKM_AES_KEY_GEN }, [
        { type: c.k.CKA_CLASS, value: c.k.CKO_SECRET_KEY },
        { type: c.k.CKA_KEY_TYPE, value: c.k.CKK_AES },
        { type: c.k.CKA_VALUE_LEN, value: AES_KEY_BYTES },
        { type: c.k.CKA_LABEL, value: c.keyLabel },
        { type: c.k.CKA_TOKEN, value: true },
        { type: c.k.CKA_PRIVATE, value: true },
        { type: c.k.CKA_SENSITIVE, value: true },
        { type: c.k.CKA_EXTRACTABLE, value: false },
        { type: c.k.CKA_ENCRYPT, value: true },
        { type: c.k.CKA_DECRYPT, value: true },
        { type: c.k.CKA_WRAP, value: false },
        { type: c.k.CKA_UNWRAP, value: false },
        { type: c.k.CKA_SIGN, value: false },
        { type: c.k.CKA_VERIFY, value: false },
        { type: c.k.CKA_DERIVE, value: false },
      ]),
    )
  })
}

/** Encrypts the 32-byte master key under the HSM key; returns the version-1 blob. */
export async function pkcs11Wrap(cfg: Pkcs11Config, secret: Uint8Array, random: RandomSource = nodeRandom): Promise<Uint8Array> {
  if (secret.length !== MASTER_KEY_BYTES) throw cpError('CP_ERR_PKCS11', `can wrap only a ${MASTER_KEY_BYTES}-byte master key, not ${secret.length} bytes`)
  const iv = random(IV_BYTES)
  return withSession(cfg, false, (p, session, c) => {
    const key = wrappingKey(p, session, c)
    const input = Buffer.from(secret)
    const output = Buffer.alloc(MASTER_KEY_BYTES + TAG_BYTES)
    try {
      call(c, 'C_EncryptInit', () => p.C_EncryptInit(session, gcm(c.k, iv), key))
      const sealed = call(c, 'C_Encrypt', () => p.C_Encrypt(session, input, output))
      if (sealed.length !== MASTER_KEY_BYTES + TAG_BYTES) {
        throw cpError('CP_ERR_PKCS11', `the token returned ${sealed.length} bytes for AES-GCM, expected ${MASTER_KEY_BYTES + TAG_BYTES}; does it support CKM_AES_GCM with a caller's IV?`)
      }
      return encodePkcs11Blob(iv, sealed)
    } finally {
      input.fill(0)
    }
  })
}

/** Decrypts a blob from pkcs11Wrap inside the HSM; the caller zeroes the key it gets. */
export async function pkcs11Unwrap(cfg: Pkcs11Config, blob: Uint8Array): Promise<Uint8Array> {
  const { iv, sealed } = decodePkcs11Blob(blob)
  return withSession(cfg, false, (p, session, c) => {
    const key = wrappingKey(p, session, c)
    const output = Buffer.alloc(sealed.length)
    try {
      call(c, 'C_DecryptInit', () => p.C_DecryptInit(session, gcm(c.k, iv), key))
      let plain: Buffer
      try {
        plain = p.C_Decrypt(session, Buffer.from(sealed), output)
      } catch (cause) {
        // Tokens differ in what they answer for a failed tag (CKR_ENCRYPTED_DATA_INVALID,
        // SoftHSM: CKR_GENERAL_ERROR); a reachable token that found the key and
        // then fails here has refused the blob.
        throw cpError('CP_ERR_UNSEAL', `the wrapped master key does not open with the HSM key labelled "${c.keyLabel}" (another key, or the blob was altered)`, { cause })
      }
      // GCM gives back as many bytes as it was given less the tag: MASTER_KEY_BYTES.
      return new Uint8Array(plain)
    } finally {
      output.fill(0)
    }
  })
}

// --- the PKCS#11 conversation ---------------------------------------------------

interface Conversation {
  readonly k: Pkcs11js
  readonly keyLabel: string
  /** For messages: which token this is. */
  readonly where: string
}

let loaded: Promise<Pkcs11js> | undefined

async function loadPkcs11js(): Promise<Pkcs11js> {
  loaded ??= import('pkcs11js').then((m) => (m as unknown as { default: Pkcs11js }).default)
  return loaded
}

/** The name of a PKCS#11 return value (CKR_...), or the native message. */
function ckr(e: unknown): string {
  return e instanceof Error ? e.message : String(e)
}

function call<T>(c: Conversation, fn: string, f: () => T): T {
  try {
    return f()
  } catch (cause) {
    throw cpError('CP_ERR_PKCS11', `${fn} failed on ${c.where}: ${ckr(cause)}`, { cause })
  }
}

async function withSession<T>(cfg: Pkcs11Config, rw: boolean, work: (p: Pkcs11, session: Handle, c: Conversation) => T): Promise<T> {
  const k = await loadPkcs11js()
  const pin = readPinFile(cfg.pinFile)
  const p = new k.PKCS11()
  try {
    p.load(cfg.module)
  } catch (cause) {
    throw cpError('CP_ERR_PKCS11', `cannot load the PKCS#11 module ${cfg.module} (--pkcs11-module): ${ckr(cause)}`, { cause })
  }
  let initialized = false
  let session: Handle | undefined
  let loggedIn = false
  // The first error wins; the clean-up's own failures must not hide it.
  try {
    try {
      p.C_Initialize()
      initialized = true
    } catch (cause) {
      // Another user of the same module in this process initialised it: use it, and leave it to them to finalise.
      if ((cause as { code?: number }).code !== k.CKR_CRYPTOKI_ALREADY_INITIALIZED) {
        throw cpError('CP_ERR_PKCS11', `C_Initialize of ${cfg.module} failed: ${ckr(cause)}`, { cause })
      }
    }
    const slot = findSlot(p, k, cfg)
    const c: Conversation = { k, keyLabel: cfg.keyLabel, where: cfg.slot !== undefined ? `slot ${cfg.slot}` : `the token labelled "${cfg.tokenLabel as string}"` }
    session = call(c, 'C_OpenSession', () => p.C_OpenSession(slot, k.CKF_SERIAL_SESSION | (rw ? k.CKF_RW_SESSION : 0)))
    const s = session
    try {
      p.C_Login(s, k.CKU_USER, pin)
      loggedIn = true
    } catch (cause) {
      const code = (cause as { code?: number }).code
      if (code === k.CKR_USER_ALREADY_LOGGED_IN) {
        // Logins are per application, not per session: someone else in this process is logged in.
      } else if (code === k.CKR_PIN_INCORRECT) {
        throw cpError('CP_ERR_PKCS11', `${c.where} refused the PIN in ${cfg.pinFile} (CKR_PIN_INCORRECT); fix the file before retrying: repeated wrong PINs lock the token`, { cause })
      } else {
        throw cpError('CP_ERR_PKCS11', `C_Login on ${c.where} failed: ${ckr(cause)}; check the PIN file ${cfg.pinFile}`, { cause })
      }
    }
    return work(p, s, c)
  } finally {
    if (session !== undefined) {
      if (loggedIn) quietly(() => p.C_Logout(session as Handle))
      quietly(() => p.C_CloseSession(session as Handle))
    }
    if (initialized) quietly(() => p.C_Finalize())
    quietly(() => p.close())
  }
}

function quietly(f: () => void): void {
  try {
    f()
  } catch {
    // Clean-up after the work: a failure here changes nothing the caller can act on.
  }
}

function slotId(h: Handle): bigint {
  return h.length >= 8 ? h.readBigUInt64LE(0) : BigInt(h.readUInt32LE(0))
}

function findSlot(p: Pkcs11, k: Pkcs11js, cfg: Pkcs11Config): Handle {
  let slots: Handle[]
  try {
    slots = p.C_GetSlotList(true)
  } catch (cause) {
    throw cpError('CP_ERR_PKCS11', `C_GetSlotList of ${cfg.module} failed: ${ckr(cause)}`, { cause })
  }
  const initialized = slots.filter((s) => (p.C_GetTokenInfo(s).flags & k.CKF_TOKEN_INITIALIZED) !== 0)
  if (cfg.slot !== undefined) {
    const want = BigInt(cfg.slot)
    const slot = initialized.find((s) => slotId(s) === want)
    if (!slot) {
      const ids = initialized.map((s) => slotId(s).toString()).join(', ') || 'none'
      throw cpError('CP_ERR_PKCS11', `no initialised token in slot ${cfg.slot} of ${cfg.module} (slots with one: ${ids}); is the HSM reachable? if so, fix --pkcs11-slot`)
    }
    return slot
  }
  const matching = initialized.filter((s) => p.C_GetTokenInfo(s).label.trimEnd() === cfg.tokenLabel)
  if (matching.length === 0) throw cpError('CP_ERR_PKCS11', `no token labelled "${cfg.tokenLabel as string}" in ${cfg.module}; is the HSM reachable? if so, fix --pkcs11-token-label`)
  if (matching.length > 1) throw cpError('CP_ERR_PKCS11', `${matching.length} tokens are labelled "${cfg.tokenLabel as string}"; name one with --pkcs11-slot instead`)
  return matching[0] as Handle
}

function findKeys(p: Pkcs11, session: Handle, c: Conversation): Handle[] {
  const template = [
    { type: c.k.CKA_CLASS, value: c.k.CKO_SECRET_KEY },
    { type: c.k.CKA_LABEL, value: c.keyLabel },
  ]
  call(c, 'C_FindObjectsInit', () => p.C_FindObjectsInit(session, template))
  try {
    return call(c, 'C_FindObjects', () => p.C_FindObjects(session, 2))
  } finally {
    quietly(() => p.C_FindObjectsFinal(session))
  }
}

/** The one AES-256 key with the label, checked to be unable to leave the HSM. */
function wrappingKey(p: Pkcs11, session: Handle, c: Conversation): Handle {
  const found = findKeys(p, session, c)
  if (found.length === 0) {
    throw cpError('CP_ERR_PKCS11', `no key labelled "${c.keyLabel}" on ${c.where}; fix --pkcs11-key-label, or create it with --pkcs11-create-key`)
  }
  if (found.length > 1) throw cpError('CP_ERR_PKCS11', `several keys are labelled "${c.keyLabel}" on ${c.where}; give the wrapping key a label of its own`)
  const key = found[0] as Handle
  const attrs = call(c, 'C_GetAttributeValue', () =>
    p.C_GetAttributeValue(session, key, [{ type: c.k.CKA_KEY_TYPE }, { type: c.k.CKA_VALUE_LEN }, { type: c.k.CKA_SENSITIVE }, { type: c.k.CKA_EXTRACTABLE }]),
  )
  const [type, len, sensitive, extractable] = attrs.map((a) => a.value as Buffer)
  if (readUlong(type) !== c.k.CKK_AES || readUlong(len) !== AES_KEY_BYTES) {
    throw cpError('CP_ERR_PKCS11', `the key labelled "${c.keyLabel}" on ${c.where} is not an AES-256 key; fix --pkcs11-key-label`)
  }
  if (readBool(sensitive) !== true || readBool(extractable) !== false) {
    throw cpError('CP_ERR_PKCS11', `the key labelled "${c.keyLabel}" on ${c.where} is extractable or not sensitive, so its bytes could leave the HSM; create a new one with --pkcs11-create-key`)
  }
  return key
}

function readUlong(b: Buffer | undefined): number {
  if (!b || b.length === 0) return -1
  return b.length >= 8 ? Number(b.readBigUInt64LE(0)) : b.readUInt32LE(0)
}

function readBool(b: Buffer | undefined): boolean | undefined {
  return b && b.length > 0 ? b[0] !== 0 : undefined
}

/**
 * CKM_AES_GCM with our IV. pkcs11js's CK_PARAMS_AES_GCM_v240 is the CK_GCM_PARAMS
 * of PKCS#11 v2.40 errata 1 and v3.0 (with ulIvBits), which current tokens read.
 */
function gcm(k: Pkcs11js, iv: Uint8Array): { mechanism: number; parameter: { type: number; iv: Buffer; ivBits: number; aad: Buffer; tagBits: number } } {
  return { mechanism: k.CKM_AES_GCM, parameter: { type: k.CK_PARAMS_AES_GCM_v240, iv: Buffer.from(iv), ivBits: IV_BYTES * 8, aad: AAD, tagBits: TAG_BYTES * 8 } }
}
