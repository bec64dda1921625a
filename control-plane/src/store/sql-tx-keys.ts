// Repository methods for meta, keys, key versions, grants and intentions; the
// principals and the audit log follow in sql-tx.ts. Split by concern only:
// together they are one transaction object. Back-end neutral: the SQL here runs
// unchanged on SQLite and PostgreSQL (see sql-queries.ts).
import { RIGHTS } from './records.js'
import type {
  ElapsedLedgerRecord,
  GrantRecord,
  IntentionPatch,
  IntentionRecord,
  NewIntention,
  KeyPatch,
  KeyRecord,
  KeyUsageRecord,
  KeyVersionPatch,
  KeyVersionRecord,
  Right,
  VersionState,
} from './records.js'
import { SqlQueries } from './sql-queries.js'
import { INTENTION_COLUMNS, KEY_COLUMNS, VERSION_COLUMNS, fromBlob, num, toIntention, toKey, toKeyUsage, toKeyVersion, where } from './sql-rows.js'
import type { IntentionFilter, KeyFilter, KeyVersionFilter } from './store.js'

const KEY_PATCH: Record<keyof KeyPatch, string> = {
  rotationPeriodMs: 'rotation_period_ms',
  nextRotationAt: 'next_rotation_at',
  primaryVersion: 'primary_version',
  minDecryptVersion: 'min_decrypt_version',
}
const INTENTION_PATCH: Record<keyof IntentionPatch, string> = {
  effect: 'effect',
  expiresAt: 'expires_at',
  createdAt: 'created_at',
  expiresAtObserved: 'expires_at_observed',
}
const VERSION_PATCH: Record<keyof KeyVersionPatch, string> = {
  state: 'state',
  sealedMaterial: 'material',
  stateChangedAt: 'state_changed_at',
  destroyAt: 'destroy_at',
  notAfter: 'not_after',
  previousState: 'previous_state',
  destroyAtObserved: 'destroy_at_observed',
  notAfterObserved: 'not_after_observed',
}

export abstract class SqlKeyRepository extends SqlQueries {
  // meta

  async getMeta(key: string): Promise<Uint8Array | null> {
    const row = await this.get('SELECT value FROM meta WHERE key = ?', key)
    return row ? fromBlob(row.value) : null
  }
  async putMeta(key: string, value: Uint8Array): Promise<void> {
    await this.run('INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value', key, value)
  }
  async insertMetaIfAbsent(key: string, value: Uint8Array): Promise<boolean> {
    return (await this.run('INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING', key, value)) > 0
  }
  async deleteMeta(key: string): Promise<boolean> {
    return (await this.run('DELETE FROM meta WHERE key = ?', key)) > 0
  }

  // the elapsed ledger

  async getElapsedLedger(): Promise<ElapsedLedgerRecord> {
    const row = await this.get('SELECT observed_ms, writer, advanced_at FROM elapsed_ledger WHERE id = 1')
    return row ? { observedMs: num(row.observed_ms), writer: row.writer as string, advancedAt: num(row.advanced_at) } : { observedMs: 0, writer: '', advancedAt: 0 }
  }
  async advanceElapsedLedger(from: ElapsedLedgerRecord, to: ElapsedLedgerRecord): Promise<boolean> {
    const moved = await this.run(
      'UPDATE elapsed_ledger SET observed_ms = ?, writer = ?, advanced_at = ? WHERE id = 1 AND observed_ms = ? AND writer = ?',
      to.observedMs, to.writer, to.advancedAt, from.observedMs, from.writer,
    )
    if (moved > 0 || from.writer !== '') return moved > 0
    // Never advanced yet: the row is made by whoever comes first.
    return (await this.run(
      'INSERT INTO elapsed_ledger (id, observed_ms, writer, advanced_at) VALUES (1, ?, ?, ?) ON CONFLICT (id) DO NOTHING',
      to.observedMs, to.writer, to.advancedAt,
    )) > 0
  }

  // keys

