/**
 * The console's live feed on WebSocket `/telemetry`, speaking seed 001's protocol exactly: message
 * types `telemetry`, `inference` and `system`, with the field names written there. A new client gets
 * every known node first, then the live stream. Slow clients are skipped rather than buffered
 * without bound, and inference events are capped per second so a load test cannot flood a browser.
 */
import type { WebSocket } from 'ws';
import { decodeGeohash } from '../core/geohash.ts';
import type { NodeTelemetry, Priority, SystemEvent } from '../contracts/messages.ts';
import type { NodeState } from '../mesh/node.ts';

export interface ConsoleTelemetry {
  type: 'telemetry';
  node: {
    id: string;
    geohash: string;
    energySource: 'cogen' | 'grid' | 'battery';
    batteryLevel: number;
    gpuUtilization: number;
    modelsLoaded: string[];
    timestamp: string;
  };
}

export interface ConsoleInference {
  type: 'inference';
  requestId: string;
  source: [number, number];
  targetNodeId: string;
  modelId: string;
  priority: Priority;
  status: 'dispatched' | 'processing' | 'completed' | 'failed';
  latencyMs?: number;
  timestamp: string;
}

export interface ConsoleSystem {
  type: 'system';
  severity: 'info' | 'warn' | 'error' | 'success';
  message: string;
  details?: object;
  timestamp: string;
}

export type ConsoleMessage = ConsoleTelemetry | ConsoleInference | ConsoleSystem;

const MAX_BUFFERED_BYTES = 1 << 20;

export class ConsoleHub {
  private readonly clients = new Set<WebSocket>();
  private readonly inferencePerSecond: number;
  private windowSecond = 0;
  private sentThisSecond = 0;

  constructor(inferencePerSecond = 500) {
    this.inferencePerSecond = inferencePerSecond;
  }

  get size(): number {
    return this.clients.size;
  }

  add(socket: WebSocket, snapshot: Iterable<NodeState>): void {
    this.clients.add(socket);
    socket.on('close', () => this.clients.delete(socket));
    socket.on('error', () => this.clients.delete(socket));
    for (const node of snapshot) socket.send(JSON.stringify(telemetryFromNode(node)));
  }

  telemetry(telemetry: NodeTelemetry): void {
    if (this.clients.size === 0) return;
    this.broadcast({
      type: 'telemetry',
      node: {
        id: telemetry.id,
        geohash: telemetry.geohash,
        energySource: telemetry.energySource,
        batteryLevel: telemetry.batteryLevel,
        gpuUtilization: telemetry.gpuUtilization,
        modelsLoaded: telemetry.modelsLoaded,
        timestamp: telemetry.timestamp,
      },
    });
  }

  inference(message: Omit<ConsoleInference, 'type' | 'source'> & { geohash: string | undefined }): void {
    if (this.clients.size === 0) return;
    const second = Math.floor(Date.now() / 1000);
    if (second !== this.windowSecond) {
      this.windowSecond = second;
      this.sentThisSecond = 0;
    }
    if (++this.sentThisSecond > this.inferencePerSecond) return;
    const { geohash, ...rest } = message;
    this.broadcast({ type: 'inference', ...rest, source: geohash ? decodeGeohash(geohash) : [0, 0] });
  }

  system(event: SystemEvent): void {
    if (this.clients.size === 0) return;
    this.broadcast({
      type: 'system',
      severity: event.severity,
      message: event.message,
      ...(event.details ? { details: { kind: event.kind, ...event.details } } : { details: { kind: event.kind } }),
      timestamp: event.timestamp,
    });
  }

  closeAll(): void {
    for (const client of this.clients) client.close(1001, 'server shutting down');
    this.clients.clear();
  }

  private broadcast(message: ConsoleMessage): void {
    const text = JSON.stringify(message);
    for (const client of this.clients) {
      if (client.readyState !== client.OPEN || client.bufferedAmount > MAX_BUFFERED_BYTES) continue;
      client.send(text);
    }
  }
}

export function telemetryFromNode(node: NodeState): ConsoleTelemetry {
  return {
    type: 'telemetry',
    node: {
      id: node.id,
      geohash: node.geohash,
      energySource: node.energySource,
      batteryLevel: node.batteryLevel,
      gpuUtilization: node.gpuUtilization,
      modelsLoaded: [...node.modelsLoaded],
      timestamp: new Date(node.reportedAt).toISOString(),
    },
  };
}
