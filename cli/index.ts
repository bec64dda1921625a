// The public surface of the cli package: the keymesh command, for bin/keymesh.js and tests.
export { checkStoreSpec } from './commands/control-plane.js'
export { main } from './main.js'
export type { CliContext } from './context.js'
export { controlPlaneFetch } from './transport.js'
