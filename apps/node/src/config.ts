import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { type Static, Type } from '@sinclair/typebox';
import { TypeCompiler } from '@sinclair/typebox/compiler';
import bytes from 'bytes-iec';
import { parse as parseYaml } from 'yaml';
import { ConfigError } from './errors.js';
import { derivedBudgets, fitBudgetsToHeap } from './heap.js';

/**
 * Every setting of a node, named as in the config file (snake_case, after
 * cassandra.yaml). Durations are milliseconds here; in a file, flag or
 * environment variable they may be written `2000`, `2000ms`, `2s`, `10m`, `3h`, `7d`.
 * Sizes are bytes here; there they may be written `1048576`, `512KiB`, `64MiB`, `1GB`.
 */
export interface NodeSettings {
  cluster_name: string;
  name: string;
  listen_address: string;
  seeds: string[];
  data_dir: string;
  dc: string;
  rack: string;
  num_tokens: number;
  /** Tokens for the node's first start (as Cassandra's initial_token); ignored once the node has tokens. */
  initial_tokens: string[];
  /** Stream data before joining a ring that has members (not available yet: such a join is refused unless false). */
  auto_bootstrap: boolean;
  secret: string;
  phi_convict_threshold: number;
  /**
   * How much slower (by its latency average) than its tier's latency of the same rank a replica may be before reads order
   * the tier by latency instead of ring order, as a fraction (1.0: twice as slow), as Cassandra's.
   */
  dynamic_snitch_badness_threshold: number;
  gossip_interval: number;
  write_request_timeout: number;
  read_request_timeout: number;
  commit_sync: 'batch' | 'periodic' | 'none';
  commit_sync_period: number;
  gc_grace_seconds: number;
  /** Pause between two gc sweeps of the store (each walks all data, compacting and purging what tombstone_gc allows). */
  gc_sweep_interval: number;
  /** MiB of reconciled rows kept in memory for point reads, outside the heap (max_heap_size does not count them); 0 turns the cache off. */
  row_cache_size: number;
  /**
   * Bytes of the node process's heap (V8's old space, as Cassandra's MAX_HEAP_SIZE): the process runs with
   * `--max-old-space-size` of it, and the byte budgets below that are not set are derived from it.
   */
  max_heap_size: number;
  /**
   * Threads of the process's I/O pool (libuv's, `UV_THREADPOOL_SIZE`), which runs LevelDB's reads and writes:
   * the process starts with it. Default: half the cores, at least 1 and at most 4.
   */
  io_threads: number;
  /**
   * Where point reads of key-value rows read LevelDB: `inline` on the node's own thread (through the pool for a
   * while when they wait on the disk), `pool` through the I/O pool. Default: `inline` when io_threads' default
   * is 1 thread (up to 3 cores), else `pool`.
   */
  point_reads: 'inline' | 'pool';
  /** Threads of V8's own pool (Node's `--v8-pool-size`), where garbage collection's helpers run: the process starts with it. Default as io_threads. */
  gc_threads: number;
  max_clock_skew: number;
  /** A peer whose clock is further off than this (ms) is reported: status, a log line per change, a metric. Writes are refused only past max_clock_skew. */
  clock_skew_warn: number;
  /** Store hints for replicas that miss writes, and replay them when they are back; false: no hints, and ANY behaves as ONE. */
  hinted_handoff_enabled: boolean;
  /** No hints are stored for a node whose oldest undelivered hint is older than this (ms); it needs a repair instead. */
  max_hint_window: number;
  /** MiB of hints kept per target node before it needs a repair instead; 0: no cap. */
  max_hints_size_per_host: number;
  /** KiB/s of hint replay over all targets; 0: unpaced. */
  hinted_handoff_throttle: number;
  /** Bytes per second this node streams for repair; 0: unthrottled. */
  repair_throttle: number;
  /** Bytes per second this node streams for bootstrap (Cassandra's stream_throughput_outbound); 0: unthrottled. */
  stream_throughput: number;
  /** Range sessions this node coordinates or validates at once. */
  repair_max_sessions: number;
  /** Run a repair of this node's primary ranges this often (ms); 0: off. */
  repair_schedule_interval: number;
  /** Finished repair jobs kept for `chorus repair status`. */
  repair_history_size: number;
  /** How long (ms) nodes that left or were removed are gossiped and remembered on disk, so they cannot come back (Cassandra: 3 days). */
  gone_retention: number;
  /** Bytes client requests (HTTP and client protocol) may hold at once on this node; past it they get 503 Overloaded. Derived from max_heap_size unless set, as are the four below. */
  max_inflight_request_bytes: number;
  /** Bytes one client protocol connection's requests may hold at once (and its unsent answers before the node stops reading it). */
  max_inflight_request_bytes_per_connection: number;
  /** Bytes of mutations this node coordinates at once, each until its last replica answers. */
  max_coordinator_inflight_bytes: number;
  /** Writes this node answered that may still wait for their last replicas; past it, a write is answered once all but one of its replicas did. */
  max_background_writes: number;
  /** Bytes of mutations queued in the replica actor's and in the storage actor's mailbox, each. */
  max_mailbox_bytes: number;
  /** Bytes of writes in one group-commit batch. */
  max_storage_batch_bytes: number;
  log_level: 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal';
  /** `token`: the HTTP API and `/client` require a bearer token of `authenticator_tokens_file`; `none`: open to whoever reaches the port. */
  authenticator: 'none' | 'token';
  /** One token a line (at least 16 characters), `#` comments; read at start and again on SIGHUP. */
  authenticator_tokens_file: string;
  /** With `authenticator: token`, `/metrics` needs a token too (`/health` never does). */
  metrics_require_auth: boolean;
  /** PEM files: this node's certificate (naming its listen address), its key, and the CA that signs every node's certificate. */
  tls_cert_file: string;
  tls_key_file: string;
  tls_ca_file: string;
  /** `all`: peers connect over TLS and must present a certificate of the CA, checked both ways. */
  internode_encryption: 'none' | 'all';
  /** The HTTP API and `/client` over TLS. Peers and clients share the node's one port, so it goes with internode_encryption. */
  client_encryption: boolean;
}

