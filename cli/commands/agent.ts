// `keymesh agent [options]`: runs the sidecar agent beside one service until
// SIGTERM/SIGINT; SIGHUP re-reads the log level (flag > env > --config's log-level).
// `keymesh agent status --api ADDR`: asks a running agent how it is;
// `keymesh agent log-level [LEVEL] --api ADDR`: reads or sets its log level.
// (`keymesh agents …`, plural, is the operator's view of enrolled agents on the
// control plane.)
//
// Flags, KEYMESH_* variables and --config FILE are merged by loadAgentConfig
// (flag > env > file > default). No yargs defaults are declared for those options
// on purpose: a yargs default would look like a flag and beat the environment.
import type { Logger } from 'pino'
import type { Argv, CommandModule } from 'yargs'

import { requestAgentApi } from '../../agent/src/index.js'
import type { Agent, AgentStatus } from '../../agent/src/index.js'
import { DEFAULT_LOG_LEVEL, DEFAULT_TUNNEL_LISTEN, LOG_LEVELS, envName, loadAgentConfig, loadAgentLogLevel } from '../../agent/src/index.js'
import { agentError } from '../../agent/src/index.js'
import { print, run, type CliContext, type GlobalArgs } from '../context.js'
import { createLogger } from '../logger.js'
import { humanTime, renderRecord, renderTable } from '../output.js'
import { AGENT_API_OPTIONS, agentApiTarget } from '../agent-api.js'

interface StatusArgs extends GlobalArgs { api?: string; apiTokenFile?: string; stateDir?: string }
interface LogLevelArgs extends StatusArgs { level?: string }

const env = (option: string): string => `env ${envName(option)}`

/** The run options, in help order. Descriptions name the variable and the default. */
const RUN_OPTIONS: ReadonlyArray<[string, { describe: string }]> = [
  ['cp', { describe: `Control-plane URL (http://, https://, ws:// or wss://). Repeat it or give a comma list for several replicas, tried in order. Required (${env('cp')})` }],
  ['cp-key-file', { describe: `File holding the control plane's public key: its DATA_DIR/identity.pub (${env('cp-key-file')})` }],
  ['cp-key', { describe: `The control plane's public key as text (x25519:…), instead of --cp-key-file (${env('cp-key')})` }],
  ['ca-file', { describe: `PEM file of the CA that signs an https:// control plane's certificate (its DATA_DIR/tls.crt when it made its own). Default: the system's trust store (${env('ca-file')})` }],
  ['cp-fingerprint', { describe: `Accept only the https:// control plane certificate with this fingerprint (sha256:…, printed at its start); no CA needed then (${env('cp-fingerprint')})` }],
  ['service', { describe: `The service this agent stands beside. Required (${env('service')})` }],
  ['join-token', { describe: `One-time join token for the first start; a restart needs none. Prefer --join-token-file: argv is visible to other users (${env('join-token')})` }],
  ['join-token-file', { describe: `File holding the join token (${env('join-token-file')})` }],
  ['state-dir', { describe: `Directory for the agent's identity (0600), enrollment, sealed key-set cache and usage spool. Required (${env('state-dir')})` }],
  ['tunnel-listen', { describe: `HOST:PORT where peer agents' tunnels arrive. Default ${DEFAULT_TUNNEL_LISTEN} (${env('tunnel-listen')})` }],
  ['advertise', { describe: `The ws:// or wss:// URL peers dial; required when --tunnel-listen is 0.0.0.0 or [::]. Default: ws://TUNNEL-LISTEN/v1/tunnel (${env('advertise')})` }],
  ['expose', { describe: `HOST:PORT of the local service that inbound tunnels are forwarded to (${env('expose')})` }],
  ['connect', { describe: `PEER=HOST:PORT: listen on HOST:PORT and carry each connection to an agent of service PEER. Repeat for several peers (${env('connect')}, a comma list)` }],
  ['api', { describe: `Serve the local API (GET /v1/status …) on HOST:PORT (loopback; needs the token in STATE_DIR/api.token) or unix:/path/to.sock (mode 0600, in a directory that is not world-writable). Default: off (${env('api')})` }],
  ['api-allow-remote', { describe: `Allow --api on an address that is not loopback (0.0.0.0, a LAN address); the token is still required (${env('api-allow-remote')})` }],
  ['log-level', { describe: `${LOG_LEVELS.join(', ')}. JSON logs on stdout. Default ${DEFAULT_LOG_LEVEL} (${env('log-level')})` }],
  ['config', { describe: `JSON file whose keys are these option names (kebab-case or camelCase), plus "limits": {rehandshakeAfterMs, maxTunnels, …} (${env('config')})` }],
]

