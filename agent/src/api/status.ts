// What `GET /v1/status` on the agent's local API answers, and what
// `keymesh agent status` prints. Agent.status() builds it; the API server only
// serialises it. Field names are part of the operator contract (scripts read them).

export type ControlPlaneState = 'connecting' | 'connected' | 'backoff' | 'stopped'

export interface PairStatus {
  readonly pairId: string
  readonly peerService: string
  /** The version new tunnels use; null when no version of the pair is usable now. */
  readonly currentVersion: number | null
  /** An intention allows this service to open tunnels to the peer... */
  readonly mayInitiate: boolean
  /** ...and the peer to open tunnels to this service. */
  readonly mayAccept: boolean
  /** Agents of the peer service in the key set. */
  readonly peers: number
  /** Open tunnels of this pair, both directions. */
  readonly tunnels: number
  /** Key versions the pair's open tunnels use now, ascending (two while a rotation is under way). */
  readonly tunnelKeyVersions: readonly number[]
}

export interface AgentStatus {
  /** Enrolled and holding a key set (from the control plane or the cache). */
  readonly ready: boolean
  readonly service: string
  readonly agentId: string | null
  readonly controlPlane: { readonly state: ControlPlaneState; readonly url: string | null; readonly lastError: string | null }
  readonly keySet: { readonly source: 'control-plane' | 'cache' | null; readonly updatedAt: number | null }
  readonly pairs: readonly PairStatus[]
  readonly tunnels: { readonly open: number; readonly inbound: number; readonly outbound: number }
  readonly usage: {
    readonly unackedBatches: number
    readonly dropped: number
    /** Batches a damaged spool could not give back (since start), reported to the control plane as lost. */
    readonly lostBatches: number
    /** Intact batches recovered from a damaged spool at start, delivered as usual. */
    readonly recoveredBatches: number
    /** Loss reports the control plane has not acknowledged yet. */
    readonly lossReportsPending: number
  }
}
