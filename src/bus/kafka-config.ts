/**
 * Connection settings for the Kafka Bus adapter: the options type, the seed's environment variables,
 * the client options @platformatic/kafka takes, and how its errors map onto ArcError.
 */
import { findErrorBy, GenericError } from '@platformatic/kafka';
import type { BaseOptions, SASLOptions } from '@platformatic/kafka';
import { ArcError, errorMessage } from '../core/errors.ts';
import type { Logger } from '../core/logging.ts';
import { readPem } from '../core/tls.ts';

export type KafkaSaslMechanism = 'PLAIN' | 'SCRAM-SHA-256' | 'SCRAM-SHA-512';
export type KafkaSecurityProtocol = 'PLAINTEXT' | 'SSL' | 'SASL_PLAINTEXT' | 'SASL_SSL';

export interface KafkaSasl {
  readonly mechanism: KafkaSaslMechanism;
  readonly username: string;
  readonly password: string;
}

export interface KafkaConnectionOptions {
  /** `host:port` seeds; the rest of the cluster is discovered from them. */
  readonly bootstrapServers: readonly string[];
  readonly clientId: string;
  readonly sasl?: KafkaSasl;
  /** TLS (SSL and SASL_SSL): with the system's CAs, or `tlsCa`'s. */
  readonly tls?: boolean;
  /** PEM CA bundle the brokers' certificates must chain to (KAFKA_SSL_CA_LOCATION). */
  readonly tlsCa?: string;
  readonly logger?: Logger;
}

const SECURITY_PROTOCOLS: readonly KafkaSecurityProtocol[] = ['PLAINTEXT', 'SSL', 'SASL_PLAINTEXT', 'SASL_SSL'];
const SASL_MECHANISMS: readonly KafkaSaslMechanism[] = ['PLAIN', 'SCRAM-SHA-256', 'SCRAM-SHA-512'];

/**
 * The seed's variables: KAFKA_BOOTSTRAP_SERVERS (comma-separated host:port), KAFKA_SECURITY_PROTOCOL
 * (PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL; default PLAINTEXT) and, for the SASL ones,
 * KAFKA_SASL_MECHANISM, KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD; for the SSL ones, KAFKA_SSL_CA_LOCATION
 * (a PEM file; default the system's CAs). Throws INVALID_INPUT naming the variable at fault.
 */
export function kafkaOptionsFromEnv(env: NodeJS.ProcessEnv = process.env): KafkaConnectionOptions {
  const servers = parseBootstrapServers(env['KAFKA_BOOTSTRAP_SERVERS'] ?? '');
  const protocol = (env['KAFKA_SECURITY_PROTOCOL']?.trim() || 'PLAINTEXT').toUpperCase();
  if (!(SECURITY_PROTOCOLS as readonly string[]).includes(protocol)) {
    throw invalid(`KAFKA_SECURITY_PROTOCOL "${protocol}" is not one of ${SECURITY_PROTOCOLS.join(', ')}`);
  }
  const tls = protocol === 'SSL' || protocol === 'SASL_SSL';
  const caPath = env['KAFKA_SSL_CA_LOCATION']?.trim() || undefined;
  // A CA without TLS would leave the user believing the connection is verified when it is plaintext.
  if (caPath !== undefined && !tls) throw invalid(`KAFKA_SSL_CA_LOCATION is set but KAFKA_SECURITY_PROTOCOL is ${protocol}: use SSL or SASL_SSL`);
  const tlsCa = caPath === undefined ? {} : { tlsCa: readPem(caPath, 'KAFKA_SSL_CA_LOCATION', 'CA') };
  if (!protocol.startsWith('SASL_')) return { bootstrapServers: servers, clientId: 'arcnet', tls, ...tlsCa };
  const mechanism = env['KAFKA_SASL_MECHANISM']?.trim().toUpperCase() ?? '';
  if (!(SASL_MECHANISMS as readonly string[]).includes(mechanism)) {
    throw invalid(`KAFKA_SECURITY_PROTOCOL ${protocol} needs KAFKA_SASL_MECHANISM set to one of ${SASL_MECHANISMS.join(', ')} (got "${mechanism}")`);
  }
  const username = env['KAFKA_SASL_USERNAME'] ?? '';
  const password = env['KAFKA_SASL_PASSWORD'] ?? '';
  if (!username || !password) throw invalid(`KAFKA_SECURITY_PROTOCOL ${protocol} needs KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD`);
  return { bootstrapServers: servers, clientId: 'arcnet', tls, ...tlsCa, sasl: { mechanism: mechanism as KafkaSaslMechanism, username, password } };
}

