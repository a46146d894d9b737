import type { InferenceDispatch, InferenceResult } from '../contracts/messages.ts';
import { validateMessage } from '../contracts/validation.ts';
import type { InferenceRun } from './ports.ts';

/**
 * The InferenceResult for one run on a backend, as a node reports it. Always valid: a result the
 * server would reject would leave the request hanging until its reservation expires.
 */
export function resultOfRun(dispatch: InferenceDispatch, nodeId: string, outcome: InferenceRun, completedAt: number): InferenceResult {
  const result: InferenceResult = {
    schemaVersion: 1,
    requestId: dispatch.requestId,
    nodeId,
    latencyMs: Math.max(0, outcome.latencyMs),
    status: outcome.ok ? 'completed' : 'failed',
    completedAt: new Date(completedAt).toISOString(),
  };
  if (dispatch.fencingToken !== undefined) result.fencingToken = dispatch.fencingToken;
  if (outcome.ok) {
    result.outputTokens = Math.max(0, Math.round(outcome.outputTokens));
    if (outcome.output !== undefined) result.output = outcome.output.slice(0, 65_536);
  } else {
    result.error = outcome.error;
  }
  const checked = validateMessage('InferenceResult', result);
  if (checked.ok) return result;
  return {
    schemaVersion: 1,
    requestId: dispatch.requestId,
    nodeId,
    latencyMs: 0,
    status: 'failed',
    completedAt: result.completedAt,
    ...(dispatch.fencingToken === undefined ? {} : { fencingToken: dispatch.fencingToken }),
    error: `agent produced an invalid result (${checked.error})`,
  };
}
