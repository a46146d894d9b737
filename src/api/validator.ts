/**
 * How every route's input is checked, on every server `buildServer` makes. Fastify's default Ajv
 * coerces every part alike, so a JSON body's `"0x10"` became 16, `true` became 1 and `false` became
 * `"false"`, and `"Infinity"` passed a numeric check as Infinity (then stored as null). Here Ajv
 * coerces nothing. A JSON body has real types, so it is validated exactly as sent. The querystring,
 * params and headers arrive as text, so there a string still becomes the integer, number or boolean
 * its schema names (`?limit=20`), but only when written the plain way: decimal digits, `true` or
 * `false`. Ajv's coercion took `?limit=0x10` as 16, `" 7"` as 7, and `?limit=Infinity` as Infinity,
 * which then passed a `maximum` of 1000; here those stay strings and fail as "must be integer".
 *
 * The rest is Fastify's default (`@fastify/ajv-compiler`): its Ajv options, the formats of
 * `ajv-formats`, the first error only (all errors of a hostile body is a denial of service), except
 * that a misspelt field is an error rather than silently dropped (`removeAdditional: false`) and a
 * `date-time` must also be in the range of `src/core/instants.ts`. Set with `setValidatorCompiler` on
 * the root instance, so every route inherits it, those of encapsulated plugins (`job-routes.ts`) and
 * of families still to come included. Schemas added with `addSchema` are not shared with it (none are).
 */
import { Ajv, type AnySchema, type ValidateFunction } from 'ajv';
import ajvFormats from 'ajv-formats';
import type { FastifyInstance, FastifySchemaCompiler } from 'fastify';
import { ArcError } from '../core/errors.ts';
import { isInstant, parseInstant } from '../core/instants.ts';

// ajv-formats is CommonJS: under Node's ESM its plugin is both the default export and that export's `default`, the one the types name.
const addFormats = ajvFormats.default;

// RFC 3339's date-time, as ajv-formats checks it, and then one the stores and Date can hold.
const DATE_TIME = /^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:[Zz]|[+-]\d{2}:\d{2})$/;

function strictAjv(): Ajv {
  const ajv = new Ajv({ coerceTypes: false, useDefaults: true, removeAdditional: false, allErrors: false, addUsedSchema: false });
  addFormats(ajv);
  ajv.addFormat('date-time', { type: 'string', validate: (text: string) => DATE_TIME.test(text) && isInstant(text) });
  return ajv;
}

const INTEGER_TEXT = /^-?\d{1,16}$/;
const NUMBER_TEXT = /^-?\d{1,16}(?:\.\d{1,16})?$/;

type Coerce = (text: string) => unknown;

/** How a text value becomes the scalar a property schema names; undefined when it stays as it is. */
function scalarCoercion(schema: unknown): Coerce | undefined {
  const type = (schema as { type?: unknown } | null)?.type;
  if (type === 'integer') return (text) => (INTEGER_TEXT.test(text) && Number.isSafeInteger(Number(text)) ? Number(text) : text);
  if (type === 'number') return (text) => (NUMBER_TEXT.test(text) ? Number(text) : text);
  if (type === 'boolean') return (text) => (text === 'true' ? true : text === 'false' ? false : text);
  return undefined;
}

/** Converts a text part's properties in place, as its (flat, object) schema types them; a repeated key is an array. */
function textCoercion(schema: unknown): ((data: unknown) => void) | undefined {
  const properties = (schema as { properties?: Record<string, unknown> } | null)?.properties;
  if (properties === undefined) return undefined;
  const plan = new Map<string, { readonly array: boolean; readonly coerce: Coerce | undefined }>();
  for (const [name, property] of Object.entries(properties)) {
    const array = (property as { type?: unknown }).type === 'array';
    const coerce = scalarCoercion(array ? (property as { items?: unknown }).items : property);
    if (array || coerce !== undefined) plan.set(name, { array, coerce });
  }
  if (plan.size === 0) return undefined;
  return (data) => {
    if (data === null || typeof data !== 'object') return;
    const record = data as Record<string, unknown>;
    for (const [name, { array, coerce }] of plan) {
      const value = record[name];
      if (value === undefined) continue;
      if (array) {
        const items = Array.isArray(value) ? value : [value];
        record[name] = coerce === undefined ? items : items.map((item: unknown) => (typeof item === 'string' ? coerce(item) : item));
      } else if (typeof value === 'string' && coerce !== undefined) {
        record[name] = coerce(value);
      }
    }
  };
}

function compiled(ajv: Ajv, schema: AnySchema): ValidateFunction {
  // As @fastify/ajv-compiler does: Ajv refuses to compile a second schema with a known $id.
  const id = typeof schema === 'object' && '$id' in schema && typeof schema.$id === 'string' ? schema.$id : undefined;
  const known = id === undefined ? undefined : (ajv.getSchema(id) as ValidateFunction | undefined);
  return known ?? ajv.compile(schema);
}

/** The compiler for one route part: bodies exact, text parts parsed strictly into their schema's types. */
export function requestValidatorCompiler(): FastifySchemaCompiler<AnySchema> {
  const ajv = strictAjv();
  return ({ schema, httpPart }) => {
    const validate = compiled(ajv, schema);
    const coerce = httpPart === 'body' ? undefined : textCoercion(schema);
    if (coerce === undefined) return validate;
    const checked = (data: unknown): boolean => {
      coerce(data);
      const ok = validate(data) as boolean;
      checked.errors = validate.errors ?? null;
      return ok;
    };
    checked.errors = null as ValidateFunction['errors'];
    return checked;
  };
}

/** Installs the per-part validation on `app` (the root instance, before any route). */
export function installRequestValidation(app: FastifyInstance): void {
  app.setValidatorCompiler(requestValidatorCompiler());
}

/** A querystring instant (ISO-8601 or epoch milliseconds, src/core/instants.ts); a 400 naming the parameter otherwise. */
export function queryInstant(field: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const parsed = parseInstant(value, { epochMs: true });
  if (!parsed.ok) throw new ArcError('INVALID_INPUT', `querystring/${field}: ${parsed.problem}`);
  return parsed.ms;
}