/**
 * max_heap_size's default: the node and the byte budgets (the row cache is outside the heap). Not the least
 * they need: with a 96 MiB old space V8 ran the cluster bench's QUORUM writes about a third slower than with
 * 160 or 224 MiB (the same byte budgets set), for about 14 MiB less RSS.
 */
const DEFAULT_HEAP_BYTES = 160 * 1024 * 1024;
const DEFAULT_ROW_CACHE_MIB = 64;
/**
 * io_threads' and gc_threads' default: half the cores, at least 1 and at most 4 (libuv's and Node's own
 * default). Waking an idle pool thread costs a trip through the kernel, and each thread a node keeps competes
 * with every process on the machine: on 2 cores, three nodes with one thread in each pool did 30–70 % more
 * writes and cold reads per second with one I/O thread than with four, and spent about 10–15 % less CPU per
 * operation with one GC thread (README, Benchmarks). More cores leave room for reads that wait on the disk
 * side by side, and for collections that run beside the main thread.
 */
const DEFAULT_POOL_THREADS = Math.max(1, Math.min(4, Math.floor(availableParallelism() / 2)));
/**
 * point_reads' default: a pool of one thread gives a batch of reads no core of its own, only a hand-off each
 * way, which cost more CPU than the reads (packages/storage, inline-reads.ts); with more threads the pool's
 * reads run beside the main thread.
 */
const DEFAULT_POINT_READS = DEFAULT_POOL_THREADS === 1 ? 'inline' : 'pool';