export function parseBootstrapServers(value: string): string[] {
  const servers = value.split(',').map((s) => s.trim()).filter((s) => s.length > 0);
  if (servers.length === 0) throw invalid('KAFKA_BOOTSTRAP_SERVERS is not set (comma-separated host:port, e.g. 127.0.0.1:19092)');
  for (const server of servers) {
    const port = Number(server.slice(server.lastIndexOf(':') + 1));
    if (!server.includes(':') || !Number.isInteger(port) || port <= 0 || port > 65_535) {
      throw invalid(`KAFKA_BOOTSTRAP_SERVERS entry "${server}" is not host:port`);
    }
  }
  return servers;
}

function invalid(message: string): ArcError {
  return new ArcError('INVALID_INPUT', message, { retryable: false });
}

/** Options every client (admin, producer, consumer) shares; `retries` are the library's own, inside one call. */
export function baseClientOptions(
  options: KafkaConnectionOptions,
  role: string,
  extra: { connectTimeoutMs?: number; requestTimeoutMs?: number; transactional?: boolean } = {},
): BaseOptions {
  const sasl: SASLOptions | undefined = options.sasl
    ? { mechanism: options.sasl.mechanism, username: options.sasl.username, password: options.sasl.password }
    : undefined;
  return {
    clientId: `${options.clientId}-${role}`,
    bootstrapBrokers: [...options.bootstrapServers],
    connectTimeout: extra.connectTimeoutMs ?? 5_000,
    requestTimeout: extra.requestTimeoutMs ?? 30_000,
    timeout: extra.requestTimeoutMs ?? 30_000,
    // Two quick retries smooth over a leader move; longer outages are retried by the adapter with
    // backoff and a bound it controls. (An idempotent producer turns retries <= 1 into "forever".)
    // A transactional producer gets more: the broker answers CONCURRENT_TRANSACTIONS while it still
    // writes the previous transaction's markers, usually for a few ms but under load for a few hundred,
    // and giving up after three quick tries aborted the batch (it was redelivered, correctly, but late).
    retries: extra.transactional ? 16 : 2,
    retryDelay: (_client, _operation, attempt, _retries, error) => (hasApiError(error, 'CONCURRENT_TRANSACTIONS') ? concurrentTransactionDelay(attempt) : 250),
    ...(sasl ? { sasl } : {}),
    ...(options.tls ? { tls: options.tlsCa === undefined ? {} : { ca: options.tlsCa } } : {}),
  };
}

/**
 * Backoff for CONCURRENT_TRANSACTIONS, attempt counted from 1. The next transaction's first request
 * meets it while the broker writes the last one's commit markers, about 1–3 ms on loopback: eight
 * 1 ms tries cover that (5 ms tries made every transaction cost 7 ms instead of 3), then 2 ms
 * doubling to 100 ms for a broker under load, about 0.3 s in all over sixteen tries.
 */
export function concurrentTransactionDelay(attempt: number): number {
  return attempt <= 8 ? 1 : Math.min(100, 2 ** (attempt - 8));
}

export function describeServers(servers: readonly string[]): string {
  return servers.join(',');
}

/** Whether the same call may succeed later: the library marks what it will not retry with canRetry false. */
export function isRetryableKafkaError(error: unknown): boolean {
  if (!(error instanceof Error)) return false;
  if (!GenericError.isGenericError(error)) return false;
  // A topic deleted or not yet visible: the adapter creates it (again) on the next attempt.
  if (isUnknownTopicError(error)) return true;
  if (findErrorBy(error, 'code', 'PLT_KFK_AUTHENTICATION')) return false;
  if (findErrorBy(error, 'code', 'PLT_KFK_USER')) return false;
  return !findErrorBy(error, 'canRetry', false);
}

/** The library reports a topic missing from metadata as a UserError with this message and nothing else to match on. */
export function isUnknownTopicError(error: unknown): boolean {
  if (!(error instanceof Error)) return false;
  if (GenericError.isGenericError(error) && findErrorBy(error, 'apiId', 'UNKNOWN_TOPIC_OR_PARTITION') !== null) return true;
  return someError(error, (e) => /^Unknown topic /.test(e.message));
}

function someError(error: Error, test: (e: Error) => boolean, depth = 0): boolean {
  if (test(error)) return true;
  if (depth > 4) return false;
  const nested = (error as Error & { errors?: unknown[] }).errors;
  return Array.isArray(nested) && nested.some((inner) => inner instanceof Error && someError(inner, test, depth + 1));
}

export function hasApiError(error: unknown, apiId: string): boolean {
  return error instanceof Error && GenericError.isGenericError(error) && findErrorBy(error, 'apiId', apiId) !== null;
}

