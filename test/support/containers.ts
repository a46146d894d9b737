/**
 * Where the container tests find an engine and what image they run: one place, so every suite that
 * needs containers skips (or runs) for the same reason. `bash scripts/containers.sh start` provides both.
 */
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { DockerRuntime, dockerEndpointFromEnv } from '../../src/agent/docker-runtime.ts';
import { errorMessage } from '../../src/core/errors.ts';

/** Built offline by scripts/containers.sh from the host's busybox-static: sh and the usual applets, nothing else. */
export const TEST_IMAGE = 'arcnet/busybox:test';

const PROJECT_SOCKET = fileURLToPath(new URL('../../.cache/containers/podman.sock', import.meta.url));

/**
 * DOCKER_HOST when set; else the project's Podman socket when the script has started it, so a plain
 * `npx vitest run` after `bash scripts/containers.sh start` needs no environment; else the default socket.
 */
export function testEngineEndpoint(env: NodeJS.ProcessEnv = process.env): string {
  if (env['DOCKER_HOST']) return dockerEndpointFromEnv(env);
  if (existsSync(PROJECT_SOCKET)) return `unix://${PROJECT_SOCKET}`;
  return dockerEndpointFromEnv(env);
}

export type EngineProbe =
  | { readonly available: true; readonly endpoint: string }
  | { readonly available: false; readonly endpoint: string; readonly reason: string };

/** Whether the engine answers and holds the test image; the reason is what a skipped suite prints. */
export async function probeTestEngine(endpoint = testEngineEndpoint()): Promise<EngineProbe> {
  const runtime = new DockerRuntime({ host: endpoint, requestTimeoutMs: 3000 });
  try {
    await runtime.ping();
    if (!(await runtime.imagePresent(TEST_IMAGE))) {
      return { available: false, endpoint, reason: `image ${TEST_IMAGE} missing at ${endpoint} (bash scripts/containers.sh start builds it)` };
    }
    return { available: true, endpoint };
  } catch (error) {
    return { available: false, endpoint, reason: errorMessage(error) };
  } finally {
    await runtime.close();
  }
}
