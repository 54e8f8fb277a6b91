/**
 * The ONNX protobuf schema (onnx/onnx.proto, IR version 10) as a protobufjs reflection root,
 * and plain TypeScript types for the messages. Field numbers follow the official schema; only
 * the messages a model file uses are declared (training info is skipped on read).
 */
import protobuf from "protobufjs";
import { decodeWire, type WireSchema } from "./wire.js";

export const TensorDataType = Object.freeze({
  UNDEFINED: 0,
  FLOAT: 1,
  UINT8: 2,
  INT8: 3,
  UINT16: 4,
  INT16: 5,
  INT32: 6,
  INT64: 7,
  STRING: 8,
  BOOL: 9,
  FLOAT16: 10,
  DOUBLE: 11,
  UINT32: 12,
  UINT64: 13,
  BFLOAT16: 16,
} as const);
export type TensorDataType = (typeof TensorDataType)[keyof typeof TensorDataType];

export const AttributeType = Object.freeze({
  UNDEFINED: 0,
  FLOAT: 1,
  INT: 2,
  STRING: 3,
  TENSOR: 4,
  GRAPH: 5,
  FLOATS: 6,
  INTS: 7,
  STRINGS: 8,
  TENSORS: 9,
  GRAPHS: 10,
} as const);
export type AttributeType = (typeof AttributeType)[keyof typeof AttributeType];

export interface StringStringEntry {
  key: string;
  value: string;
}

export interface TensorProto {
  dims: number[];
  dataType: number;
  name?: string;
  rawData?: Uint8Array;
  floatData?: number[];
  int32Data?: number[];
  int64Data?: number[];
  doubleData?: number[];
  externalData?: StringStringEntry[];
  /** 0 = default (data inline), 1 = external. */
  dataLocation?: number;
  docString?: string;
}

export interface Dimension {
  dimValue?: number;
  dimParam?: string;
}

export interface TypeProto {
  tensorType?: { elemType: number; shape?: { dim: Dimension[] } };
}

export interface ValueInfoProto {
  name: string;
  type?: TypeProto;
  docString?: string;
}

export interface AttributeProto {
  name: string;
  type: number;
  f?: number;
  i?: number;
  s?: Uint8Array;
  t?: TensorProto;
  g?: GraphProto;
  floats?: number[];
  ints?: number[];
  strings?: Uint8Array[];
  tensors?: TensorProto[];
  graphs?: GraphProto[];
  docString?: string;
}

export interface NodeProto {
  input: string[];
  output: string[];
  name?: string;
  opType: string;
  domain?: string;
  attribute?: AttributeProto[];
  docString?: string;
}

export interface GraphProto {
  node: NodeProto[];
  name: string;
  initializer?: TensorProto[];
  docString?: string;
  input: ValueInfoProto[];
  output: ValueInfoProto[];
  valueInfo?: ValueInfoProto[];
}

export interface OperatorSetId {
  domain: string;
  version: number;
}

export interface FunctionProto {
  name: string;
  domain?: string;
  input: string[];
  output: string[];
  attribute?: string[];
  node: NodeProto[];
  opsetImport?: OperatorSetId[];
}

export interface ModelProto {
  irVersion: number;
  opsetImport: OperatorSetId[];
  producerName?: string;
  producerVersion?: string;
  domain?: string;
  modelVersion?: number;
  docString?: string;
  graph: GraphProto;
  metadataProps?: StringStringEntry[];
  functions?: FunctionProto[];
}

type FieldSpec = { type: string; id: number; rule?: "repeated"; options?: { packed: boolean } };
const field = (type: string, id: number): FieldSpec => ({ type, id });
const repeated = (type: string, id: number, packed = false): FieldSpec => ({
  type,
  id,
  rule: "repeated",
  options: { packed },
});