/** The innermost messages, since the library nests "X failed 3 times" around "Connection to h:p failed". */
export function kafkaErrorDetail(error: unknown): string {
  const messages = new Set<string>();
  const visit = (e: unknown, depth: number): void => {
    if (depth > 4 || !(e instanceof Error)) return;
    const nested = (e as Error & { errors?: unknown[] }).errors;
    if (Array.isArray(nested) && nested.length > 0) {
      for (const inner of nested) visit(inner, depth + 1);
      return;
    }
    const cause = (e as Error & { cause?: unknown }).cause;
    messages.add(cause instanceof Error ? `${e.message} (${cause.message})` : e.message);
  };
  visit(error, 0);
  return messages.size > 0 ? [...messages].slice(0, 3).join('; ') : errorMessage(error);
}

export function unavailable(servers: readonly string[], what: string, error: unknown): ArcError {
  return new ArcError('UNAVAILABLE', `Kafka at ${describeServers(servers)} unavailable: ${what}: ${kafkaErrorDetail(error)}`, { retryable: true, cause: error });
}

/**
 * A produce given up on after a send may have reached the broker: one was still in flight when the
 * adapter stopped waiting (it may still land), or one failed in a way that does not rule out an
 * append (a request timed out, a connection dropped mid-request), or the call went in several sends
 * (a backlog over one request's limit) and some were acknowledged before one failed. The records may
 * be in the log, so the caller must not take the error for "not published": `outcomeUnknown` says
 * so, and a retry with the same message ids is the way out (readers deduplicate by id).
 * `acknowledgedRecords` counts the records, from the call's first, that the broker acknowledged: a
 * caller may resend only the rest. Same code and retryability as the error it stands for (UNAVAILABLE,
 * retryable, past the operation timeout; or what refused the failed send).
 */
export class ProduceOutcomeUnknownError extends ArcError {
  readonly outcomeUnknown = true;
  readonly acknowledgedRecords: number;

  constructor(error: ArcError, progress: { acknowledged: number; total: number; restMayHaveLanded: boolean } = { acknowledged: 0, total: 0, restMayHaveLanded: true }) {
    super(error.code, `${error.message}; ${describeProgress(progress)}`, { retryable: error.retryable, cause: error });
    this.name = 'ProduceOutcomeUnknownError';
    this.acknowledgedRecords = progress.acknowledged;
  }
}

function describeProgress({ acknowledged, total, restMayHaveLanded }: { acknowledged: number; total: number; restMayHaveLanded: boolean }): string {
  if (acknowledged === 0) return 'the records may have been appended all the same (a send reached the broker or was still under way): retry with the same ids';
  const rest = total - acknowledged;
  const others = restMayHaveLanded ? `the other ${rest} may have been appended all the same (a send reached the broker or was still under way)` : `the other ${rest} were not`;
  return `the first ${acknowledged} of ${total} records were appended (acknowledged), ${others}: retry with the same ids, or resend only the rest`;
}

/**
 * Failures that happen before a request is written: no connection could be made, the broker was not
 * in the metadata, the client was closed, the topic is unknown, or the partition's leader refused
 * the request outright. A produce that failed only so appended nothing.
 */
const NOT_SENT_MESSAGES = [
  /^Connection to \S+ (failed|timed out)\.$/,
  /^Connection ready timed out after /,
  /^Connection closed while waiting for ready\.$/,
  /^Connection pool is closed\.$/,
  /^Cannot get a connection: /,
  /^Client is closed\.$/,
  /^Unknown topic /,
];
// A batch over the topic's max.message.bytes (MESSAGE_TOO_LARGE) or a request the broker cannot take
// (RECORD_LIST_TOO_LARGE) is refused whole before anything of it is appended.
const REFUSED_BEFORE_APPEND = new Set(['NOT_LEADER_OR_FOLLOWER', 'LEADER_NOT_AVAILABLE', 'NOT_ENOUGH_REPLICAS', 'UNKNOWN_TOPIC_OR_PARTITION', 'MESSAGE_TOO_LARGE', 'RECORD_LIST_TOO_LARGE']);

/** Whether this send failure proves nothing was appended (see NOT_SENT_MESSAGES); anything unrecognised may have been. */
export function provesNotAppended(error: unknown): boolean {
  const leaves = innermost(error);
  return (
    leaves.length > 0 &&
    leaves.every((leaf) => {
      const apiId = (leaf as Error & { apiId?: unknown }).apiId;
      if (typeof apiId === 'string') return REFUSED_BEFORE_APPEND.has(apiId);
      return NOT_SENT_MESSAGES.some((pattern) => pattern.test(leaf.message));
    })
  );
}

/** The errors at the bottom of the library's nesting ("produce failed 3 times" around each attempt's). */
function innermost(error: unknown, depth = 0): Error[] {
  if (!(error instanceof Error)) return [];
  const nested = (error as Error & { errors?: unknown[] }).errors;
  if (depth > 6 || !Array.isArray(nested) || nested.length === 0) return [error];
  return nested.flatMap((inner) => innermost(inner, depth + 1));
}
