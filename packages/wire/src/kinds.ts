import { type Static, type TObject, Type } from '@sinclair/typebox';

/**
 * The one table of message kinds that cross the wire between nodes.
 *
 * Each kind has a numeric id (what travels), a schema for its fields (checked
 * on every frame before any actor sees it), the timeout an ask of it uses by
 * default, and the kind of its reply when it is an ask. Ids are never reused:
 * a retired kind keeps its number, commented out.
 *
 * A message in memory is `{ type: '<kind>', ...fields }`; an ask message also
 * carries `replyTo`, which the runtime moves into the envelope and rebuilds on
 * the other side from the connection's authenticated peer.
 */

const NodeName = Type.String({ minLength: 1, maxLength: 128, pattern: '^[A-Za-z0-9._:\\-\\[\\]]+$' });
const Counter = Type.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER });

const GossipDigest = Type.Object({ node: NodeName, generation: Counter, maxVersion: Counter }, { additionalProperties: false });
const VersionedValue = Type.Object({ value: Type.String({ maxLength: 65_536 }), version: Counter }, { additionalProperties: false });
const EndpointState = Type.Object(
  {
    heartbeat: Type.Object({ generation: Counter, version: Counter }, { additionalProperties: false }),
    app: Type.Record(Type.String({ minLength: 1, maxLength: 64 }), VersionedValue),
  },
  { additionalProperties: false },
);
const EndpointStates = Type.Record(NodeName, EndpointState);
const MAX_DIGESTS = 10_000;

/** A keyspace as the schema holds it: replication as canonical JSON, and the time of its last change (newest wins). */
const KeyspaceDefinition = Type.Object(
  { name: Type.String({ minLength: 1, maxLength: 48 }), replication: Type.String({ maxLength: 4_096 }), timestampMicros: Counter },
  { additionalProperties: false },
);

export interface KindSpec {
  readonly id: number;
  readonly schema: TObject;
  /** Default timeout of an ask of this kind, in milliseconds. */
  readonly timeoutMs?: number;
  /** The kind of the reply, for kinds that are asked. */
  readonly reply?: string;
}

export const MESSAGE_KINDS = {
  // 1–99: gossip and membership
  'gossip.syn': {
    id: 1,
    timeoutMs: 1_000,
    reply: 'gossip.ack',
    schema: Type.Object({ cluster: Type.String({ maxLength: 128 }), digests: Type.Array(GossipDigest, { maxItems: MAX_DIGESTS }) }, { additionalProperties: false }),
  },
  'gossip.ack': {
    id: 2,
    schema: Type.Object({ digests: Type.Array(GossipDigest, { maxItems: MAX_DIGESTS }), states: EndpointStates }, { additionalProperties: false }),
  },
  'gossip.ack2': { id: 3, schema: Type.Object({ states: EndpointStates }, { additionalProperties: false }) },
  'gossip.shutdown': { id: 4, schema: Type.Object({ node: NodeName, generation: Counter }, { additionalProperties: false }) },

  // 100–119: schema
  'schema.pull': { id: 100, schema: Type.Object({}, { additionalProperties: false }), timeoutMs: 5_000, reply: 'schema.definitions' },
  'schema.definitions': {
    id: 101,
    schema: Type.Object({ keyspaces: Type.Array(KeyspaceDefinition, { maxItems: 10_000 }) }, { additionalProperties: false }),
  },
} as const satisfies Record<string, KindSpec>;

export type MessageKind = keyof typeof MESSAGE_KINDS;

/** The in-memory shape of a message of kind K. */
export type WireMessage<K extends MessageKind> = { type: K } & Static<(typeof MESSAGE_KINDS)[K]['schema']>;

export type GossipDigestWire = Static<typeof GossipDigest>;
export type EndpointStateWire = Static<typeof EndpointState>;
export type KeyspaceDefinitionWire = Static<typeof KeyspaceDefinition>;
