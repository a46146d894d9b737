/** A GET of a running server's JSON for the one-shot commands; an unreachable server or an error status ends the command with one line. */
import { errorMessage } from '../core/errors.ts';
import { usage } from './options.ts';
import { cliHttp } from './tls-options.ts';
import type { Response } from '../core/http-client.ts';
import { authHeaders } from './client-key.ts';

export async function getJson(server: string, path: string): Promise<unknown> {
  let response: Response;
  try {
    response = await cliHttp().fetch(new URL(path, server), { headers: authHeaders() });
  } catch (error) {
    throw usage(`cannot reach ${server}: ${errorMessage((error as Error).cause ?? error)} (is "arcnet up" running?)`);
  }
  const body = (await response.json()) as { message?: string };
  if (!response.ok) throw usage(`${server}${path} answered ${response.status}: ${body.message ?? 'no message'}`);
  return body;
}
