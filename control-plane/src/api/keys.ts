// Admin API for keys and grants: thin routes over services/keys.ts. The server has
// already authenticated, validated the body and query against the schemas below and
// authorised the route's operation; the service validates names and versions inside
// its audited transaction, so a refusal there is audited too.
//
//   POST  /v1/keys                                        key.create  → 201 key view
//   GET   /v1/keys[?type=TYPE]                            key.list    → {keys:[view]}
//   GET   /v1/keys/:name                                  key.get     → view with versions
//   PATCH /v1/keys/:name                                  key.update  → view
//   POST  /v1/keys/:name/rotate                           key.rotate  → {name, version, previousVersion}
//   POST  /v1/keys/:name/versions/:version/state          key.state   → version view
//         (scheduled-destruction of a version used within the guard window: force + reason)
//   POST  /v1/keys/:name/import-params                    key.import  → 201 {importId, name, type, publicKey, expiresAt}
//   POST  /v1/keys/:name/import                           key.import  → key view (wrapped: base64 of the wrapped key)
//   POST  /v1/keys/:name/versions/:version/cancel-destruction  key.state → version view
//   GET   /v1/keys/:name/grants                           key.get     → {name, grants:[{service, rights}]}
//   POST  /v1/keys/:name/grants                           key.grant   → {name, service, rights}
//   POST  /v1/keys/:name/grants/revoke                    key.grant   → {name, service, rights}
//   GET   /v1/keys/:name/public[?version=N]               key.public  → {name, version, publicKey}
import { KEY_TYPES, RIGHTS } from '../store/records.js'
import type { CpContext } from '../context.js'
import type { Route } from '../http/router.js'
import { createImportParams, importKey } from '../services/key-import.js'
import * as keys from '../services/keys.js'
import { operatorActor, operatorRoute, type OperatorPrincipal } from './principal.js'

// Loose bounds here keep absurd input out; the exact rules (name syntax, rotation and
// window ranges) live in the service and key-lifecycle.ts, where a refusal is audited.
const NAME = { type: 'string', minLength: 1, maxLength: 256 } as const
const MS = { type: 'integer', optional: true } as const
const REQUESTED_STATES = ['enabled', 'decrypt-only', 'disabled', 'scheduled-destruction'] as const
const GRANT_BODY = {
  fields: {
    service: NAME,
    rights: { type: 'array', items: { type: 'string', enum: RIGHTS }, minItems: 1, maxItems: RIGHTS.length * 2 },
  },
} as const

/** A path's `:version` as a number; anything else becomes NaN, which the service refuses (audited). */
const versionParam = (text: string | undefined): number => (text !== undefined && /^[1-9][0-9]{0,9}$/.test(text) ? Number(text) : NaN)
const param = (params: Readonly<Record<string, string>>, name: string): string => params[name] ?? ''

