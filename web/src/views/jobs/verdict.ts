/** One sentence on where a job stands with its quorum: what the operator reads first on a job. */
import type { Job } from '../../api/types.ts';

export function verdictOf(job: Job): string {
  const counts = job.execution_counts ?? {};
  const executions = job.executions ?? [];
  const agreeing = executions.filter((e) => e.verdict === 'agree').length;
  const disagreeing = executions.filter((e) => e.verdict === 'disagree').length;
  const reported = executions.length > 0 ? executions.filter((e) => e.completed_at !== null).length : (counts['completed'] ?? 0) + (counts['failed'] ?? 0) + (counts['timed_out'] ?? 0);
  if (job.status === 'completed') {
    const hash = job.result_hash ? ` on ${job.result_hash.slice(0, 12)}…` : '';
    return `verified: ${agreeing || job.consensus} of ${job.redundancy} agreed${hash}${disagreeing > 0 ? `, ${disagreeing} disagreed` : ''}`;
  }
  if (job.status === 'failed') return `failed: ${job.error_message ?? 'no quorum'}`;
  if (job.status === 'running') return `running: ${reported} of ${job.redundancy} reported, ${job.consensus} must agree`;
  return `pending: waiting for ${job.redundancy} eligible worker${job.redundancy === 1 ? '' : 's'}`;
}
