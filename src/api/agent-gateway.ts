/**
 * Server side of the agent session (protocol in `src/agent/protocol.ts`). A frame that is not
 * valid gets an `error` frame naming what was wrong; the session and the server carry on.
 *
 * Identity is proven, not claimed (issue 11, DESIGN "Security"): the upgrade was authenticated by
 * the access hook, and the session's principal decides who the hello may say it is.
 * - A node key binds the session to its node id and geozone; a hello naming another is refused.
 * - An enrolment token (or an operator key) enrols the node the hello names, into the token's
 *   geozone: the server issues the node's key and returns it once, in the welcome. A node that is
 *   already enrolled is refused: only its key speaks for it.
 * - A second session of a connected node replaces the first only with the node's key; the old
 *   session is told and closed. Without keys (--insecure-no-auth) it is refused while the first lives.
 * - A result is taken only for a request dispatched to this session, with the dispatch's fencing
 *   token; telemetry cannot rename the node or move it to another geozone. Every refusal is counted
 *   in `arcnet_agent_refusals_total{reason}`.
 */
import type { WebSocket, RawData } from 'ws';
import { ArcError, errorMessage } from '../core/errors.ts';
import type { Logger } from '../core/logging.ts';
import { topics } from '../contracts/topics.ts';
import { validate, validateMessage } from '../contracts/validation.ts';
import type { InferenceDispatch } from '../contracts/messages.ts';
import type { MessageBus } from '../bus/typed-bus.ts';
import { AgentIdentity, type ServerToAgent } from '../agent/protocol.ts';
import type { DispatchRouter } from '../inference/dispatch-router.ts';
import type { KeyRing } from '../access/api-keys.ts';
import type { AuditLog } from '../access/audit.ts';
import type { Principal } from '../access/principal.ts';
import type { ArcMetrics } from './metrics.ts';
import { ClientErrorLog } from './client-errors.ts';

export interface AgentGatewayDeps {
  readonly bus: MessageBus;
  readonly router: DispatchRouter;
  readonly geozones: readonly string[];
  readonly telemetryIntervalMs: number;
  readonly logger: Logger;
  /** Issues node keys at enrolment; undefined under --insecure-no-auth. */
  readonly keys?: KeyRing | undefined;
  /** Records each enrolment (who enrolled which node, from where). */
  readonly audit?: Pick<AuditLog, 'record'> | undefined;
  readonly metrics?: Pick<ArcMetrics, 'agentRefusals'>;
  readonly onSessionsChanged?: (count: number) => void;
}

/**
 * A family's frames on the agent session (types starting with `prefix`, e.g. `services.`): opened
 * per session on its first such frame, for the node the session proved it is, closed with the session.
 */
export interface AgentSessionExtension {
  readonly prefix: string;
  open(node: { readonly id: string; readonly geozone: string }, send: (frame: object) => void): AgentSessionHandler;
}

export interface AgentSessionHandler {
  onFrame(frame: Readonly<Record<string, unknown>>): Promise<void>;
  close(): void;
}

/** WebSocket close code for a refused identity: the agent should not reconnect with it. */
export const CLOSE_REFUSED = 4000;
/** WebSocket close code for a session replaced by a newer one of the same node. */
export const CLOSE_REPLACED = 4001;

/** Dispatches a session may still answer; past this, the oldest are forgotten (their leases expire anyway). */
const MAX_OUTSTANDING = 10_000;

type RefusalReason = 'invalid-hello' | 'unknown-geozone' | 'wrong-node' | 'wrong-geozone' | 'already-enrolled' | 'already-connected' | 'not-dispatched' | 'stale-token' | 'wrong-result-node' | 'identity-change' | 'invalid-frame';

interface Session {
  readonly socket: WebSocket;
  readonly principal: Principal;
  /** The session's source address, for the audit record of an enrolment. */
  readonly address: string | undefined;
  identity: AgentIdentity | undefined;
  /** requestId → fencing token of the dispatches sent to this session and not yet answered. */
  readonly outstanding: Map<string, number | null>;
  detach: (() => void) | undefined;
  queue: Promise<void>;
  /** Its refusals, logged as every WebSocket's client errors are: a warning at most every 10 s, the rest at debug. */
  readonly clientErrors: ClientErrorLog;
  /** The extensions this session has used, by prefix. */
  readonly handlers: Map<string, AgentSessionHandler>;
}

export class AgentGateway {
  private readonly deps: AgentGatewayDeps;
  private readonly sockets = new Set<WebSocket>();
  /** node id → its live session. */
  private readonly byNode = new Map<string, Session>();
  private readonly extensions: AgentSessionExtension[] = [];

  constructor(deps: AgentGatewayDeps) {
    this.deps = deps;
  }

  /** Another family's frames on this gateway's sessions (the services module's `services.*`). */
  extend(extension: AgentSessionExtension): void {
    if (this.extensions.some((e) => e.prefix === extension.prefix)) throw new ArcError('CONFLICT', `agent session frames "${extension.prefix}*" already have a handler`, { retryable: false });
    this.extensions.push(extension);
  }