function statusCommand(ctx: CliContext): CommandModule<GlobalArgs, StatusArgs> {
  return {
    command: 'status',
    describe: 'Print how a running agent is: readiness, control-plane connection, pairs and key versions, tunnels',
    builder: (y: Argv<GlobalArgs>) =>
      y
        .option('api', { type: 'string', describe: `The agent's --api address: HOST:PORT or unix:/path/to.sock (${env('api')})` })
        .options(AGENT_API_OPTIONS)
        .example('$0 agent status --api 127.0.0.1:7402 --state-dir ./web-agent', 'a readable summary (the token from ./web-agent/api.token)')
        .example('$0 agent status --api unix:/run/keymesh/web.sock --json', 'the GET /v1/status answer, for scripts') as unknown as Argv<StatusArgs>,
    handler: (args) =>
      run(ctx, args, async () => {
        const api = agentApiTarget(args, ctx.env, (detail) => agentError('AGENT_ERR_CONFIG', detail))
        const status = await requestAgentApi<AgentStatus>(api, 'GET', '/v1/status', undefined, { token: api.token, tokenSource: api.tokenSource })
        if (args.json) return print(ctx, args, status)
        ctx.stdout.write(renderStatus(status))
      }),
  }
}

function logLevelCommand(ctx: CliContext): CommandModule<GlobalArgs, LogLevelArgs> {
  return {
    command: 'log-level [level]',
    describe: `Print a running agent's log level, or set it (${LOG_LEVELS.join(', ')}) until it restarts or gets SIGHUP`,
    builder: (y: Argv<GlobalArgs>) =>
      y
        .positional('level', { type: 'string', describe: `The new level: ${LOG_LEVELS.join(', ')}` })
        .option('api', { type: 'string', describe: `The agent's --api address: HOST:PORT or unix:/path/to.sock (${env('api')})` })
        .options(AGENT_API_OPTIONS)
        .example('$0 agent log-level debug --api 127.0.0.1:7402 --state-dir ./web-agent', 'debug lines from now on')
        .example('$0 agent log-level --api unix:/run/keymesh/web.sock', 'the current level') as unknown as Argv<LogLevelArgs>,
    handler: (args) =>
      run(ctx, args, async () => {
        const api = agentApiTarget(args, ctx.env, (detail) => agentError('AGENT_ERR_CONFIG', detail))
        const answer = await requestAgentApi<{ level: string; previous?: string }>(api, args.level === undefined ? 'GET' : 'PUT', '/v1/log-level',
          args.level === undefined ? undefined : { level: args.level }, { token: api.token, tokenSource: api.tokenSource })
        if (args.json) return print(ctx, args, answer)
        ctx.stdout.write(answer.previous === undefined ? `${answer.level}\n` : `${answer.previous} → ${answer.level}\n`)
      }),
  }
}

/** SIGHUP: the level from flags, environment and --config again; a bad file leaves the level as it is. */
export function reloadLogLevel(args: Record<string, unknown>, env: Readonly<Record<string, string | undefined>>, agent: Pick<Agent, 'setLogLevel'>, logger: Logger): void {
  try {
    const level = loadAgentLogLevel({ args, env })
    agent.setLogLevel(level)
    logger.level = level
    logger.info({ level }, 'SIGHUP: log level re-read')
  } catch (err) {
    logger.warn({ code: (err as { code?: unknown }).code, detail: (err as Error).message }, 'SIGHUP: the log level was not re-read; it is unchanged')
  }
}

const yesNo = (b: boolean): string => (b ? 'yes' : 'no')
const iso = humanTime

function usageLoss(u: AgentStatus['usage']): string {
  const pending = u.lossReportsPending > 0 ? `, ${u.lossReportsPending} loss report(s) not yet acknowledged` : ', reported to the control plane'
  return `${u.lostBatches} batch(es) unreadable in a damaged spool (${u.recoveredBatches} recovered)${pending}`
}