  async getKey(name: string): Promise<KeyRecord | null> {
    const row = await this.get(`SELECT ${KEY_COLUMNS} FROM keys WHERE name = ?`, name)
    return row ? toKey(row) : null
  }
  async findPairKey(a: string, b: string): Promise<KeyRecord | null> {
    const row = await this.get(
      `SELECT ${KEY_COLUMNS} FROM keys WHERE (pair_a = ? AND pair_b = ?) OR (pair_a = ? AND pair_b = ?)`,
      a, b, b, a,
    )
    return row ? toKey(row) : null
  }
  async listKeys(filter: KeyFilter = {}): Promise<KeyRecord[]> {
    const w = where()
    if (filter.type !== undefined) w.add('type = ?', filter.type)
    if (filter.service !== undefined) w.add('(pair_a = ? OR pair_b = ?)', filter.service, filter.service)
    if (filter.rotationDueBy !== undefined) w.add('next_rotation_at IS NOT NULL AND next_rotation_at <= ?', filter.rotationDueBy)
    return (await this.all(`SELECT ${KEY_COLUMNS} FROM keys${w.sql} ORDER BY name`, ...w.args)).map(toKey)
  }
  async insertKey(k: KeyRecord): Promise<void> {
    await this.run(
      `INSERT INTO keys (name, type, created_at, rotation_period_ms, next_rotation_at, primary_version,
         min_decrypt_version, pair_a, pair_b) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      k.name, k.type, k.createdAt, k.rotationPeriodMs, k.nextRotationAt, k.primaryVersion,
      k.minDecryptVersion, k.pairServices?.[0] ?? null, k.pairServices?.[1] ?? null,
    )
  }
  async updateKey(name: string, patch: KeyPatch): Promise<boolean> {
    return this.patch('keys', KEY_PATCH, patch, 'name = ?', [name])
  }
  async deleteKey(name: string): Promise<boolean> {
    const deleted = (await this.run('DELETE FROM keys WHERE name = ?', name)) > 0
    if (deleted) this.erasedMaterial = true
    await this.run('DELETE FROM key_usage WHERE key_name = ?', name)
    return deleted
  }

  // key versions

  async getKeyVersion(keyName: string, version: number): Promise<KeyVersionRecord | null> {
    const row = await this.get(`SELECT ${VERSION_COLUMNS} FROM key_versions WHERE key_name = ? AND version = ?`, keyName, version)
    return row ? toKeyVersion(row) : null
  }
  async listKeyVersions(filter: KeyVersionFilter = {}): Promise<KeyVersionRecord[]> {
    const w = where()
    if (filter.keyName !== undefined) w.add('key_name = ?', filter.keyName)
    if (filter.states !== undefined) {
      if (filter.states.length === 0) return []
      w.add(`state IN (${filter.states.map(() => '?').join(', ')})`, ...filter.states)
    }
    if (filter.destroyDueBy !== undefined) w.add('destroy_at IS NOT NULL AND destroy_at <= ?', filter.destroyDueBy)
    if (filter.notAfterBy !== undefined) w.add('not_after IS NOT NULL AND not_after <= ?', filter.notAfterBy)
    return (await this.all(`SELECT ${VERSION_COLUMNS} FROM key_versions${w.sql} ORDER BY key_name, version`, ...w.args)).map(toKeyVersion)
  }
  async lastKeyVersion(keyName: string): Promise<number> {
    const row = await this.get('SELECT COALESCE(MAX(version), 0) AS v FROM key_versions WHERE key_name = ?', keyName)
    return num(row?.v)
  }
  async insertKeyVersion(v: KeyVersionRecord): Promise<void> {
    await this.run(
      `INSERT INTO key_versions (key_name, version, state, material, created_at, state_changed_at, destroy_at,
         not_after, previous_state, origin, destroy_at_observed, not_after_observed) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      v.keyName, v.version, v.state, v.sealedMaterial, v.createdAt, v.stateChangedAt, v.destroyAt,
      v.notAfter, v.previousState, v.origin ?? 'generated', v.destroyAtObserved ?? null, v.notAfterObserved ?? null,
    )
  }
  async updateKeyVersion(keyName: string, version: number, patch: KeyVersionPatch, ifState?: VersionState): Promise<boolean> {
    const cond = ifState === undefined ? 'key_name = ? AND version = ?' : 'key_name = ? AND version = ? AND state = ?'
    const args = ifState === undefined ? [keyName, version] : [keyName, version, ifState]
    const changed = await this.patch('key_versions', VERSION_PATCH, patch, cond, args)
    if (changed && patch.sealedMaterial === null) this.erasedMaterial = true
    return changed
  }

  // key usage

