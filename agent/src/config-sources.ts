// The agent's settings and where their raw values come from: flags, KEYMESH_*
// variables and the JSON config file, in that order, through platform's
// configSources (the control plane's --config uses the same). Values are returned
// unvalidated, each labelled with its source, for config-load.ts to check.
import { configSources as sources, readSmallFile as readSmall, type ConfigSources as Sources, type Picked as PickedOf, type Raw } from '../../platform/src/index.js'
import { agentError } from './errors.js'

/** Every setting that flags, environment and file share (kebab-case, as on the command line). */
export const AGENT_OPTIONS = [
  'cp', 'cp-key', 'cp-key-file', 'ca-file', 'cp-fingerprint', 'service', 'join-token', 'join-token-file', 'state-dir',
  'tunnel-listen', 'advertise', 'expose', 'connect', 'api', 'api-allow-remote', 'log-level',
] as const
export type AgentOption = (typeof AGENT_OPTIONS)[number]

export { envName, type Raw } from '../../platform/src/index.js'

export interface LoadAgentConfigInput {
  /** Parsed flags (yargs output: camelCase or kebab-case keys; other keys are ignored). */
  readonly args: Readonly<Record<string, unknown>>
  readonly env: Readonly<Record<string, string | undefined>>
  /** Reads a file as UTF-8 (default fs.readFileSync); used for --config, --cp-key-file, --join-token-file, --ca-file. */
  readonly readFile?: (path: string) => string
}

export type Picked = PickedOf<AgentOption>

export interface ConfigFile { readonly path: string; readonly limits: unknown }

export interface ConfigSources extends Omit<Sources<AgentOption>, 'file'> {
  readonly file: ConfigFile | undefined
}

const bad = (detail: string) => agentError('AGENT_ERR_CONFIG', detail)

export function configSources(input: LoadAgentConfigInput, readFile: (path: string) => string, maxFileBytes: number): ConfigSources {
  const s = sources({ options: AGENT_OPTIONS, sections: ['limits'], args: input.args, env: input.env, readFile, maxFileBytes, error: bad })
  return { pick: s.pick, pickOneOf: s.pickOneOf, file: s.file && { path: s.file.path, limits: s.file.sections.get('limits') } }
}

/** Reads a file through `readFile`; unreadable or larger than `limit` is AGENT_ERR_CONFIG naming `from` and the path. */
export function readSmallFile(readFile: (path: string) => string, path: string, limit: number, from: string): string {
  return readSmall(readFile, path, limit, from, bad)
}
