import { describe, expect, it } from 'vitest';
import { DockerRuntime, dockerEndpointFromEnv } from '../../src/agent/docker-runtime.ts';
import { TEST_IMAGE, testEngineEndpoint } from '../support/containers.ts';
import { needEngines } from '../support/engines.ts';
import { containerRuntimeContract } from './container-runtime.contract.ts';

const engine = needEngines('containers');
const endpoint = testEngineEndpoint();

describe.skipIf(!engine.available)(
  engine.title(`docker runtime at ${endpoint}`),
  () => {
    containerRuntimeContract(`DockerRuntime at ${endpoint}`, async () => {
      const runtime = new DockerRuntime({ host: endpoint });
      return {
        runtime,
        image: TEST_IMAGE,
        leftovers: (labels) => runtime.managedContainers(labels),
        close: () => runtime.close(),
      };
    });
  },
);

// No engine needed: where the runtime looks, and what it says when nothing answers there.
describe('DockerRuntime endpoint', () => {
  it('reads DOCKER_HOST, defaulting to the standard socket', () => {
    expect(dockerEndpointFromEnv({})).toBe('unix:///var/run/docker.sock');
    expect(dockerEndpointFromEnv({ DOCKER_HOST: 'unix:///run/podman/podman.sock' })).toBe('unix:///run/podman/podman.sock');
    expect(dockerEndpointFromEnv({ DOCKER_HOST: 'tcp://10.0.0.5:2375' })).toBe('tcp://10.0.0.5:2375');
    expect(dockerEndpointFromEnv({ DOCKER_HOST: 'tcp://engine.local' })).toBe('tcp://engine.local:2375');
    expect(() => dockerEndpointFromEnv({ DOCKER_HOST: 'ssh://user@box' })).toThrow(/DOCKER_HOST "ssh:\/\/user@box"/);
    expect(() => dockerEndpointFromEnv({ DOCKER_HOST: 'unix://relative.sock' })).toThrow(/absolute path/);
  });

  it('reports an unreachable engine as not started and retryable, naming the endpoint', async () => {
    const runtime = new DockerRuntime({ socketPath: '/nonexistent/arcnet-test.sock' });
    try {
      const outcome = await runtime.run({
        image: TEST_IMAGE,
        command: ['true'],
        env: {},
        memoryBytes: 32 * 1024 * 1024,
        cpus: 1,
        network: false,
        timeoutMs: 1000,
      });
      expect(outcome).toMatchObject({ kind: 'not-started', retryable: true });
      if (outcome.kind === 'not-started') expect(outcome.reason).toContain('unix:///nonexistent/arcnet-test.sock');
      await expect(runtime.ping()).rejects.toThrow(/no Docker Engine API at unix:\/\/\/nonexistent\/arcnet-test\.sock/);
    } finally {
      await runtime.close();
    }
  });

  it('talks to the endpoint it was given even when DOCKER_HOST says otherwise', async () => {
    const saved = process.env['DOCKER_HOST'];
    process.env['DOCKER_HOST'] = 'tcp://127.0.0.1:1';
    try {
      const runtime = new DockerRuntime({ host: 'unix:///nonexistent/arcnet-test.sock' });
      await expect(runtime.ping()).rejects.toThrow(/unix:\/\/\/nonexistent\/arcnet-test\.sock: connect ENOENT/);
      await runtime.close();
    } finally {
      if (saved === undefined) delete process.env['DOCKER_HOST'];
      else process.env['DOCKER_HOST'] = saved;
    }
  });
});