/** The readable summary: key: value lines, then one table row per pair. */
export function renderStatus(s: AgentStatus): string {
  const cp = s.controlPlane
  const head = renderRecord({
    ready: yesNo(s.ready),
    service: s.service,
    agent: s.agentId,
    'control plane': cp.url === null ? cp.state : `${cp.state} (${cp.url})`,
    'last error': cp.lastError,
    'key set': s.keySet.source === null ? 'none yet' : `from ${s.keySet.source}, updated ${iso(s.keySet.updatedAt) ?? '-'}`,
    tunnels: `${s.tunnels.open} open (${s.tunnels.inbound} inbound, ${s.tunnels.outbound} outbound)`,
    usage: `${s.usage.unackedBatches} batches awaiting the control plane, ${s.usage.dropped} events dropped`,
    // Shown only when something was found: a damaged spool's recovered and lost batches.
    ...(s.usage.lostBatches > 0 || s.usage.recoveredBatches > 0 ? { 'usage lost': usageLoss(s.usage) } : {}),
  })
  const rows = s.pairs.map((p) => ({
    pair: p.pairId,
    peer: p.peerService,
    version: p.currentVersion,
    initiate: yesNo(p.mayInitiate),
    accept: yesNo(p.mayAccept),
    peers: p.peers,
    tunnels: p.tunnels,
    tunnelVersions: p.tunnelKeyVersions.length === 0 ? undefined : p.tunnelKeyVersions.join(','),
  }))
  const columns = ['pair', 'peer', 'version', 'initiate', 'accept', 'peers', 'tunnels', { key: 'tunnelVersions', header: 'TUNNEL VERSIONS' }]
  return `${head}\n${s.pairs.length === 0 ? 'pairs: none (no intention names this service yet)\n' : renderTable(rows, columns)}`
}

export function agentCommand(ctx: CliContext): CommandModule<GlobalArgs, GlobalArgs> {
  return {
    command: 'agent',
    describe: 'Run the sidecar agent beside a service (`agent status`: ask a running one). Not `agents`, which lists enrolled agents on the control plane',
    builder: (y: Argv<GlobalArgs>) => {
      let b = y.usage('$0 agent [options]\n\nRuns the keymesh agent beside one service until SIGTERM or SIGINT. Every option can also come from its KEYMESH_* variable or a --config file; a flag beats the variable, which beats the file.\n\nNot to be confused with `keymesh agents list`, which lists the agents enrolled on the control plane.')
      // global: false, or yargs would carry them into `agent status` (options are global by default).
      for (const [name, o] of RUN_OPTIONS) b = b.option(name, { type: name === 'api-allow-remote' ? 'boolean' : 'string', global: false, describe: o.describe })
      return b
        .command(statusCommand(ctx))
        .command(logLevelCommand(ctx))
        .example('$0 agent --cp https://127.0.0.1:7400 --ca-file cp/tls.crt --cp-key-file cp/identity.pub --service web --join-token-file web.token --state-dir ./web-agent --connect api=127.0.0.1:15001 --api 127.0.0.1:7402', 'first start of the web service\'s agent; web reaches api through 127.0.0.1:15001')
        .example('$0 agent --cp https://127.0.0.1:7400 --cp-fingerprint sha256:… --cp-key-file cp/identity.pub --service api --state-dir ./api-agent --tunnel-listen 127.0.0.1:7411 --expose 127.0.0.1:8080', 'an already enrolled agent of api, forwarding tunnels to its service on 8080')
        .example('KEYMESH_CONFIG=/etc/keymesh/agent.json $0 agent --log-level debug', 'everything from a config file, one flag on top')
        .example('$0 agent status --api 127.0.0.1:7402 --state-dir ./web-agent', 'the status of a running agent')
    },
    handler: (args) =>
      run(ctx, args, async () => {
        const config = loadAgentConfig({ args: args as unknown as Record<string, unknown>, env: ctx.env })
        ctx.forgetEnv('KEYMESH_JOIN_TOKEN')
        if ((args as { joinToken?: unknown }).joinToken !== undefined) {
          ctx.stderr.write('keymesh: warning: --join-token puts the token in argv, where every user of this machine can read it (ps, /proc); prefer --join-token-file FILE or KEYMESH_JOIN_TOKEN\n')
        }
        const logger = createLogger(config.logLevel)
        try {
          // Loaded here, not at the top: the other commands need none of the agent's modules.
          const { startAgent } = await import('../../agent/src/index.js')
          const agent = await startAgent(config, { logger })
          const onHup = (): void => reloadLogLevel(args as unknown as Record<string, unknown>, ctx.env, agent, logger)
          process.on('SIGHUP', onHup)
          try {
            const signal = await ctx.stopSignal
            logger.info({ signal }, 'stopping')
          } finally {
            process.off('SIGHUP', onHup)
          }
          await agent.close()
        } finally {
          logger.flush()
        }
      }),
  }
}
