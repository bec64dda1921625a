// The agent software version sent in hello (for the operator's eyes in `keymesh agents`).
export const AGENT_VERSION = '0.1.0'
