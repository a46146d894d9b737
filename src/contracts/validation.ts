/** Compiled validators for the message schemas, and readable errors naming the failing field. */
import { FormatRegistry, type TSchema, type Static } from '@sinclair/typebox';
import { TypeCompiler, type TypeCheck } from '@sinclair/typebox/compiler';
import { isUuid } from '../core/ids.ts';
import { INSTANT_RANGE, isInstant, parseInstant } from '../core/instants.ts';
import { schemas, type SchemaName, type MessageTypes } from './messages.ts';

if (!FormatRegistry.Has('uuid')) FormatRegistry.Set('uuid', isUuid);
// Every instant a producer sends must be storable and printable (src/core/instants.ts), not merely parseable.
if (!FormatRegistry.Has('date-time')) FormatRegistry.Set('date-time', isInstant);

const compiled = new Map<TSchema, TypeCheck<TSchema>>();

function compile<T extends TSchema>(schema: T): TypeCheck<T> {
  let check = compiled.get(schema);
  if (!check) {
    check = TypeCompiler.Compile(schema);
    compiled.set(schema, check);
  }
  return check as TypeCheck<T>;
}

export type Validation<T> = { ok: true; value: T } | { ok: false; error: string };

/**
 * Validates and names the first failing field, e.g. `/batteryLevel: Expected number to be less or
 * equal to 1`. Nothing is coerced: `"0x10"` is not a number and `true` is not 1, on the bus as on the API.
 */
export function validate<T extends TSchema>(schema: T, value: unknown): Validation<Static<T>> {
  const check = compile(schema);
  if (check.Check(value)) return { ok: true, value };
  const first = check.Errors(value).First();
  if (!first) return { ok: false, error: 'value does not match the schema' };
  const where = first.path === '' ? '(root)' : first.path;
  if (first.schema['format'] === 'date-time' && typeof first.value === 'string') {
    const parsed = parseInstant(first.value);
    return { ok: false, error: `${where}: ${parsed.ok ? first.message : `${parsed.problem}; expected an ISO-8601 instant from ${INSTANT_RANGE}`}` };
  }
  return { ok: false, error: `${where}: ${first.message}` };
}

export function validateMessage<N extends SchemaName>(name: N, value: unknown): Validation<MessageTypes[N]> {
  return validate(schemas[name].schema, value) as Validation<MessageTypes[N]>;
}