export const DEFAULTS: Omit<NodeSettings, 'name' | 'listen_address' | 'data_dir' | 'secret'> = {
  cluster_name: 'chorus',
  seeds: [],
  dc: 'dc1',
  rack: 'rack1',
  num_tokens: 16,
  initial_tokens: [],
  auto_bootstrap: true,
  phi_convict_threshold: 8,
  dynamic_snitch_badness_threshold: 1,
  gossip_interval: 1_000,
  write_request_timeout: 2_000,
  read_request_timeout: 2_000,
  commit_sync: 'periodic',
  commit_sync_period: 10_000,
  gc_grace_seconds: 864_000,
  gc_sweep_interval: 3_600_000,
  row_cache_size: DEFAULT_ROW_CACHE_MIB,
  max_heap_size: DEFAULT_HEAP_BYTES,
  io_threads: DEFAULT_POOL_THREADS,
  point_reads: DEFAULT_POINT_READS,
  gc_threads: DEFAULT_POOL_THREADS,
  max_clock_skew: 1_000,
  clock_skew_warn: 20,
  hinted_handoff_enabled: true,
  max_hint_window: 3 * 3_600_000,
  max_hints_size_per_host: 1024,
  hinted_handoff_throttle: 1024,
  repair_throttle: 64 * 1024 * 1024,
  stream_throughput: 24 * 1024 * 1024,
  repair_max_sessions: 2,
  repair_schedule_interval: 0,
  repair_history_size: 100,
  max_background_writes: 1024,
  gone_retention: 3 * 86_400_000,
  // The byte budgets' defaults are their shares of the default heap; another heap or row cache gives others.
  ...derivedBudgets(DEFAULT_HEAP_BYTES),
  log_level: 'info',
  authenticator: 'none',
  authenticator_tokens_file: '',
  metrics_require_auth: false,
  tls_cert_file: '',
  tls_key_file: '',
  tls_ca_file: '',
  internode_encryption: 'none',
  client_encryption: false,
};

const DURATIONS = new Set(['gossip_interval', 'write_request_timeout', 'read_request_timeout', 'commit_sync_period', 'max_clock_skew', 'clock_skew_warn', 'max_hint_window', 'gc_sweep_interval', 'gone_retention']);
const LISTS = new Set(['seeds', 'initial_tokens']);
const INTEGERS = new Set(['num_tokens', 'io_threads', 'gc_threads', 'gc_grace_seconds', 'row_cache_size', 'max_hints_size_per_host', 'hinted_handoff_throttle', 'repair_max_sessions', 'repair_history_size', 'max_background_writes']);
/** Throughputs: a size, optionally per second as cassandra.yaml writes them (`64MiB/s`). */
const RATES = new Set(['repair_throttle', 'stream_throughput']);
/** Byte budgets: a size (`32MiB`, `1GB`, or bytes). */
const SIZES = new Set(['max_heap_size', 'max_inflight_request_bytes', 'max_inflight_request_bytes_per_connection', 'max_coordinator_inflight_bytes', 'max_mailbox_bytes', 'max_storage_batch_bytes']);
/** Durations that may be off: `0` or `off`. */
const OPTIONAL_DURATIONS = new Set(['repair_schedule_interval']);
const NUMBERS = new Set(['phi_convict_threshold', 'dynamic_snitch_badness_threshold']);
const BOOLEANS = new Set(['auto_bootstrap', 'hinted_handoff_enabled', 'metrics_require_auth', 'client_encryption']);

