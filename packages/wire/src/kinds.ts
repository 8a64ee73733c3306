import { MAX_TOKEN, MIN_TOKEN } from '@chorus/core';
import { LIMITS } from '@chorus/model';
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
    // A record's key schema counts only by its pattern, and keys that miss it are not checked at all unless additionalProperties is false.
    app: Type.Record(Type.String({ pattern: '^.{1,64}$' }), VersionedValue, { additionalProperties: false }),
  },
  { additionalProperties: false },
);
const EndpointStates = Type.Record(NodeName, EndpointState, { additionalProperties: false });
const MAX_DIGESTS = 10_000;

/**
 * A keyspace as the schema holds it: replication as canonical JSON, its read
 * repair (absent from definitions made before the option: blocking), its
 * tombstone gc (absent: repair), and the time of its last change (newest wins).
 */
const KeyspaceDefinition = Type.Object(
  {
    name: Type.String({ minLength: 1, maxLength: 48 }),
    replication: Type.String({ maxLength: 4_096 }),
    readRepair: Type.Optional(Type.Union([Type.Literal('blocking'), Type.Literal('none')])),
    tombstoneGc: Type.Optional(Type.Union([Type.Literal('grace'), Type.Literal('repair')])),
    timestampMicros: Counter,
  },
  { additionalProperties: false },
);

// Coordinator <-> replica (ids 200-299, packages/replica). Sizes follow the model's LIMITS.
// The model's validateKeyspace rule (1–48 characters); LIMITS has no number for it.
const ReplicaKeyspace = Type.String({ minLength: 1, maxLength: 48, pattern: '^[A-Za-z][A-Za-z0-9_]*$' });
const ReplicaToken = Type.BigInt({ minimum: MIN_TOKEN, maximum: MAX_TOKEN });
const ReplicaPartitionKey = Type.Uint8Array({ minByteLength: 1, maxByteLength: LIMITS.maxPartitionKeyBytes });
const ReplicaClusteringKey = Type.Uint8Array({ maxByteLength: LIMITS.maxClusteringKeyBytes });
const ReplicaValue = Type.Uint8Array({ maxByteLength: LIMITS.maxValueBytes });
/** Every coordinator/replica message carries the sender's hybrid-logical-clock reading and its wall clock (skew estimates). */
const ReplicaClocks = { hlc: Counter, wallMicros: Counter };
const ReplicaRowAddress = { keyspace: ReplicaKeyspace, token: ReplicaToken, partition: ReplicaPartitionKey, clustering: ReplicaClusteringKey };
/** A cell as a replica holds it; `absent` when it holds nothing for the row. */
const ReplicaCell = {
  state: Type.Union([Type.Literal('absent'), Type.Literal('value'), Type.Literal('tombstone')]),
  value: Type.Optional(ReplicaValue),
  timestampMicros: Type.Optional(Counter),
  expiresAtMicros: Type.Optional(Counter),
};
const ReplicaSliceRow = Type.Object({ clustering: ReplicaClusteringKey, ...ReplicaCell }, { additionalProperties: false });
/**
 * A mutation exactly as the data model holds it (`Mutation` of packages/model):
 * a cell written into a row (a value, or a row tombstone), or a partition
 * deletion. The replica applies it as decoded, and a local replica gets the
 * coordinator's object itself.
 */
const ReplicaMutation = Type.Union([
  Type.Object(
    {
      keyspace: ReplicaKeyspace,
      token: ReplicaToken,
      partition: ReplicaPartitionKey,
      clustering: Type.Optional(ReplicaClusteringKey),
      cell: Type.Union([
        Type.Object({ value: ReplicaValue, timestampMicros: Counter, expiresAtMicros: Type.Optional(Counter) }, { additionalProperties: false }),
        Type.Object({ tombstone: Type.Literal(true), timestampMicros: Counter }, { additionalProperties: false }),
      ]),
    },
    { additionalProperties: false },
  ),
  Type.Object(
    {
      keyspace: ReplicaKeyspace,
      token: ReplicaToken,
      partition: ReplicaPartitionKey,
      partitionDeletion: Type.Object({ timestampMicros: Counter }, { additionalProperties: false }),
    },
    { additionalProperties: false },
  ),
]);

/**
 * Hints one `hints.handoff` message may carry. The sender also keeps each
 * message to about a MiB of hints (one larger hint travels alone), well
 * inside the frame limit.
 */
