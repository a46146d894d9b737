/** Checks a key with `GET /api/v1/whoami`: who it is, or why the server refuses it. */
import { ApiError, apiGet } from '../api/client.ts';

export interface Identity {
  keyId: string;
  name: string;
  role: string;
}

export type KeyCheck = { ok: true; identity: Identity } | { ok: false; refused: boolean; message: string };

export async function checkKey(key: string): Promise<KeyCheck> {
  try {
    return { ok: true, identity: await apiGet<Identity>('/api/v1/whoami', key) };
  } catch (error) {
    if (error instanceof ApiError && (error.status === 401 || error.status === 403)) return { ok: false, refused: true, message: `API key refused: ${error.message}` };
    return { ok: false, refused: false, message: `Could not check the key: ${error instanceof Error ? error.message : String(error)}` };
  }
}