const Address = Type.String({ pattern: '^[A-Za-z0-9.\\-]+:[0-9]{1,5}$' });
const Duration = Type.Integer({ minimum: 1, maximum: 86_400_000 });
const ByteBudget = Type.Integer({ minimum: 2 * 1024 * 1024, maximum: 1024 ** 4 });
const Schema = Type.Object(
  {
    cluster_name: Type.String({ minLength: 1, maxLength: 128, pattern: '^[A-Za-z0-9 _.-]+$' }),
    name: Type.String({ minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9_.-]+$' }),
    listen_address: Address,
    seeds: Type.Array(Address, { maxItems: 64 }),
    data_dir: Type.String({ minLength: 1 }),
    dc: Type.String({ minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9_-]+$' }),
    rack: Type.String({ minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9_-]+$' }),
    num_tokens: Type.Integer({ minimum: 1, maximum: 1024 }),
    initial_tokens: Type.Array(Type.String({ pattern: '^-?[0-9]{1,19}$' }), { maxItems: 1024 }),
    auto_bootstrap: Type.Boolean(),
    secret: Type.String({ minLength: 8, maxLength: 1024 }),
    phi_convict_threshold: Type.Number({ minimum: 1, maximum: 32 }),
    dynamic_snitch_badness_threshold: Type.Number({ minimum: 0, maximum: 100 }),
    gossip_interval: Duration,
    write_request_timeout: Duration,
    read_request_timeout: Duration,
    commit_sync: Type.Union([Type.Literal('batch'), Type.Literal('periodic'), Type.Literal('none')]),
    commit_sync_period: Duration,
    gc_grace_seconds: Type.Integer({ minimum: 0, maximum: 315_360_000 }),
    gc_sweep_interval: Duration,
    row_cache_size: Type.Integer({ minimum: 0, maximum: 1_048_576 }),
    // Below 64 MiB a node has no room for its own structures; the budgets' fit is checked after.
    max_heap_size: Type.Integer({ minimum: 64 * 1024 * 1024, maximum: 1024 ** 4 }),
    // libuv's own bound.
    io_threads: Type.Integer({ minimum: 1, maximum: 1024 }),
    point_reads: Type.Union([Type.Literal('inline'), Type.Literal('pool')]),
    gc_threads: Type.Integer({ minimum: 1, maximum: 1024 }),
    max_clock_skew: Duration,
    clock_skew_warn: Duration,
    hinted_handoff_enabled: Type.Boolean(),
    // Up to gc_grace_seconds' own bound would be meaningless: a hint never outlives gc grace anyway. A year is plenty.
    max_hint_window: Type.Integer({ minimum: 1, maximum: 365 * 86_400_000 }),
    max_hints_size_per_host: Type.Integer({ minimum: 0, maximum: 1_048_576 }),
    hinted_handoff_throttle: Type.Integer({ minimum: 0, maximum: 10_485_760 }),
    repair_throttle: Type.Integer({ minimum: 0, maximum: 1024 ** 4 }),
    stream_throughput: Type.Integer({ minimum: 0, maximum: 1024 ** 4 }),
    repair_max_sessions: Type.Integer({ minimum: 1, maximum: 64 }),
    repair_schedule_interval: Type.Integer({ minimum: 0, maximum: 365 * 86_400_000 }),
    repair_history_size: Type.Integer({ minimum: 1, maximum: 10_000 }),
    gone_retention: Type.Integer({ minimum: 1_000, maximum: 365 * 86_400_000 }),
    // At least one largest value (1 MiB) and its keys, so a budget never refuses every write.
    max_inflight_request_bytes: ByteBudget,
    max_inflight_request_bytes_per_connection: ByteBudget,
    max_coordinator_inflight_bytes: ByteBudget,
    max_background_writes: Type.Integer({ minimum: 1, maximum: 1_000_000 }),
    max_mailbox_bytes: ByteBudget,
    max_storage_batch_bytes: ByteBudget,
    log_level: Type.Union(['trace', 'debug', 'info', 'warn', 'error', 'fatal'].map((l) => Type.Literal(l))),
    authenticator: Type.Union([Type.Literal('none'), Type.Literal('token')]),
    authenticator_tokens_file: Type.String({ maxLength: 4096 }),
    metrics_require_auth: Type.Boolean(),
    tls_cert_file: Type.String({ maxLength: 4096 }),
    tls_key_file: Type.String({ maxLength: 4096 }),
    tls_ca_file: Type.String({ maxLength: 4096 }),
    internode_encryption: Type.Union([Type.Literal('none'), Type.Literal('all')]),
    client_encryption: Type.Boolean(),
  },
  { additionalProperties: false },
);
const check = TypeCompiler.Compile(Schema);
const KNOWN = new Set(Object.keys(Schema.properties));

export interface ConfigSources {
  /** Path of a YAML or JSON config file. */
  file?: string;
  /** `CHORUS_<SETTING>` variables, e.g. CHORUS_LISTEN_ADDRESS. */
  environment?: Record<string, string | undefined>;
  /** Settings from dedicated flags (--name, --listen …), already named as settings. */
  flags?: Record<string, string | undefined>;
  /** `--set key=value` pairs, applied last. */
  overrides?: string[];
}

/**
 * Merges defaults < file < environment < flags < --set, validates the result, then derives the byte budgets
 * not set from max_heap_size and checks that everything fits it.
 */
export function loadSettings(sources: ConfigSources): NodeSettings {
  const merged: Record<string, unknown> = { ...DEFAULTS };
  /** Settings some source gave: a budget among them is the user's, not derived. */
  const given = new Set<string>();
  const set = (setting: string, value: unknown) => {
    merged[setting] = value;
    given.add(setting);
  };
  if (sources.file) for (const [setting, value] of Object.entries(normalizeAll(readConfigFile(sources.file), `config file ${sources.file}`))) set(setting, value);
  for (const [key, value] of Object.entries(sources.environment ?? {})) {
    if (!key.startsWith('CHORUS_') || value === undefined) continue;
    const setting = key.slice('CHORUS_'.length).toLowerCase();
    if (KNOWN.has(setting)) set(setting, normalize(setting, value, `environment variable ${key}`));
  }
  for (const [setting, value] of Object.entries(sources.flags ?? {})) {
    if (value !== undefined) set(setting, normalize(setting, value, `flag for ${setting}`));
  }
  for (const pair of sources.overrides ?? []) {
    const eq = pair.indexOf('=');
    if (eq <= 0) throw new ConfigError(`--set expects key=value, got ${JSON.stringify(pair)}`);
    const setting = pair.slice(0, eq).trim();
    set(setting, normalize(setting, pair.slice(eq + 1), `--set ${setting}`));
  }
  for (const required of ['name', 'listen_address', 'data_dir', 'secret']) {
    if (merged[required] === undefined) throw new ConfigError(`${required} is required (flag, config file, CHORUS_${required.toUpperCase()} or --set ${required}=…)`);
  }
  if (!check.Check(merged)) {
    const error = check.Errors(merged).First()!;
    const setting = error.path.split('/')[1] ?? '';
    throw new ConfigError(`${setting || 'config'}: ${error.message}${error.value !== undefined && typeof error.value !== 'object' ? `, got ${JSON.stringify(error.value)}` : ''}`);
  }
  const settings = fitBudgetsToHeap(merged as Static<typeof Schema> as NodeSettings, given);
  if (settings.initial_tokens.length > 0 && settings.initial_tokens.length !== settings.num_tokens) {
    throw new ConfigError(`initial_tokens has ${settings.initial_tokens.length} tokens but num_tokens is ${settings.num_tokens}`);
  }
  checkSecurity(settings);
  return settings;
}

/** Settings that only make sense together; the files themselves are read at start (`security.ts`). */
function checkSecurity(s: NodeSettings): void {
  if (s.authenticator === 'token' && s.authenticator_tokens_file === '') throw new ConfigError('authenticator: token needs authenticator_tokens_file (one token a line)');
  const internode = s.internode_encryption === 'all';
  if (internode !== s.client_encryption) {
    throw new ConfigError(`internode_encryption: ${s.internode_encryption} and client_encryption: ${s.client_encryption} cannot go together: peers and clients share the node's one port, which is TLS or not; set both (internode_encryption: all, client_encryption: true) or neither`);
  }
  if (internode) {
    const missing = (['tls_cert_file', 'tls_key_file', 'tls_ca_file'] as const).filter((name) => s[name] === '');
    if (missing.length > 0) throw new ConfigError(`internode_encryption: all needs tls_cert_file, tls_key_file and tls_ca_file (missing: ${missing.join(', ')})`);
  }
}

function readConfigFile(path: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    throw new ConfigError(`cannot read config file ${path}: ${(error as NodeJS.ErrnoException).code ?? String(error)}`);
  }
  let parsed: unknown;
  try {
    parsed = parseYaml(text); // YAML is a superset of JSON
  } catch (error) {
    throw new ConfigError(`config file ${path} is not valid YAML: ${(error as Error).message.split('\n')[0]}`);
  }
  if (parsed === null || parsed === undefined) return {};
  if (typeof parsed !== 'object' || Array.isArray(parsed)) throw new ConfigError(`config file ${path} must hold a map of settings`);
  return parsed as Record<string, unknown>;
}

function normalizeAll(values: Record<string, unknown>, where: string): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(values)) out[key] = normalize(key, value, where);
  return out;
}