/** The schema as protobufjs's JSON descriptor (the message types under `nested.onnx.nested`). */
export const ONNX_SCHEMA = {
  nested: {
    onnx: {
      nested: {
        StringStringEntryProto: { fields: { key: field("string", 1), value: field("string", 2) } },
        TensorProto: {
          fields: {
            dims: repeated("int64", 1),
            dataType: field("int32", 2),
            floatData: repeated("float", 4, true),
            int32Data: repeated("int32", 5, true),
            stringData: repeated("bytes", 6),
            int64Data: repeated("int64", 7, true),
            name: field("string", 8),
            rawData: field("bytes", 9),
            doubleData: repeated("double", 10, true),
            uint64Data: repeated("uint64", 11, true),
            docString: field("string", 12),
            externalData: repeated("StringStringEntryProto", 13),
            dataLocation: field("int32", 14),
          },
        },
        Dimension: {
          oneofs: { value: { oneof: ["dimValue", "dimParam"] } },
          fields: {
            dimValue: field("int64", 1),
            dimParam: field("string", 2),
            denotation: field("string", 3),
          },
        },
        TensorShapeProto: { fields: { dim: repeated("Dimension", 1) } },
        TensorTypeProto: {
          fields: { elemType: field("int32", 1), shape: field("TensorShapeProto", 2) },
        },
        TypeProto: {
          fields: { tensorType: field("TensorTypeProto", 1), denotation: field("string", 6) },
        },
        ValueInfoProto: {
          fields: {
            name: field("string", 1),
            type: field("TypeProto", 2),
            docString: field("string", 3),
          },
        },
        AttributeProto: {
          fields: {
            name: field("string", 1),
            f: field("float", 2),
            i: field("int64", 3),
            s: field("bytes", 4),
            t: field("TensorProto", 5),
            g: field("GraphProto", 6),
            floats: repeated("float", 7),
            ints: repeated("int64", 8),
            strings: repeated("bytes", 9),
            tensors: repeated("TensorProto", 10),
            graphs: repeated("GraphProto", 11),
            docString: field("string", 13),
            type: field("int32", 20),
            refAttrName: field("string", 21),
          },
        },
        NodeProto: {
          fields: {
            input: repeated("string", 1),
            output: repeated("string", 2),
            name: field("string", 3),
            opType: field("string", 4),
            attribute: repeated("AttributeProto", 5),
            docString: field("string", 6),
            domain: field("string", 7),
            overload: field("string", 8),
          },
        },
        GraphProto: {
          fields: {
            node: repeated("NodeProto", 1),
            name: field("string", 2),
            initializer: repeated("TensorProto", 5),
            docString: field("string", 10),
            input: repeated("ValueInfoProto", 11),
            output: repeated("ValueInfoProto", 12),
            valueInfo: repeated("ValueInfoProto", 13),
          },
        },
        OperatorSetIdProto: { fields: { domain: field("string", 1), version: field("int64", 2) } },
        FunctionProto: {
          fields: {
            name: field("string", 1),
            input: repeated("string", 4),
            output: repeated("string", 5),
            attribute: repeated("string", 6),
            node: repeated("NodeProto", 7),
            docString: field("string", 8),
            opsetImport: repeated("OperatorSetIdProto", 9),
            domain: field("string", 10),
          },
        },
        ModelProto: {
          fields: {
            irVersion: field("int64", 1),
            producerName: field("string", 2),
            producerVersion: field("string", 3),
            domain: field("string", 4),
            modelVersion: field("int64", 5),
            docString: field("string", 6),
            graph: field("GraphProto", 7),
            opsetImport: repeated("OperatorSetIdProto", 8),
            metadataProps: repeated("StringStringEntryProto", 14),
            functions: repeated("FunctionProto", 25),
          },
        },
      },
    },
  },
};

const root = protobuf.Root.fromJSON(ONNX_SCHEMA);
const WIRE_SCHEMA: WireSchema = ONNX_SCHEMA.nested.onnx.nested;
const modelType = root.lookupType("onnx.ModelProto");

/** Serialises a model to protobuf bytes. */
export function encodeModel(model: ModelProto): Uint8Array {
  return modelType.encode(model as unknown as protobuf.Message).finish();
}

/**
 * Parses protobuf bytes into a model; 64-bit integers become numbers and bytes fields (the
 * weights) are views into `bytes`. Read by wire.ts's schema-driven reader rather than protobufjs's
 * generated decoder, which needs `new Function` (pages with a strict Content-Security-Policy
 * forbid it).
 */
export function decodeModel(bytes: Uint8Array, label = "<memory>"): ModelProto {
  let model: ModelProto;
  try {
    model = decodeWire(WIRE_SCHEMA, "ModelProto", bytes) as unknown as ModelProto;
  } catch (error) {
    throw new Error(`${label}: not a valid ONNX model (${(error as Error).message})`);
  }
  if (!model.graph) throw new Error(`${label}: not a valid ONNX model (no graph)`);
  model.opsetImport = (model.opsetImport ?? []).map((o) => ({
    domain: o.domain ?? "",
    version: o.version,
  }));
  normaliseGraph(model.graph);
  return model;
}

function normaliseGraph(graph: GraphProto): void {
  graph.node ??= [];
  graph.input ??= [];
  graph.output ??= [];
  graph.initializer ??= [];
  graph.name ??= "";
  for (const node of graph.node) {
    node.input ??= [];
    node.output ??= [];
    node.attribute ??= [];
    for (const attribute of node.attribute) {
      if (attribute.g) normaliseGraph(attribute.g);
      for (const sub of attribute.graphs ?? []) normaliseGraph(sub);
    }
  }
  for (const tensor of graph.initializer) tensor.dims ??= [];
}
