// What `keymesh control-plane` serves: HTTPS with the operator's certificate or one
// made in the data directory (control-plane's http/tls.ts), or plain HTTP when asked
// for with --insecure-http, which off loopback is said in a warning at every start.
import type { Logger } from 'pino'

import { setupServerTls, type ServerTls } from '../control-plane/src/index.js'
import { systemClock } from '../platform/src/index.js'
import type { ControlPlaneConfig } from './control-plane-config.js'

export async function serveTls(config: ControlPlaneConfig, host: string, logger: Logger): Promise<ServerTls | undefined> {
  if (config.insecureHttp) {
    if (isLoopback(host)) logger.info({ host }, 'serving plain HTTP on loopback (--insecure-http)')
    else logger.warn({ host }, 'serving plain HTTP on an address other hosts can reach (--insecure-http): operator tokens cross the network in the clear; serve HTTPS instead (drop --insecure-http)')
    return undefined
  }
  const tls = await setupServerTls({
    dataDir: config.dataDir,
    certFile: config.tlsCert,
    keyFile: config.tlsKey,
    host,
    sans: config.tlsSans,
    clock: systemClock,
    logger,
  })
  return { cert: tls.cert, key: tls.key }
}

function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host)
}
