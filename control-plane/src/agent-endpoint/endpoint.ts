// PLACEHOLDER: the agent WebSocket endpoint is being written; see app.ts for the contract.
import type { IncomingMessage } from 'node:http'
import type { Duplex } from 'node:stream'
import type { CpContext } from '../context.js'

export interface AgentEndpoint {
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void
  /** Agents with a live, authenticated session. */
  connectedCount(): number
  /** Closes every agent session (close code 1001) and stops accepting. */
  close(): Promise<void>
}

export function createAgentEndpoint(_ctx: CpContext): AgentEndpoint {
  return {
    handleUpgrade(_req, socket) {
      socket.destroy()
    },
    connectedCount: () => 0,
    close: async () => {},
  }
}