  get sessions(): number {
    return this.sockets.size;
  }

  handle(socket: WebSocket, principal: Principal, address?: string): void {
    const session: Session = { socket, principal, address, identity: undefined, outstanding: new Map(), detach: undefined, queue: Promise.resolve(), clientErrors: new ClientErrorLog(this.deps.logger, { key: principal.keyId }), handlers: new Map() };
    this.sockets.add(socket);
    this.deps.onSessionsChanged?.(this.sockets.size);

    socket.on('message', (raw: RawData) => {
      // One frame at a time per session: a hello that enrols (a store write) finishes before the telemetry behind it.
      session.queue = session.queue
        .then(() => this.onFrame(session, raw))
        .catch((error: unknown) => {
          this.deps.logger.error({ err: errorMessage(error) }, 'agent frame failed');
          this.send(session, { type: 'error', message: `server could not take the frame: ${errorMessage(error)}; retry later` });
        });
    });
    socket.on('close', () => {
      session.detach?.();
      for (const handler of session.handlers.values()) handler.close();
      session.handlers.clear();
      this.sockets.delete(socket);
      if (session.identity && this.byNode.get(session.identity.id) === session) this.byNode.delete(session.identity.id);
      this.deps.onSessionsChanged?.(this.sockets.size);
      if (session.identity) this.deps.logger.info({ nodeId: session.identity.id, name: session.identity.name }, 'agent disconnected');
    });
    socket.on('error', () => socket.terminate());
  }

  closeAll(): void {
    for (const socket of this.sockets) socket.close(1012, 'server restarting');
  }

  private send(session: Session, message: ServerToAgent): void {
    if (session.socket.readyState === session.socket.OPEN) session.socket.send(JSON.stringify(message));
  }

  /** A client's mistake: an error frame, a counted refusal, and a warning at most every 10 s per session. */
  private refuse(session: Session, reason: RefusalReason, message: string, close?: string): void {
    this.deps.metrics?.agentRefusals.inc({ reason });
    this.send(session, { type: 'error', message });
    session.clientErrors.note(message, { nodeId: session.identity?.id, reason });
    if (close !== undefined) session.socket.close(CLOSE_REFUSED, close);
  }

  private async onFrame(session: Session, raw: RawData): Promise<void> {
    let frame: { type?: unknown; [key: string]: unknown };
    try {
      frame = JSON.parse(raw.toString()) as typeof frame;
    } catch {
      return this.refuse(session, 'invalid-frame', 'frame is not valid JSON');
    }
    if (frame === null || typeof frame !== 'object' || Array.isArray(frame)) return this.refuse(session, 'invalid-frame', 'frame must be a JSON object with a "type"');
    if (frame.type === 'hello') return this.hello(session, frame['node']);
    const identity = session.identity;
    if (!identity) return this.refuse(session, 'invalid-frame', `"${String(frame.type)}" before hello: say hello with the node's identity first`);
    if (frame.type === 'telemetry') return this.telemetry(session, identity, frame['telemetry']);
    if (frame.type === 'result') return this.result(session, identity, frame['result']);
    const extension = typeof frame.type === 'string' ? this.extensions.find((e) => (frame.type as string).startsWith(e.prefix)) : undefined;
    if (extension) {
      let handler = session.handlers.get(extension.prefix);
      if (!handler) {
        handler = extension.open({ id: identity.id, geozone: identity.geozone }, (message) => {
          if (session.socket.readyState === session.socket.OPEN) session.socket.send(JSON.stringify(message));
        });
        session.handlers.set(extension.prefix, handler);
      }
      return handler.onFrame(frame);
    }
    const known = ['hello', 'telemetry', 'result', ...this.extensions.map((e) => `${e.prefix}*`)].join(', ');
    return this.refuse(session, 'invalid-frame', `unknown frame type "${String(frame.type)}" (expected ${known})`);
  }

