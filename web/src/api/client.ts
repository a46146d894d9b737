/**
 * REST calls to the ArcNet server, same origin. Every call sends the operator's key as a bearer
 * token; every failure becomes an `ApiError` carrying the server's own message, because that message
 * (which field, which rule) is what the operator needs to read.
 */

export class ApiError extends Error {
  readonly status: number;
  readonly code: string | undefined;

  constructor(status: number, message: string, code: string | undefined) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
  }

  /** The route does not exist on this server (an older build): the server's 404 names no domain code. */
  get routeMissing(): boolean {
    return this.status === 404 && this.code === undefined;
  }
}

async function request<T>(method: 'GET' | 'POST', path: string, key: string, body?: unknown, signal?: AbortSignal): Promise<T> {
  const headers: Record<string, string> = { authorization: `Bearer ${key}`, accept: 'application/json' };
  if (body !== undefined) headers['content-type'] = 'application/json';
  let response: Response;
  try {
    response = await fetch(path, { method, headers, ...(body === undefined ? {} : { body: JSON.stringify(body) }), ...(signal ? { signal } : {}) });
  } catch (error) {
    if (error instanceof DOMException && error.name === 'AbortError') throw error;
    throw new ApiError(0, `the server could not be reached (${error instanceof Error ? error.message : String(error)})`, 'UNREACHABLE');
  }
  const text = await response.text();
  let parsed: unknown = undefined;
  try {
    parsed = text === '' ? undefined : JSON.parse(text);
  } catch {
    // Not JSON (a proxy's error page): the status line is all there is to say.
  }
  if (!response.ok) {
    const error = parsed as { message?: unknown; code?: unknown } | undefined;
    const message = typeof error?.message === 'string' ? error.message : `${response.status} ${response.statusText}`;
    throw new ApiError(response.status, message, typeof error?.code === 'string' ? error.code : undefined);
  }
  return parsed as T;
}

export function apiGet<T>(path: string, key: string, signal?: AbortSignal): Promise<T> {
  return request<T>('GET', path, key, undefined, signal);
}

export function apiPost<T>(path: string, key: string, body: unknown): Promise<T> {
  return request<T>('POST', path, key, body);
}

/** Builds a query string from the defined values only. */
export function query(params: Record<string, string | number | boolean | undefined | null>): string {
  const search = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) if (value !== undefined && value !== null && value !== '') search.set(name, String(value));
  const text = search.toString();
  return text === '' ? '' : `?${text}`;
}
