/**
 * A protobuf reader driven by a protobufjs-style JSON schema, without generated code: protobufjs
 * compiles its decoders with `new Function`, which a page whose Content-Security-Policy forbids
 * 'unsafe-eval' (the demo server's) cannot run. The output has the shape protobufjs's
 * `toObject(message, { longs: Number, arrays: true, defaults: false })` gives: every repeated
 * field an array (empty when absent), other fields only where present, 64-bit integers as
 * numbers, strings decoded from UTF-8, and bytes as views into the input (no copy: a model's
 * weights stay where they were read). Wire format: https://protobuf.dev/programming-guides/encoding/
 */

/** A field as the schema declares it. */
export interface WireField {
  readonly type: string;
  readonly id: number;
  readonly rule?: "repeated";
}

/** The messages of a schema by name, each its fields by name. */
export type WireSchema = Readonly<Record<string, { readonly fields: Record<string, WireField> }>>;

type Value = number | string | Uint8Array | WireObject | Value[];
export interface WireObject {
  [field: string]: Value;
}

const SCALARS: ReadonlySet<string> = new Set([
  "int32",
  "int64",
  "uint32",
  "uint64",
  "float",
  "double",
  "string",
  "bytes",
]);

/** Wire types: varint, 64-bit, length-delimited, 32-bit. */
const VARINT = 0;
const FIXED64 = 1;
const LENGTH = 2;
const FIXED32 = 5;

const utf8 = new TextDecoder("utf-8");

class Reader {
  pos: number;
  private readonly view: DataView;

  constructor(
    readonly bytes: Uint8Array,
    start: number,
    readonly end: number,
  ) {
    this.pos = start;
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  fail(what: string): never {
    throw new Error(`${what} at byte ${this.pos}`);
  }

  /** A varint as its low and high 32 bits (both unsigned). */
  varint(): [number, number] {
    let lo = 0;
    let hi = 0;
    for (let shift = 0; shift < 64; shift += 7) {
      if (this.pos >= this.end) this.fail("truncated varint");
      const b = this.bytes[this.pos++];
      const bits = b & 0x7f;
      if (shift < 28) lo |= bits << shift;
      else if (shift === 28) {
        lo |= (bits & 0x0f) << 28;
        hi |= bits >>> 4;
      } else hi |= bits << (shift - 32);
      if (b < 0x80) return [lo >>> 0, hi >>> 0];
    }
    return this.fail("varint longer than 10 bytes");
  }

  uint32(): number {
    return this.varint()[0];
  }

  /** A length-delimited field's extent, checked against the message's end. */
  span(): [number, number] {
    const length = this.uint32();
    const start = this.pos;
    if (start + length > this.end) this.fail("length past the end of the message");
    this.pos = start + length;
    return [start, start + length];
  }

  /** Steps over `bytes` fixed-width bytes and returns where they begin. */
  fixed(bytes: 4 | 8): number {
    if (this.pos + bytes > this.end) this.fail(`truncated fixed${8 * bytes}`);
    const at = this.pos;
    this.pos += bytes;
    return at;
  }

  float(): number {
    return this.view.getFloat32(this.fixed(4), true);
  }

  double(): number {
    return this.view.getFloat64(this.fixed(8), true);
  }

  skip(wireType: number): void {
    if (wireType === VARINT) this.varint();
    else if (wireType === FIXED64) this.fixed(8);
    else if (wireType === LENGTH) this.span();
    else if (wireType === FIXED32) this.fixed(4);
    else this.fail(`unsupported wire type ${wireType}`);
  }
}

/** A varint as the scalar `type` reads it (64-bit values as the nearest number). */
function fromVarint(type: string, [lo, hi]: [number, number]): number {
  switch (type) {
    case "int64":
      return (hi | 0) * 2 ** 32 + lo;
    case "uint64":
      return hi * 2 ** 32 + lo;
    case "int32":
      return lo | 0;
    default:
      return lo;
  }
}

function readScalar(r: Reader, type: string, wireType: number): number | string | Uint8Array {
  if (type === "string" || type === "bytes") {
    if (wireType !== LENGTH) r.fail(`${type} field with wire type ${wireType}`);
    const [start, end] = r.span();
    const view = r.bytes.subarray(start, end);
    return type === "string" ? utf8.decode(view) : view;
  }
  if (type === "float") {
    if (wireType !== FIXED32) r.fail(`float field with wire type ${wireType}`);
    return r.float();
  }
  if (type === "double") {
    if (wireType !== FIXED64) r.fail(`double field with wire type ${wireType}`);
    return r.double();
  }
  if (wireType !== VARINT) r.fail(`${type} field with wire type ${wireType}`);
  return fromVarint(type, r.varint());
}

/** Packed repeated numbers: one length-delimited run of values. */
function readPacked(r: Reader, type: string, into: Value[]): void {
  const [start, end] = r.span();
  const inner = new Reader(r.bytes, start, end);
  while (inner.pos < end) {
    if (type === "float") into.push(inner.float());
    else if (type === "double") into.push(inner.double());
    else into.push(fromVarint(type, inner.varint()));
  }
}

function readMessage(schema: WireSchema, typeName: string, r: Reader): WireObject {
  const message = schema[typeName];
  if (!message) throw new Error(`the schema has no message ${typeName}`);
  const byId = fieldsById(schema, typeName);
  const out: WireObject = {};
  for (const [name, field] of Object.entries(message.fields))
    if (field.rule === "repeated") out[name] = [];
  while (r.pos < r.end) {
    const key = r.uint32();
    const id = key >>> 3;
    const wireType = key & 7;
    const entry = byId.get(id);
    if (!entry) {
      r.skip(wireType);
      continue;
    }
    const [name, field] = entry;
    const scalar = SCALARS.has(field.type);
    if (field.rule === "repeated") {
      const list = out[name] as Value[];
      if (scalar && wireType === LENGTH && field.type !== "string" && field.type !== "bytes")
        readPacked(r, field.type, list);
      else if (scalar) list.push(readScalar(r, field.type, wireType));
      else list.push(readNested(schema, field.type, r, wireType));
    } else if (scalar) out[name] = readScalar(r, field.type, wireType);
    else out[name] = readNested(schema, field.type, r, wireType);
  }
  return out;
}

function readNested(schema: WireSchema, type: string, r: Reader, wireType: number): WireObject {
  if (wireType !== LENGTH) r.fail(`message ${type} with wire type ${wireType}`);
  const [start, end] = r.span();
  return readMessage(schema, type, new Reader(r.bytes, start, end));
}

const idTables = new WeakMap<WireSchema, Map<string, Map<number, [string, WireField]>>>();

function fieldsById(schema: WireSchema, typeName: string): Map<number, [string, WireField]> {
  let tables = idTables.get(schema);
  if (!tables) {
    tables = new Map();
    idTables.set(schema, tables);
  }
  let table = tables.get(typeName);
  if (!table) {
    table = new Map(
      Object.entries(schema[typeName].fields).map(([name, f]) => [f.id, [name, f]] as const),
    );
    tables.set(typeName, table);
  }
  return table;
}

/** Decodes `bytes` as the message `typeName` of `schema`. */
export function decodeWire(schema: WireSchema, typeName: string, bytes: Uint8Array): WireObject {
  return readMessage(schema, typeName, new Reader(bytes, 0, bytes.byteLength));
}