  async listKeyUsage(keyName: string, fromDay: number): Promise<KeyUsageRecord[]> {
    const rows = await this.all(
      'SELECT key_name, version, service, day, uses, last_used_at FROM key_usage WHERE key_name = ? AND day >= ? ORDER BY version, service, day',
      keyName, fromDay,
    )
    return rows.map(toKeyUsage)
  }
  async addKeyUsage(rows: readonly KeyUsageRecord[]): Promise<void> {
    for (const u of rows) {
      // CASE rather than MAX()/GREATEST(): the same SQL on both back-ends.
      await this.run(
        `INSERT INTO key_usage (key_name, version, service, day, uses, last_used_at) VALUES (?, ?, ?, ?, ?, ?)
         ON CONFLICT (key_name, version, service, day) DO UPDATE SET uses = key_usage.uses + excluded.uses,
           last_used_at = CASE WHEN excluded.last_used_at > key_usage.last_used_at THEN excluded.last_used_at ELSE key_usage.last_used_at END`,
        u.keyName, u.version, u.service, u.day, u.uses, u.lastUsedAt,
      )
    }
  }
  async deleteKeyUsageBefore(day: number): Promise<number> {
    return this.run('DELETE FROM key_usage WHERE day < ?', day)
  }

  // grants

  async getGrant(keyName: string, service: string): Promise<GrantRecord | null> {
    return (await this.listGrants({ keyName, service }))[0] ?? null
  }
  async listGrants(filter: { keyName?: string; service?: string } = {}): Promise<GrantRecord[]> {
    const w = where()
    if (filter.keyName !== undefined) w.add('key_name = ?', filter.keyName)
    if (filter.service !== undefined) w.add('service = ?', filter.service)
    const rows = await this.all(`SELECT key_name, service, grant_right FROM grants${w.sql} ORDER BY key_name, service`, ...w.args)
    const out: { keyName: string; service: string; rights: Right[] }[] = []
    for (const r of rows) {
      let last = out[out.length - 1]
      if (!last || last.keyName !== r.key_name || last.service !== r.service) {
        last = { keyName: r.key_name as string, service: r.service as string, rights: [] }
        out.push(last)
      }
      last.rights.push(r.grant_right as Right)
    }
    for (const g of out) g.rights.sort((x, y) => RIGHTS.indexOf(x) - RIGHTS.indexOf(y))
    return out
  }
  async putGrant(g: GrantRecord): Promise<void> {
    await this.run('DELETE FROM grants WHERE key_name = ? AND service = ?', g.keyName, g.service)
    for (const right of new Set(g.rights)) {
      await this.run('INSERT INTO grants (key_name, service, grant_right) VALUES (?, ?, ?)', g.keyName, g.service, right)
    }
  }
  async deleteGrant(keyName: string, service: string): Promise<boolean> {
    return (await this.run('DELETE FROM grants WHERE key_name = ? AND service = ?', keyName, service)) > 0
  }

  // intentions

  async getIntention(src: string, dst: string): Promise<IntentionRecord | null> {
    const row = await this.get(`SELECT ${INTENTION_COLUMNS} FROM intentions WHERE src = ? AND dst = ?`, src, dst)
    return row ? toIntention(row) : null
  }
  async listIntentions(filter: IntentionFilter = {}): Promise<IntentionRecord[]> {
    const w = where()
    if (filter.src !== undefined) w.add('src = ?', filter.src)
    if (filter.dst !== undefined) w.add('dst = ?', filter.dst)
    // A wildcard rule concerns every service.
    if (filter.service !== undefined) w.add("(src IN (?, '*') OR dst IN (?, '*'))", filter.service, filter.service)
    if (filter.expiresBy !== undefined) w.add('expires_at IS NOT NULL AND expires_at <= ?', filter.expiresBy)
    return (await this.all(`SELECT ${INTENTION_COLUMNS} FROM intentions${w.sql} ORDER BY src, dst`, ...w.args)).map(toIntention)
  }
  async addIntention(i: NewIntention): Promise<boolean> {
    return (await this.run(
      'INSERT INTO intentions (src, dst, created_at, effect, expires_at, expires_at_observed) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (src, dst) DO NOTHING',
      i.src, i.dst, i.createdAt, i.effect ?? 'allow', i.expiresAt ?? null, i.expiresAtObserved ?? null,
    )) > 0
  }
  async updateIntention(src: string, dst: string, patch: IntentionPatch): Promise<boolean> {
    return this.patch('intentions', INTENTION_PATCH, patch, 'src = ? AND dst = ?', [src, dst])
  }
  async deleteIntention(src: string, dst: string): Promise<boolean> {
    return (await this.run('DELETE FROM intentions WHERE src = ? AND dst = ?', src, dst)) > 0
  }
}
