/**
 * Server side of the agent session (protocol in `src/agent/protocol.ts`). A frame that is not
 * valid gets an `error` frame naming what was wrong; the session and the server carry on.
 */
import type { WebSocket, RawData } from 'ws';
import { errorMessage } from '../core/errors.ts';
import type { Logger } from '../core/logging.ts';
import { topics } from '../contracts/topics.ts';
import { validate, validateMessage } from '../contracts/validation.ts';
import type { MessageBus } from '../bus/typed-bus.ts';
import { AgentIdentity, type ServerToAgent } from '../agent/protocol.ts';
import type { DispatchRouter } from '../inference/dispatch-router.ts';

export interface AgentGatewayDeps {
  readonly bus: MessageBus;
  readonly router: DispatchRouter;
  readonly geozones: readonly string[];
  readonly telemetryIntervalMs: number;
  readonly logger: Logger;
  readonly onSessionsChanged?: (count: number) => void;
}

/** WebSocket close code for a refused identity: the agent should not reconnect with it. */
export const CLOSE_REFUSED = 4000;

export class AgentGateway {
  private readonly deps: AgentGatewayDeps;
  private readonly sockets = new Set<WebSocket>();

  constructor(deps: AgentGatewayDeps) {
    this.deps = deps;
  }

  get sessions(): number {
    return this.sockets.size;
  }

  handle(socket: WebSocket): void {
    let identity: AgentIdentity | undefined;
    let detach: (() => void) | undefined;
    const send = (message: ServerToAgent): void => {
      if (socket.readyState === socket.OPEN) socket.send(JSON.stringify(message));
    };
    this.sockets.add(socket);
    this.deps.onSessionsChanged?.(this.sockets.size);

    const onFrame = async (raw: RawData): Promise<void> => {
      let frame: { type?: unknown; [key: string]: unknown };
      try {
        frame = JSON.parse(raw.toString()) as typeof frame;
      } catch {
        send({ type: 'error', message: 'frame is not valid JSON' });
        return;
      }
      if (frame === null || typeof frame !== 'object') {
        send({ type: 'error', message: 'frame must be a JSON object with a "type"' });
        return;
      }
      if (frame.type === 'hello') {
        const checked = validate(AgentIdentity, frame['node']);
        if (!checked.ok) {
          send({ type: 'error', message: `hello refused: node${checked.error}` });
          socket.close(CLOSE_REFUSED, 'invalid identity');
          return;
        }
        if (!this.deps.geozones.includes(checked.value.geozone)) {
          send({ type: 'error', message: `hello refused: geozone "${checked.value.geozone}" is not served here (known: ${this.deps.geozones.join(', ')})` });
          socket.close(CLOSE_REFUSED, 'unknown geozone');
          return;
        }
        identity = checked.value;
        detach?.();
        detach = this.deps.router.attach(identity.id, (dispatch) => send({ type: 'dispatch', dispatch }));
        this.deps.logger.info({ nodeId: identity.id, name: identity.name, geozone: identity.geozone, backend: identity.backend }, 'agent connected');
        send({ type: 'welcome', nodeId: identity.id, telemetryIntervalMs: this.deps.telemetryIntervalMs });
        return;
      }
      if (!identity) {
        send({ type: 'error', message: `"${String(frame.type)}" before hello: say hello with the node's identity first` });
        return;
      }
      if (frame.type === 'telemetry') {
        const telemetry = {
          geozone: identity.geozone,
          name: identity.name,
          capacity: identity.capacity,
          tags: identity.tags,
          ...(frame['telemetry'] as object),
        };
        const checked = validateMessage('NodeTelemetry', telemetry);
        if (!checked.ok) return send({ type: 'error', message: `telemetry rejected: ${checked.error}` });
        if (checked.value.id !== identity.id) return send({ type: 'error', message: `telemetry rejected: /id ${checked.value.id} is not this session's node ${identity.id}` });
        await this.deps.bus.publish(topics.telemetry, 'NodeTelemetry', checked.value, { headers: this.deps.router.telemetryHeaders });
        return;
      }
      if (frame.type === 'result') {
        const checked = validateMessage('InferenceResult', frame['result']);
        if (!checked.ok) return send({ type: 'error', message: `result rejected: ${checked.error}` });
        if (checked.value.nodeId !== identity.id) return send({ type: 'error', message: `result rejected: /nodeId ${checked.value.nodeId} is not this session's node` });
        await this.deps.bus.publish(topics.inferenceResult, 'InferenceResult', checked.value);
        return;
      }
      send({ type: 'error', message: `unknown frame type "${String(frame.type)}" (expected hello, telemetry or result)` });
    };

    socket.on('message', (raw: RawData) => {
      onFrame(raw).catch((error: unknown) => {
        this.deps.logger.error({ err: errorMessage(error) }, 'agent frame failed');
        send({ type: 'error', message: `server could not take the frame: ${errorMessage(error)}; retry later` });
      });
    });
    socket.on('close', () => {
      detach?.();
      this.sockets.delete(socket);
      this.deps.onSessionsChanged?.(this.sockets.size);
      if (identity) this.deps.logger.info({ nodeId: identity.id, name: identity.name }, 'agent disconnected');
    });
    socket.on('error', () => socket.terminate());
  }

  closeAll(): void {
    for (const socket of this.sockets) socket.close(1012, 'server restarting');
  }
}
