/**
 * Message body codecs, chosen per record by its `content-type` header (ADR 0001, ADR 0018). A writer
 * uses one codec; every reader reads all of them, so a producer can switch codec without a
 * migration. The bodies are JSON values (what src/contracts/validation.ts accepts), and both codecs
 * give a reader the same value for the same message: what `JSON.parse(JSON.stringify(message))`
 * gives.
 *
 * MessagePack is written by msgpackr in its standard mode, readable by any MessagePack decoder:
 * - `useRecords: false`: no record structures. Those are per-process state of the encoder; a
 *   Kafka reader in another process (or after a restart) would not have them.
 * - `skipValues: [undefined]`: an optional field set to `undefined` is left out, as JSON.stringify
 *   does (msgpackr would otherwise write an `undefined` extension, and with `encodeUndefinedAsNil` a
 *   `null`, which an optional string field refuses).
 * - `encodeUndefinedAsNil`: an `undefined` inside an array becomes `null`, as in JSON.
 * - `useFloat32: NEVER`: every non-integer number is a float64, so numbers come back bit for bit;
 *   integers beyond 32 bits are float64 too, exact up to Number.MAX_SAFE_INTEGER.
 * - `int64AsType: 'number'`: a foreign writer's int64 reads as a number (validation then bounds it),
 *   never as a BigInt that no schema accepts; `mapsAsObjects`: maps read as plain objects.
 * - no `moreTypes`, no `structuredClone`: no Map, Set, typed-array or reference extensions.
 * What still differs from JSON lies outside the schemas' types: a `Date` (msgpackr writes the
 * timestamp extension and reads a Date back; JSON writes its ISO string), a function (null where
 * JSON leaves the key out), and a `__proto__` key (msgpackr reads it as `__proto_`, its guard
 * against prototype pollution). Every schema field is a string, number, boolean, array or object of
 * those, so validation refuses a Date or a function on both sides; only SystemEvent's free-form
 * `details` could carry one, and its producers put strings, numbers and null there.
 */
import { C1, FLOAT32_OPTIONS, Packr, Unpackr, type Options } from 'msgpackr';
import { errorMessage } from '../core/errors.ts';

export const JSON_CONTENT_TYPE = 'application/json';
/**
 * The media type IANA registered for MessagePack in 2024. `application/msgpack` and
 * `application/x-msgpack`, the unregistered names in use before, are read as the same codec.
 */
export const MSGPACK_CONTENT_TYPE = 'application/vnd.msgpack';
const MSGPACK_ALIASES: readonly string[] = ['application/msgpack', 'application/x-msgpack'];

export type CodecName = 'json' | 'msgpack';

export interface Codec {
  readonly name: CodecName;
  /** What a record carries in its `content-type` header. */
  readonly contentType: string;
  /** A validated message to bytes; throws only on values that are not JSON values (a cycle, a BigInt). */
  encode(message: unknown): Buffer;
  /** Bytes to a value, or the reason they are not a body of this codec. The value is not validated. */
  decode(bytes: Uint8Array): DecodedBody;
}

export type DecodedBody = { ok: true; value: unknown } | { ok: false; reason: string };

export const jsonCodec: Codec = {
  name: 'json',
  contentType: JSON_CONTENT_TYPE,
  encode: (message) => Buffer.from(JSON.stringify(message)),
  decode(bytes) {
    try {
      return { ok: true, value: JSON.parse(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8')) };
    } catch (error) {
      return { ok: false, reason: `payload is not valid JSON (${errorMessage(error)})` };
    }
  },
};

// `skipValues` is read by msgpackr's encoder (its README documents it) but missing from its Options type.
const MSGPACK_OPTIONS: Options & { skipValues: readonly unknown[] } = {
  useRecords: false,
  mapsAsObjects: true,
  skipValues: [undefined],
  encodeUndefinedAsNil: true,
  useFloat32: FLOAT32_OPTIONS.NEVER,
  int64AsType: 'number',
  moreTypes: false,
  structuredClone: false,
  bundleStrings: false,
};
const packr = new Packr(MSGPACK_OPTIONS);
const unpackr = new Unpackr(MSGPACK_OPTIONS);

export const msgpackCodec: Codec = {
  name: 'msgpack',
  contentType: MSGPACK_CONTENT_TYPE,
  // pack() returns a slice of an 8 KiB slab that later packs write after, never over (as Buffer.from
  // uses Node's pool), so a record may be held (staged in a batch, retried) without a copy.
  encode: (message) => packr.pack(message),
  decode(bytes) {
    try {
      // A body that ends early, or has bytes left after its one value, throws.
      const value: unknown = unpackr.unpack(bytes);
      // msgpackr reads the never-used byte 0xc1 as a marker object instead of refusing it; nested, validation refuses it.
      if (value === C1) return { ok: false, reason: 'payload is not valid MessagePack (the never-used byte 0xc1)' };
      return { ok: true, value };
    } catch (error) {
      return { ok: false, reason: `payload is not valid MessagePack (${errorMessage(error)})` };
    }
  },
};

export const codecs: Readonly<Record<CodecName, Codec>> = { json: jsonCodec, msgpack: msgpackCodec };

/** The codec a writer uses unless told otherwise: the one that won on the routing path (ADR 0018). */
export const DEFAULT_CODEC: CodecName = 'json';

/**
 * The codec for a record's `content-type` (absent: JSON, as records written before the header
 * existed), or undefined when no codec here reads it. Parameters (`; charset=utf-8`) and case are ignored.
 */
export function codecForContentType(contentType: string | undefined): Codec | undefined {
  if (contentType === undefined || contentType === JSON_CONTENT_TYPE) return jsonCodec;
  if (contentType === MSGPACK_CONTENT_TYPE) return msgpackCodec;
  const media = contentType.split(';', 1)[0]!.trim().toLowerCase();
  if (media === JSON_CONTENT_TYPE) return jsonCodec;
  if (media === MSGPACK_CONTENT_TYPE || MSGPACK_ALIASES.includes(media)) return msgpackCodec;
  return undefined;
}