  private async hello(session: Session, node: unknown): Promise<void> {
    if (session.identity) return this.refuse(session, 'invalid-frame', `this session already said hello as node ${session.identity.id}`);
    const checked = validate(AgentIdentity, node);
    if (!checked.ok) return this.refuse(session, 'invalid-hello', `hello refused: node${checked.error}`, 'invalid identity');
    const identity = checked.value;
    const { principal } = session;
    if (!this.deps.geozones.includes(identity.geozone)) {
      return this.refuse(session, 'unknown-geozone', `hello refused: geozone "${identity.geozone}" is not served here (known: ${this.deps.geozones.join(', ')})`, 'unknown geozone');
    }
    let credential: string | undefined;
    if (principal.role === 'node') {
      if (identity.id !== principal.nodeId) return this.refuse(session, 'wrong-node', `hello refused: key ${principal.keyId} belongs to node ${principal.nodeId}, not ${identity.id}`, 'wrong node');
      if (identity.geozone !== principal.geozone) return this.refuse(session, 'wrong-geozone', `hello refused: node ${identity.id} is enrolled in ${principal.geozone}, not ${identity.geozone}`, 'wrong geozone');
    } else if (this.deps.keys) {
      if (principal.role === 'enrolment' && identity.geozone !== principal.geozone) {
        return this.refuse(session, 'wrong-geozone', `hello refused: enrolment token ${principal.keyId} enrols nodes into ${principal.geozone}, not ${identity.geozone}`, 'wrong geozone');
      }
      let nodeKeyId: string;
      try {
        const enrolled = await this.deps.keys.enrolNode({ nodeId: identity.id, name: identity.name, geozone: identity.geozone, enrolledBy: principal.keyId });
        credential = enrolled.key;
        nodeKeyId = enrolled.record.id;
      } catch (error) {
        if (error instanceof ArcError && error.code === 'CONFLICT') return this.refuse(session, 'already-enrolled', `hello refused: ${error.message}`, 'already enrolled');
        throw error;
      }
      this.deps.logger.info({ nodeId: identity.id, name: identity.name, geozone: identity.geozone, enrolledBy: principal.keyId }, 'node enrolled');
      await this.deps.audit?.record({
        actor: principal.keyId,
        actorRole: principal.role,
        action: 'node.enrolled',
        target: { kind: 'node', id: identity.id },
        details: { name: identity.name, geozone: identity.geozone, node_key: nodeKeyId },
        ...(session.address === undefined ? {} : { address: session.address }),
      });
    }
    const previous = this.byNode.get(identity.id);
    if (previous && previous.socket.readyState === previous.socket.OPEN) {
      // Only the node's key (or the enrolment just made) gets here with keys on; without keys nothing proves it is the same node.
      if (!this.deps.keys) return this.refuse(session, 'already-connected', `hello refused: node ${identity.id} is connected in another session`, 'already connected');
      this.send(previous, { type: 'error', message: `this session of node ${identity.id} was replaced by a newer one presenting the node's key; closing` });
      previous.detach?.();
      previous.detach = undefined;
      previous.socket.close(CLOSE_REPLACED, 'replaced by a newer session');
    }
    session.identity = identity;
    this.byNode.set(identity.id, session);
    session.detach = this.deps.router.attach(identity.id, (dispatch) => this.deliver(session, dispatch));
    this.deps.logger.info({ nodeId: identity.id, name: identity.name, geozone: identity.geozone, backend: identity.backend }, 'agent connected');
    this.send(session, { type: 'welcome', nodeId: identity.id, telemetryIntervalMs: this.deps.telemetryIntervalMs, ...(credential === undefined ? {} : { credential }) });
  }

  private deliver(session: Session, dispatch: InferenceDispatch): void {
    session.outstanding.set(dispatch.requestId, dispatch.fencingToken ?? null);
    if (session.outstanding.size > MAX_OUTSTANDING) session.outstanding.delete(session.outstanding.keys().next().value as string);
    this.send(session, { type: 'dispatch', dispatch });
  }

  private async telemetry(session: Session, identity: AgentIdentity, sent: unknown): Promise<void> {
    if (sent === null || typeof sent !== 'object' || Array.isArray(sent)) return this.refuse(session, 'invalid-frame', 'telemetry rejected: /telemetry must be an object');
    const fields = sent as Record<string, unknown>;
    for (const field of ['id', 'name', 'geozone'] as const) {
      const own = identity[field];
      if (fields[field] !== undefined && fields[field] !== own) {
        return this.refuse(session, 'identity-change', `telemetry rejected: /${field} ${JSON.stringify(fields[field])} is not this session's ${JSON.stringify(own)} (a node cannot change its ${field})`);
      }
    }
    const telemetry = { capacity: identity.capacity, tags: identity.tags, ...fields, id: identity.id, name: identity.name, geozone: identity.geozone };
    const checked = validateMessage('NodeTelemetry', telemetry);
    if (!checked.ok) return this.refuse(session, 'invalid-frame', `telemetry rejected: ${checked.error}`);
    await this.deps.bus.publish(topics.telemetry, 'NodeTelemetry', checked.value, { headers: this.deps.router.telemetryHeaders });
  }

  private async result(session: Session, identity: AgentIdentity, sent: unknown): Promise<void> {
    const checked = validateMessage('InferenceResult', sent);
    if (!checked.ok) return this.refuse(session, 'invalid-frame', `result rejected: ${checked.error}`);
    const result = checked.value;
    if (result.nodeId !== identity.id) return this.refuse(session, 'wrong-result-node', `result rejected: /nodeId ${result.nodeId} is not this session's node ${identity.id}`);
    if (!session.outstanding.has(result.requestId)) {
      return this.refuse(session, 'not-dispatched', `result rejected: request ${result.requestId} was not dispatched to this session (or was already answered)`);
    }
    const token = session.outstanding.get(result.requestId) ?? null;
    if (token !== null && result.fencingToken !== token) {
      return this.refuse(session, 'stale-token', `result rejected: /fencingToken ${String(result.fencingToken)} is not the dispatch's ${token}`);
    }
    await this.deps.bus.publish(topics.inferenceResult, 'InferenceResult', result);
    // Only once published: a result the bus refused may be sent again.
    session.outstanding.delete(result.requestId);
  }
}
