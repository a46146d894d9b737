/**
 * The one way ArcNet's clients open a connection to an ArcNet server: `fetch` for HTTP calls (the
 * CLI, a worker's calls, the simulator's load) and `webSocket` for sessions (an agent's `/agent`, a
 * worker's stream). Both carry the same client TLS (`src/core/tls.ts`): the CA to trust, the client
 * certificate for a server started with `--tls-ca`, and TLS 1.3 as the floor, so `https://` and
 * `wss://` work alike everywhere and nothing opens a connection another way.
 *
 * `fetch` is undici's own, with its own `Agent` as the dispatcher: Node's global fetch runs the undici
 * bundled with Node, and a dispatcher from another undici version is refused by it ("invalid
 * onRequestStart method"), so the two always come from the one package.
 */
import { Agent, fetch as undiciFetch, type RequestInit, type Response } from 'undici';
import { WebSocket, type ClientOptions } from 'ws';
import { clientTlsOptions, type ClientTls } from './tls.ts';

export type { RequestInit, Response };

export interface HttpClient {
  /** The TLS it connects with; undefined: system CAs, no client certificate. */
  readonly tls: ClientTls | undefined;
  fetch(url: string | URL, init?: RequestInit): Promise<Response>;
  /** A `ws` client socket with this client's TLS (the options given are merged over it). */
  webSocket(url: string | URL, options?: ClientOptions): WebSocket;
  /** Closes the pooled connections; later calls open new ones. */
  close(): Promise<void>;
}

export function httpClient(tls?: ClientTls): HttpClient {
  const secure = clientTlsOptions(tls);
  let agent: Agent | undefined;
  const dispatcher = (): Agent => (agent ??= new Agent({ connect: secure }));
  return {
    tls,
    fetch: (url, init) => undiciFetch(url, { ...init, dispatcher: dispatcher() }),
    // No per-message deflate from agents and workers: their messages are small, and a server would keep a zlib stream per session.
    webSocket: (url, options) => new WebSocket(url, { perMessageDeflate: false, ...secure, ...options }),
    close: async () => {
      const closing = agent;
      agent = undefined;
      await closing?.close();
    },
  };
}

/** Without TLS options: system CAs, no client certificate (plain `http://` works as before). */
export const defaultHttpClient: HttpClient = httpClient();