export function keysRoutes(ctx: CpContext): Route<OperatorPrincipal>[] {
  return [
    operatorRoute({
      method: 'POST',
      path: '/v1/keys',
      operation: 'key.create',
      auth: 'token',
      body: { fields: { name: NAME, type: { type: 'string', enum: KEY_TYPES }, rotationPeriodMs: MS } },
      handler: async (req) => {
        const { name, type, rotationPeriodMs } = req.body
        const view = await keys.createKey(ctx, operatorActor(req.principal), {
          name,
          type,
          ...(rotationPeriodMs !== undefined ? { rotationPeriodMs } : {}),
        })
        return { status: 201, body: view }
      },
    }),
    operatorRoute({
      method: 'GET',
      path: '/v1/keys',
      operation: 'key.list',
      auth: 'token',
      query: { type: { type: 'string', enum: KEY_TYPES, optional: true } },
      handler: async (req) => ({ status: 200, body: { keys: await keys.listKeys(ctx, req.query.type ? { type: req.query.type } : {}) } }),
    }),
    operatorRoute({
      method: 'GET',
      path: '/v1/keys/:name',
      operation: 'key.get',
      auth: 'token',
      handler: async (req) => ({ status: 200, body: await keys.getKey(ctx, param(req.params, 'name')) }),
    }),
    operatorRoute({
      method: 'PATCH',
      path: '/v1/keys/:name',
      operation: 'key.update',
      auth: 'token',
      body: { fields: { rotationPeriodMs: MS, noRotation: { type: 'boolean', optional: true }, minDecryptVersion: MS } },
      handler: async (req) => ({
        status: 200,
        body: await keys.updateKey(ctx, operatorActor(req.principal), param(req.params, 'name'), req.body),
      }),
    }),
    operatorRoute({
      method: 'POST',
      path: '/v1/keys/:name/rotate',
      operation: 'key.rotate',
      auth: 'token',
      handler: async (req) => ({ status: 200, body: await keys.rotateKey(ctx, operatorActor(req.principal), param(req.params, 'name')) }),
    }),
    operatorRoute({
      method: 'POST',
      path: '/v1/keys/:name/versions/:version/state',
      operation: 'key.state',
      auth: 'token',
      body: {
        fields: {
          state: { type: 'string', enum: REQUESTED_STATES },
          windowMs: MS,
          force: { type: 'boolean', optional: true },
          reason: { type: 'string', minLength: 1, maxLength: 200, optional: true },
        },
      },
      handler: async (req) => ({
        status: 200,
        body: await keys.setVersionState(
          ctx,
          operatorActor(req.principal),
          param(req.params, 'name'),
          versionParam(req.params['version']),
          req.body.state,
          req.body.windowMs,
          { ...(req.body.force !== undefined ? { force: req.body.force } : {}), ...(req.body.reason !== undefined ? { reason: req.body.reason } : {}) },
        ),
      }),
    }),
    operatorRoute({
      method: 'POST',
      path: '/v1/keys/:name/import-params',
      operation: 'key.import',
      auth: 'token',
      body: { fields: { type: { type: 'string', enum: KEY_TYPES } } },
      handler: async (req) => ({
        status: 201,
        body: await createImportParams(ctx, operatorActor(req.principal), { name: param(req.params, 'name'), type: req.body.type }),
      }),
    }),
    operatorRoute({
      method: 'POST',
      path: '/v1/keys/:name/import',
      operation: 'key.import',
      auth: 'token',
      body: {
        fields: {
          type: { type: 'string', enum: KEY_TYPES },
          importId: { type: 'string', minLength: 1, maxLength: 100 },
          wrapped: { type: 'string', minLength: 1, maxLength: 1024, pattern: /^[A-Za-z0-9+/]+={0,2}$/ },
        },
      },
      handler: async (req) => ({
        status: 200,
        body: await importKey(ctx, operatorActor(req.principal), {
          name: param(req.params, 'name'),
          type: req.body.type,
          importId: req.body.importId,
          wrapped: new Uint8Array(Buffer.from(req.body.wrapped, 'base64')),
        }),
      }),
    }),
    operatorRoute({
      method: 'POST',
      path: '/v1/keys/:name/versions/:version/cancel-destruction',
      operation: 'key.state',
      auth: 'token',
      handler: async (req) => ({
        status: 200,
        body: await keys.cancelDestruction(ctx, operatorActor(req.principal), param(req.params, 'name'), versionParam(req.params['version'])),
      }),
    }),
    operatorRoute({
      method: 'GET',
      path: '/v1/keys/:name/grants',
      operation: 'key.get',
      auth: 'token',
      handler: async (req) => ({ status: 200, body: await keys.listGrants(ctx, param(req.params, 'name')) }),
    }),
    operatorRoute({
      method: 'POST',
      path: '/v1/keys/:name/grants',
      operation: 'key.grant',
      auth: 'token',
      body: GRANT_BODY,
      handler: async (req) => ({
        status: 200,
        body: await keys.changeGrant(ctx, operatorActor(req.principal), param(req.params, 'name'), req.body, true),
      }),
    }),
    operatorRoute({
      method: 'POST',
      path: '/v1/keys/:name/grants/revoke',
      operation: 'key.grant',
      auth: 'token',
      body: GRANT_BODY,
      handler: async (req) => ({
        status: 200,
        body: await keys.changeGrant(ctx, operatorActor(req.principal), param(req.params, 'name'), req.body, false),
      }),
    }),
    operatorRoute({
      method: 'GET',
      path: '/v1/keys/:name/public',
      operation: 'key.public',
      auth: 'token',
      query: { version: { type: 'integer', min: 1, optional: true } },
      handler: async (req) => ({ status: 200, body: await keys.publicKey(ctx, param(req.params, 'name'), req.query.version) }),
    }),
  ]
}
