/**
 * Seed 000 §4's classifier: a training job goes to HPC when its estimated FLOPs are over 1e18, its
 * dataset over 100 GB, or its urgency is critical; otherwise to the federated mesh. The thresholds
 * are configuration (`bridge.hpc-flops-threshold`, `bridge.hpc-dataset-gb-threshold`), "over" is
 * strict as in the seed (`>`: a job exactly at a threshold stays federated), the rules are tried in
 * the seed's order and the first that matches names itself in the reason. A submitter's explicit
 * target is honoured before any rule. Pure: the bridge and the bench call it per job.
 */

export type TrainingTarget = 'hpc' | 'federated';

export interface ClassifierThresholds {
  /** Estimated FLOPs over this go to HPC (seed: 1e18). */
  readonly hpcFlops: number;
  /** Datasets over this many GB go to HPC (seed: 100). */
  readonly hpcDatasetGb: number;
}

export const DEFAULT_THRESHOLDS: ClassifierThresholds = { hpcFlops: 1e18, hpcDatasetGb: 100 };

/** Which rule decided: the submitter, one of the seed's three, or none of them (federated). */
export type ClassificationRule = 'explicit' | 'flops' | 'dataset' | 'urgency' | 'default';

export interface ClassifiableJob {
  readonly datasetSizeGb: number;
  readonly estimatedFlops: number;
  readonly urgency?: 'critical' | 'normal' | 'low' | undefined;
  /** The submitter's own choice, honoured as given. */
  readonly target?: TrainingTarget | undefined;
}

export interface Classification {
  readonly target: TrainingTarget;
  readonly rule: ClassificationRule;
  /** A sentence naming the rule and the values: "dataset 250 GB is over the 100 GB HPC threshold". */
  readonly reason: string;
}

export function classify(job: ClassifiableJob, thresholds: ClassifierThresholds = DEFAULT_THRESHOLDS): Classification {
  if (job.target !== undefined) return { target: job.target, rule: 'explicit', reason: `the submitter asked for ${job.target === 'hpc' ? 'HPC' : 'federated'}` };
  const flops = formatFlops(job.estimatedFlops);
  const limitFlops = formatFlops(thresholds.hpcFlops);
  const gb = formatGb(job.datasetSizeGb);
  const limitGb = formatGb(thresholds.hpcDatasetGb);
  if (job.estimatedFlops > thresholds.hpcFlops) return { target: 'hpc', rule: 'flops', reason: `estimated ${flops} FLOPs is over the ${limitFlops} FLOPs HPC threshold` };
  if (job.datasetSizeGb > thresholds.hpcDatasetGb) return { target: 'hpc', rule: 'dataset', reason: `dataset ${gb} GB is over the ${limitGb} GB HPC threshold` };
  if (job.urgency === 'critical') return { target: 'hpc', rule: 'urgency', reason: 'urgency critical goes to HPC' };
  return {
    target: 'federated',
    rule: 'default',
    reason: `federated: estimated ${flops} FLOPs is not over ${limitFlops}, dataset ${gb} GB is not over ${limitGb} GB, urgency ${job.urgency ?? 'normal'} is not critical`,
  };
}

/** FLOPs in exponent form, as people write them (2e18, 1.5e17), with every digit needed to tell the value from its neighbours. */
export function formatFlops(value: number): string {
  if (value === 0) return '0';
  if (value < 1e6) return String(value);
  return value.toExponential().replace('e+', 'e');
}

/** GB as given: the shortest form that reads back as the same number, so a value beside its threshold never prints as the threshold. */
export function formatGb(value: number): string {
  return String(value);
}