/** Turns strings from flags, files and the environment into the setting's type; schema checks follow. */
function normalize(setting: string, value: unknown, where: string): unknown {
  if (!KNOWN.has(setting)) throw new ConfigError(`unknown setting ${JSON.stringify(setting)} (${where})`);
  if (DURATIONS.has(setting)) return parseDuration(setting, value);
  if (OPTIONAL_DURATIONS.has(setting)) {
    const text = String(value).trim().toLowerCase();
    if (text === 'off' || text === '0') return 0;
    try {
      return parseDuration(setting, value);
    } catch {
      throw new ConfigError(`${setting} must be a duration like 7d, 12h or off, got ${JSON.stringify(value)}`);
    }
  }
  if (RATES.has(setting)) return parseRate(setting, value);
  if (SIZES.has(setting)) {
    if (/\/\s*s\s*$/i.test(String(value))) throw new ConfigError(`${setting} must be a size like 32MiB, got ${JSON.stringify(value)}`);
    return parseRate(setting, value);
  }
  if (LISTS.has(setting)) {
    if (Array.isArray(value)) return value.map(String);
    return String(value).split(',').map((s) => s.trim()).filter(Boolean);
  }
  if (BOOLEANS.has(setting) && typeof value === 'string') {
    if (!['true', 'false'].includes(value.trim().toLowerCase())) throw new ConfigError(`${setting} must be true or false, got ${JSON.stringify(value)}`);
    return value.trim().toLowerCase() === 'true';
  }
  if ((INTEGERS.has(setting) || NUMBERS.has(setting)) && typeof value === 'string') {
    const n = Number(value);
    if (value.trim() === '' || !Number.isFinite(n)) throw new ConfigError(`${setting} must be a number, got ${JSON.stringify(value)}`);
    return n;
  }
  return typeof value === 'number' || typeof value === 'boolean' ? value : String(value);
}

const UNIT_MS: Record<string, number> = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 };

export function parseDuration(setting: string, value: unknown): number {
  if (typeof value === 'number' && Number.isInteger(value) && value > 0) return value;
  const match = /^\s*(\d+)\s*(ms|s|m|h|d)?\s*$/.exec(String(value));
  if (!match) throw new ConfigError(`${setting} must be a duration like 2000ms, 2s, 10m or 3h, got ${JSON.stringify(value)}`);
  return Number(match[1]) * UNIT_MS[match[2] ?? 'ms']!;
}

/** Bytes per second: `67108864`, `64MiB`, `64MiB/s`, `1GB` (IEC units are powers of 1024, SI units of 1000). */
export function parseRate(setting: string, value: unknown): number {
  const text = String(value).trim().replace(/\s*\/\s*s$/i, '');
  const parsed = bytes.parse(text);
  if (parsed === null || !Number.isSafeInteger(parsed) || parsed < 0) throw new ConfigError(`${setting} must be a size per second like 64MiB, 512KiB/s or 0, got ${JSON.stringify(value)}`);
  return parsed;
}
