// The console's HTTP side as a browser uses it, for the tests without a browser:
// sign in for a session cookie, then call with the cookie (and the CSRF token on a
// change), or with a bearer token.

export interface Answer {
  readonly status: number
  readonly body: any
  readonly headers: Headers
  /** Each Set-Cookie of the answer, whole. */
  readonly cookies: string[]
}

export interface ConsoleSession {
  /** The Cookie header a browser would send (the session and its hint). */
  readonly cookie: string
  readonly csrf: string
  readonly body: any
  readonly setCookies: string[]
}

export interface CallOptions {
  readonly body?: unknown
  readonly bearer?: string
  readonly session?: ConsoleSession
  /** Send the session's CSRF token (default: with a session, on every method but GET). */
  readonly csrf?: boolean | string
  readonly headers?: Record<string, string>
}

export function consoleClient(url: string) {
  async function call(method: string, path: string, o: CallOptions = {}): Promise<Answer> {
    const headers: Record<string, string> = { ...o.headers }
    if (o.body !== undefined) headers['content-type'] = 'application/json'
    if (o.bearer !== undefined) headers['authorization'] = `Bearer ${o.bearer}`
    if (o.session !== undefined) {
      headers['cookie'] = o.session.cookie
      const csrf = o.csrf ?? method !== 'GET'
      if (csrf !== false) headers['x-keymesh-csrf'] = csrf === true ? o.session.csrf : csrf
    }
    const res = await fetch(`${url}${path}`, { method, headers, redirect: 'manual', ...(o.body !== undefined ? { body: JSON.stringify(o.body) } : {}) })
    const text = await res.text()
    let body: unknown = text
    try {
      body = text === '' ? undefined : JSON.parse(text)
    } catch {
      // not JSON: the page, a script
    }
    return { status: res.status, body, headers: res.headers, cookies: res.headers.getSetCookie() }
  }

  /** Signs in with a token or a link; throws unless the answer is 201. */
  async function signIn(credential: { token: string } | { linkToken: string }): Promise<ConsoleSession> {
    const res = await call('POST', '/ui/api/session', { body: credential })
    if (res.status !== 201) throw new Error(`sign-in refused: ${res.status} ${JSON.stringify(res.body)}`)
    return { cookie: res.cookies.map((c) => c.split(';')[0]).join('; '), csrf: res.body.csrf, body: res.body, setCookies: res.cookies }
  }

  return { call, signIn }
}
