/**
 * One registry, one way in (Kubernetes' `NewInTreeRegistry`, Nomad's `BuiltinSchedulers`): a family
 * registers its filter and scorer plugins by name, each as a factory from the family's config, and
 * a profile is assembled from a list of filter names and weighted scorer names. A configuration can
 * therefore pick plugins without code, and a new family adds its plugins and its list of names; it
 * never adds a branch to the framework. An unknown name is refused with the known ones listed, and
 * every plugin must carry the name it is registered under (rejection counts and score breakdowns are
 * keyed by it).
 */
import { ArcError } from '../core/errors.ts';
import type { FilterPlugin, Profile, ScorePlugin, WeightedScorer } from './framework.ts';

export type FilterFactory<N, R, C> = (config: C) => FilterPlugin<N, R>;
export type ScorerFactory<N, R, C> = (config: C) => ScorePlugin<N, R>;

export interface WeightedName {
  readonly name: string;
  readonly weight: number;
}

/** A profile as configuration: which filters, in order, and which scorers with what weight. */
export interface ProfileSpec {
  readonly filters: readonly string[];
  readonly scorers: readonly WeightedName[];
}

export class PluginRegistry<N, R, C> {
  readonly family: string;
  private readonly filterFactories = new Map<string, FilterFactory<N, R, C>>();
  private readonly scorerFactories = new Map<string, ScorerFactory<N, R, C>>();

  constructor(family: string) {
    this.family = family;
  }

  registerFilter(name: string, factory: FilterFactory<N, R, C>): this {
    if (this.filterFactories.has(name)) throw new ArcError('CONFLICT', `${this.family} filter plugin "${name}" is already registered`, { retryable: false });
    this.filterFactories.set(name, factory);
    return this;
  }

  registerScorer(name: string, factory: ScorerFactory<N, R, C>): this {
    if (this.scorerFactories.has(name)) throw new ArcError('CONFLICT', `${this.family} scorer plugin "${name}" is already registered`, { retryable: false });
    this.scorerFactories.set(name, factory);
    return this;
  }

  get filterNames(): readonly string[] {
    return [...this.filterFactories.keys()];
  }

  get scorerNames(): readonly string[] {
    return [...this.scorerFactories.keys()];
  }

  /** The profile named after the family, with the plugins `spec` names built from `config`. */
  assemble(spec: ProfileSpec, config: C): Profile<N, R> {
    const filterKind = `${this.family} filter`;
    const scorerKind = `${this.family} scorer`;
    unique(spec.filters, filterKind);
    unique(
      spec.scorers.map((s) => s.name),
      scorerKind,
    );
    return {
      name: this.family,
      filters: spec.filters.map((name) => build(this.filterFactories, name, filterKind, config)),
      scorers: spec.scorers.map(({ name, weight }): WeightedScorer<N, R> => ({ plugin: build(this.scorerFactories, name, scorerKind, config), weight })),
    };
  }
}

/** The plugin registered as `name`, built from `config`; an unknown name is refused with the known ones. */
function build<C, P extends { readonly name: string }>(factories: ReadonlyMap<string, (config: C) => P>, name: string, kind: string, config: C): P {
  const factory = factories.get(name);
  if (factory === undefined) {
    const known = [...factories.keys()].map((k) => `"${k}"`).join(', ');
    throw new ArcError('INVALID_INPUT', `unknown ${kind} plugin "${name}" (known: ${known || 'none'})`, { retryable: false });
  }
  const plugin = factory(config);
  if (plugin.name !== name) throw new ArcError('INTERNAL', `${kind} plugin registered as "${name}" calls itself "${plugin.name}"`, { retryable: false });
  return plugin;
}

function unique(names: readonly string[], kind: string): void {
  const seen = new Set<string>();
  for (const name of names) {
    if (seen.has(name)) throw new ArcError('INVALID_INPUT', `${kind} plugin "${name}" is listed twice`, { retryable: false });
    seen.add(name);
  }
}