export const MAX_HANDOFF_HINTS = 128;
// The core's host id: a lowercase UUID.
const HostIdWire = Type.String({ minLength: 36, maxLength: 36, pattern: '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' });
/** A hint moved from one node's store to another's: its target, when it was first written, and the mutation unchanged. */
const HandOffHint = Type.Object(
  { targetHostId: HostIdWire, targetNode: NodeName, createdAtMicros: Counter, mutation: ReplicaMutation },
  { additionalProperties: false },
);

// Anti-entropy repair (packages/anti-entropy): a repair session is named by an id its coordinator chose.
const RepairSessionId = Type.String({ minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9_.:-]+$' });
const RepairRange = { keyspace: ReplicaKeyspace, start: ReplicaToken, end: ReplicaToken };
/** Tree nodes one `repair.tree` may ask for (a message of hashes stays under a MiB). */
export const MAX_REPAIR_TREE_NODES = 16_384;
/** Deepest Merkle tree a repair compares (2^16 leaves per range). */
export const MAX_REPAIR_TREE_DEPTH = 16;
/** Row summaries one `repair.row-summaries` may carry; the sender also stops a page at about a MiB of keys. */
export const MAX_REPAIR_ROWS = 4_096;
const TreeDepth = Type.Integer({ minimum: 0, maximum: MAX_REPAIR_TREE_DEPTH });
const RepairScanPosition = Type.Object({ token: ReplicaToken, partition: ReplicaPartitionKey, clustering: Type.Optional(ReplicaClusteringKey) }, { additionalProperties: false });
/** A row (or, without clustering, a partition deletion) as repair compares it: key, version timestamp, version digest. */
const RepairRowSummary = Type.Object(
  { token: ReplicaToken, partition: ReplicaPartitionKey, clustering: Type.Optional(ReplicaClusteringKey), timestampMicros: Counter, digest: Type.Uint8Array({ maxByteLength: 32 }) },
  { additionalProperties: false },
);

/** Entries one `replica.range-page` may carry; the replica also stops a page at its byte budget (about a MiB). */
export const MAX_STREAM_ENTRIES = 4_096;
/**
 * A range's entry as streaming moves it: a row's reconciled cell (a value,
 * possibly expired, or a tombstone), or, without clustering, the partition's
 * deletion (state `tombstone`).
 */
const StreamEntry = Type.Object(
  {
    token: ReplicaToken,
    partition: ReplicaPartitionKey,
    clustering: Type.Optional(ReplicaClusteringKey),
    state: Type.Union([Type.Literal('value'), Type.Literal('tombstone')]),
    value: Type.Optional(ReplicaValue),
    timestampMicros: Counter,
    expiresAtMicros: Type.Optional(Counter),
  },
  { additionalProperties: false },
);

/** Mutations, and digest reads, one `replica.batch` may carry; the coordinator also ends a batch at about a MiB of mutations. */
export const MAX_BATCH_ITEMS = 4_096;
/** An error as the actor runtime sends it (see `toWireError`): a failed item of a batch. */
const WireErrorSchema = Type.Object(
  {
    name: Type.String({ maxLength: 128 }),
    code: Type.String({ maxLength: 64 }),
    message: Type.String({ maxLength: 4_096 }),
    fields: Type.Record(Type.String({ maxLength: 64 }), Type.Unknown()),
    status: Type.Integer({ minimum: 100, maximum: 599 }),
  },
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
  // 200–299: coordinator and replicas (packages/replica)
  'replica.mutate': {
    id: 200,
    timeoutMs: 2_000,
    reply: 'replica.mutated',
    schema: Type.Object({ mutation: ReplicaMutation, ...ReplicaClocks }, { additionalProperties: false }),
  },
  'replica.mutated': { id: 201, schema: Type.Object({ ...ReplicaClocks }, { additionalProperties: false }) },
  'replica.read': { id: 202, timeoutMs: 5_000, reply: 'replica.data', schema: Type.Object({ ...ReplicaRowAddress, ...ReplicaClocks }, { additionalProperties: false }) },
  'replica.data': { id: 203, schema: Type.Object({ ...ReplicaCell, ...ReplicaClocks }, { additionalProperties: false }) },
  'replica.read-digest': {
    id: 204,
    timeoutMs: 5_000,
    reply: 'replica.digest',
    schema: Type.Object({ ...ReplicaRowAddress, ...ReplicaClocks }, { additionalProperties: false }),
  },
  'replica.digest': { id: 205, schema: Type.Object({ digest: Type.Uint8Array({ maxByteLength: 64 }), ...ReplicaClocks }, { additionalProperties: false }) },
  'replica.slice': {
    id: 206,
    timeoutMs: 5_000,
    reply: 'replica.rows',
    schema: Type.Object(
      {
        keyspace: ReplicaKeyspace,
        token: ReplicaToken,
        partition: ReplicaPartitionKey,
        from: Type.Optional(ReplicaClusteringKey),
        to: Type.Optional(ReplicaClusteringKey),
        after: Type.Optional(ReplicaClusteringKey),
        limit: Type.Integer({ minimum: 1, maximum: LIMITS.maxSliceLimit }),
        reverse: Type.Boolean(),
        ...ReplicaClocks,
      },
      { additionalProperties: false },
    ),
  },
  'replica.rows': {
    id: 207,
    schema: Type.Object(
      {
        rows: Type.Array(ReplicaSliceRow, { maxItems: LIMITS.maxSliceLimit }),
        nextPage: Type.Optional(ReplicaClusteringKey),
        partitionDeletedAtMicros: Type.Optional(Counter),
        ...ReplicaClocks,
      },
      { additionalProperties: false },
    ),
  },

  // 210–219: range streaming for bootstrap, decommission and removenode (packages/replica, used by packages/streaming)
  /** A page of a token range's entries of one keyspace, in scan order, after `after` (a position of an earlier page). */
  'replica.stream-range': {
    id: 210,
    timeoutMs: 30_000,
    reply: 'replica.range-page',
    schema: Type.Object({ keyspace: ReplicaKeyspace, start: ReplicaToken, end: ReplicaToken, after: Type.Optional(RepairScanPosition), ...ReplicaClocks }, { additionalProperties: false }),
  },
  /** `last` is where the page stopped (also past entries it left out); `done` once the range is exhausted. */
  'replica.range-page': {
    id: 211,
    schema: Type.Object(
      { entries: Type.Array(StreamEntry, { maxItems: MAX_STREAM_ENTRIES }), last: Type.Optional(RepairScanPosition), done: Type.Boolean(), ...ReplicaClocks },
      { additionalProperties: false },
    ),
  },

  /**
   * The mutations and digest reads one coordinator sends one replica in a
   * turn, in one message: one ask, one envelope and one answer for all of
   * them instead of one each. Sent only to a peer whose handshake listed the
   * kind. Items are numbered mutations first, then digests.
   */
  'replica.batch': {
    id: 212,
    timeoutMs: 2_000,
    reply: 'replica.batched',
    schema: Type.Object(
      {
        mutations: Type.Optional(Type.Array(ReplicaMutation, { maxItems: MAX_BATCH_ITEMS })),
        digests: Type.Optional(Type.Array(Type.Object(ReplicaRowAddress, { additionalProperties: false }), { maxItems: MAX_BATCH_ITEMS })),
        ...ReplicaClocks,
      },
      { additionalProperties: false },
    ),
  },
  /** One digest per digest read asked (empty for a failed one), and the items that failed, by number, with their errors. */
  'replica.batched': {
    id: 213,
    schema: Type.Object(
      {
        digests: Type.Optional(Type.Array(Type.Uint8Array({ maxByteLength: 64 }), { maxItems: MAX_BATCH_ITEMS })),
        failures: Type.Optional(Type.Array(Type.Object({ index: Type.Integer({ minimum: 0, maximum: 2 * MAX_BATCH_ITEMS }), error: WireErrorSchema }, { additionalProperties: false }), { maxItems: 2 * MAX_BATCH_ITEMS })),
        ...ReplicaClocks,
      },
      { additionalProperties: false },
    ),
  },

  // 300–319: hinted handoff (packages/hints)
  'hints.handoff': {
    id: 300,
    timeoutMs: 30_000,
    reply: 'hints.stored',
    schema: Type.Object({ hints: Type.Array(HandOffHint, { minItems: 1, maxItems: MAX_HANDOFF_HINTS }) }, { additionalProperties: false }),
  },
  /** How many hints of the message, from its first, the receiver stored durably. */
  'hints.stored': { id: 301, schema: Type.Object({ stored: Type.Integer({ minimum: 0, maximum: MAX_HANDOFF_HINTS }) }, { additionalProperties: false }) },

  // 400–419: anti-entropy repair (packages/anti-entropy)
  /**
   * Build this replica's Merkle tree of the range for the session. Asked again
   * until `ready`: each answer comes once the tree is built or after a few
   * seconds, with the rows hashed so far, so a lost message or a long scan
   * never holds an ask open for minutes.
   */
  'repair.validate': {
    id: 400,
    timeoutMs: 30_000,
    reply: 'repair.validated',
    schema: Type.Object({ session: RepairSessionId, ...RepairRange, purgeBeforeMicros: Counter }, { additionalProperties: false }),
  },
  'repair.validated': { id: 401, schema: Type.Object({ rows: Counter, ready: Type.Boolean() }, { additionalProperties: false }) },
  /** Nodes of one level of the session's tree cut at `depth`. */
  'repair.tree': {
    id: 402,
    timeoutMs: 30_000,
    reply: 'repair.tree-nodes',
    schema: Type.Object(
      { session: RepairSessionId, depth: TreeDepth, level: TreeDepth, nodes: Type.Array(Type.Integer({ minimum: 0, maximum: 2 ** MAX_REPAIR_TREE_DEPTH - 1 }), { maxItems: MAX_REPAIR_TREE_NODES }) },
      { additionalProperties: false },
    ),
  },
  'repair.tree-nodes': {
    id: 403,
    schema: Type.Object(
      { hashes: Type.Array(Type.Uint8Array({ maxByteLength: 32 }), { maxItems: MAX_REPAIR_TREE_NODES }), rows: Type.Array(Counter, { maxItems: MAX_REPAIR_TREE_NODES }) },
      { additionalProperties: false },
    ),
  },
  /** A page of row summaries of a part of the session's range, after `after`. */
  'repair.rows': {
    id: 404,
    timeoutMs: 30_000,
    reply: 'repair.row-summaries',
    schema: Type.Object(
      { session: RepairSessionId, start: ReplicaToken, end: ReplicaToken, after: Type.Optional(RepairScanPosition), limit: Type.Integer({ minimum: 1, maximum: MAX_REPAIR_ROWS }) },
      { additionalProperties: false },
    ),
  },
  'repair.row-summaries': {
    id: 405,
    schema: Type.Object({ rows: Type.Array(RepairRowSummary, { maxItems: MAX_REPAIR_ROWS }), done: Type.Boolean() }, { additionalProperties: false }),
  },
  /** The session is over: drop its tree. */
  'repair.release': { id: 406, timeoutMs: 10_000, reply: 'repair.ok', schema: Type.Object({ session: RepairSessionId }, { additionalProperties: false }) },
  /** Every replica of the range took part in a repair that started at `repairedAtMicros` and succeeded: record it (repair-based tombstone GC trusts it). */
  'repair.completed': {
    id: 407,
    timeoutMs: 10_000,
    reply: 'repair.ok',
    schema: Type.Object({ ...RepairRange, repairedAtMicros: Counter }, { additionalProperties: false }),
  },
  'repair.ok': { id: 408, schema: Type.Object({}, { additionalProperties: false }) },
} as const satisfies Record<string, KindSpec>;

export type MessageKind = keyof typeof MESSAGE_KINDS;

/** The in-memory shape of a message of kind K. */
export type WireMessage<K extends MessageKind> = { type: K } & Static<(typeof MESSAGE_KINDS)[K]['schema']>;

export type GossipDigestWire = Static<typeof GossipDigest>;
export type EndpointStateWire = Static<typeof EndpointState>;
export type KeyspaceDefinitionWire = Static<typeof KeyspaceDefinition>;

/**
 * The actor each area's messages are addressed to (the area is a kind's name
 * before its first dot). A message of an area listed here sent to another
 * actor is refused at the edge: actors handle only their own kinds, and a
 * stray one (a told gossip message at the replica) would reach a handler
 * with nothing to answer. Areas not listed are not checked.
 */
export const AREA_ACTORS: Readonly<Record<string, string>> = {
  gossip: 'gossiper',
  schema: 'schema',
  replica: 'replica',
  hints: 'hints',
  repair: 'repair-validator',
};

