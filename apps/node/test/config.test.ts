import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { loadSettings } from '../src/config.js';
import { ConfigError } from '../src/errors.js';
import { HEAP_RESERVE_BYTES, derivedBudgets, heapFlags, runsWithFlags } from '../src/heap.js';

const required = { name: 'n1', listen_address: '127.0.0.1:7100', data_dir: '/tmp/x', secret: 'sesame-sesame' };

describe('settings', () => {
  const dirs: string[] = [];
  const tempDir = () => {
    const dir = mkdtempSync(join(tmpdir(), 'chorus-config-'));
    dirs.push(dir);
    return dir;
  };
  afterEach(() => {
    for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
  });

  it('fills in documented defaults', () => {
    const s = loadSettings({ flags: required });
    expect(s).toMatchObject({ cluster_name: 'chorus', num_tokens: 16, phi_convict_threshold: 8, write_request_timeout: 2_000, commit_sync: 'periodic', gc_grace_seconds: 864_000 });
  });

  it('has hinted handoff on by default, and reads its settings as cassandra.yaml names them', () => {
    expect(loadSettings({ flags: required })).toMatchObject({ hinted_handoff_enabled: true, max_hint_window: 3 * 3_600_000, max_hints_size_per_host: 1024, hinted_handoff_throttle: 1024 });
    const s = loadSettings({ flags: required, overrides: ['hinted_handoff_enabled=false', 'max_hint_window=30m', 'max_hints_size_per_host=0', 'hinted_handoff_throttle=256'] });
    expect(s).toMatchObject({ hinted_handoff_enabled: false, max_hint_window: 1_800_000, max_hints_size_per_host: 0, hinted_handoff_throttle: 256 });
    expect(loadSettings({ flags: required, environment: { CHORUS_MAX_HINT_WINDOW: '48h' } }).max_hint_window).toBe(48 * 3_600_000);
    expect(() => loadSettings({ flags: required, overrides: ['max_hint_window=soon'] })).toThrow(/max_hint_window must be a duration/);
    expect(() => loadSettings({ flags: required, overrides: ['hinted_handoff_throttle=-1'] })).toThrow(/hinted_handoff_throttle/);
    expect(() => loadSettings({ flags: required, overrides: ['hinted_handoff_enabled=maybe'] })).toThrow(/hinted_handoff_enabled must be true or false/);
  });

  it('reads point reads inline by default only where the I/O pool has one thread', () => {
    const s = loadSettings({ flags: required });
    expect(s.point_reads).toBe(s.io_threads === 1 ? 'inline' : 'pool');
    expect(loadSettings({ flags: required, overrides: ['point_reads=pool'] }).point_reads).toBe('pool');
    expect(loadSettings({ flags: required, overrides: ['point_reads=inline'] }).point_reads).toBe('inline');
    expect(() => loadSettings({ flags: required, overrides: ['point_reads=sometimes'] })).toThrow(/point_reads/);
  });

  it('bounds the writes answered before their last replicas, 1024 unless set', () => {
    expect(loadSettings({ flags: required }).max_background_writes).toBe(1024);
    expect(loadSettings({ flags: required, overrides: ['max_background_writes=64'] }).max_background_writes).toBe(64);
    expect(() => loadSettings({ flags: required, overrides: ['max_background_writes=0'] })).toThrow(/max_background_writes/);
  });

  it('reads the byte budgets as sizes, and refuses one too small to hold the largest value', () => {
    const MiB = 1024 * 1024;
    const s = loadSettings({ flags: required, overrides: ['max_heap_size=4GiB', 'max_inflight_request_bytes=256MiB', 'max_mailbox_bytes=1GB'], environment: { CHORUS_MAX_STORAGE_BATCH_BYTES: '4194304' } });
    expect(s).toMatchObject({ max_heap_size: 4096 * MiB, max_inflight_request_bytes: 256 * MiB, max_mailbox_bytes: 1_000_000_000, max_storage_batch_bytes: 4 * MiB });
    expect(() => loadSettings({ flags: required, overrides: ['max_inflight_request_bytes=1MiB'] })).toThrow(/max_inflight_request_bytes/);
    expect(() => loadSettings({ flags: required, overrides: ['max_mailbox_bytes=64MiB/s'] })).toThrow(/max_mailbox_bytes must be a size/);
    expect(() => loadSettings({ flags: required, overrides: ['max_coordinator_inflight_bytes=lots'] })).toThrow(/max_coordinator_inflight_bytes/);
  });

  describe('max_heap_size', () => {
    const MiB = 1024 * 1024;
    const budgets = ['max_inflight_request_bytes', 'max_inflight_request_bytes_per_connection', 'max_coordinator_inflight_bytes', 'max_mailbox_bytes', 'max_storage_batch_bytes'] as const;
    /** What the budgets may hold at once: the two mailboxes each, a connection's bytes inside the node's. */
    const atOnce = (s: ReturnType<typeof loadSettings>) => s.max_inflight_request_bytes + s.max_coordinator_inflight_bytes + 2 * s.max_mailbox_bytes + s.max_storage_batch_bytes;

    it('derives every byte budget not set from the heap, leaving room for the node', () => {
      const s = loadSettings({ flags: required });
      expect(s.max_heap_size).toBe(160 * MiB);
      expect(s.row_cache_size).toBe(64);
      expect(atOnce(s)).toBeLessThanOrEqual(s.max_heap_size - HEAP_RESERVE_BYTES);
      for (const name of budgets) expect(s[name]).toBeGreaterThanOrEqual(2 * MiB);
      // A bigger heap gives bigger budgets, but for the coordinator's, already at its cap.
      const big = loadSettings({ flags: required, overrides: ['max_heap_size=1GiB'] });
      for (const name of budgets) if (name !== 'max_coordinator_inflight_bytes') expect(big[name]).toBeGreaterThan(s[name]);
      // The writes a node coordinates stay below what a peer link queues (16 MiB), whatever the heap.
      expect(loadSettings({ flags: required, overrides: ['max_heap_size=4GiB'] }).max_coordinator_inflight_bytes).toBe(12 * MiB);
      expect(big.max_mailbox_bytes).toBe(derivedBudgets(1024 * MiB).max_mailbox_bytes);
      // The row cache is outside the heap: its size leaves the budgets as they are.
      const cached = loadSettings({ flags: required, overrides: ['max_heap_size=1GiB', 'row_cache_size=4096'] });
      expect(cached.max_inflight_request_bytes).toBe(big.max_inflight_request_bytes);
    });

    it('keeps a budget that is set, and derives the others', () => {
      const s = loadSettings({ flags: required, environment: { CHORUS_MAX_HEAP_SIZE: '512MiB' }, overrides: ['max_coordinator_inflight_bytes=8MiB'] });
      expect(s.max_coordinator_inflight_bytes).toBe(8 * MiB);
      expect(s.max_mailbox_bytes).toBe(derivedBudgets(512 * MiB).max_mailbox_bytes);
    });

    it('refuses, in one line with the figures, a heap too small for the node, and budgets set that do not fit it', () => {
      expect(() => loadSettings({ flags: required, overrides: ['max_heap_size=64MiB', 'max_mailbox_bytes=2MiB', 'max_inflight_request_bytes=2MiB'] })).not.toThrow();
      expect(loadSettings({ flags: required, overrides: ['max_heap_size=64MiB'] }).max_heap_size).toBe(64 * MiB);
      expect(() => loadSettings({ flags: required, overrides: ['max_heap_size=32MiB'] })).toThrow(/max_heap_size/);
      let message = '';
      try {
        loadSettings({ flags: required, overrides: ['max_mailbox_bytes=128MiB'] });
      } catch (error) {
        expect(error).toBeInstanceOf(ConfigError);
        message = (error as Error).message;
      }
      expect(message).toMatch(/^the byte budgets do not fit max_heap_size 160 MiB: .*max_mailbox_bytes 128 MiB × 2.* raise max_heap_size to at least \d+(\.\d)? MiB or lower the budgets set \(max_mailbox_bytes\)$/);
      expect(message).not.toContain('\n');
      expect(() => loadSettings({ flags: required, overrides: ['max_heap_size=32GiB', 'max_mailbox_bytes=128MiB'] })).not.toThrow();
      expect(() => loadSettings({ flags: required, overrides: ['max_heap_size=lots'] })).toThrow(/max_heap_size must be a size/);
    });

    it('is the flags of the node process (each known to its V8), which tell whether a process already runs with them', () => {
      const flags = heapFlags(loadSettings({ flags: required, overrides: ['max_heap_size=192MiB'] }));
      expect(flags[0]).toBe('--max-old-space-size=192');
      // Node refuses to start on a V8 flag its V8 does not know: these must all be known.
      expect(execFileSync(process.execPath, [...flags, '-e', 'process.stdout.write("ok")'], { encoding: 'utf8' })).toBe('ok');
      expect(runsWithFlags(flags, flags)).toBe(true);
      expect(runsWithFlags(flags, [])).toBe(false);
      expect(runsWithFlags(flags, [], flags.join(' '))).toBe(true);
      // The command line overrides NODE_OPTIONS, and a flag's last value is the one taken.
      expect(runsWithFlags(flags, ['--max-old-space-size=64', ...flags.slice(1)], flags.join(' '))).toBe(false);
      expect(runsWithFlags(flags, ['--max_old_space_size=64', ...flags])).toBe(true);
      expect(runsWithFlags(flags, [...flags, '--max_old_space_size=64'])).toBe(false);
    });
  });

  it('reads the repair settings: a throttle in bytes per second with IEC sizes, sessions, a schedule off by default, the history kept', () => {
    expect(loadSettings({ flags: required })).toMatchObject({ repair_throttle: 64 * 1024 * 1024, repair_max_sessions: 2, repair_schedule_interval: 0, repair_history_size: 100 });
    const s = loadSettings({ flags: required, overrides: ['repair_throttle=16MiB', 'repair_max_sessions=4', 'repair_schedule_interval=7d', 'repair_history_size=10'] });
    expect(s).toMatchObject({ repair_throttle: 16 * 1024 * 1024, repair_max_sessions: 4, repair_schedule_interval: 7 * 86_400_000, repair_history_size: 10 });
    // cassandra.yaml writes throughputs per second; a bare number is bytes; 0 is unthrottled.
    expect(loadSettings({ flags: required, overrides: ['repair_throttle=512KiB/s'] }).repair_throttle).toBe(512 * 1024);
    expect(loadSettings({ flags: required }).stream_throughput).toBe(24 * 1024 * 1024);
    expect(loadSettings({ flags: required, overrides: ['stream_throughput=8MiB/s'] }).stream_throughput).toBe(8 * 1024 * 1024);
    expect(() => loadSettings({ flags: required, overrides: ['stream_throughput=fast'] })).toThrow(/stream_throughput must be a size per second/);
    expect(loadSettings({ flags: required, overrides: ['repair_throttle=1GB'] }).repair_throttle).toBe(1_000_000_000);
    expect(loadSettings({ flags: required, overrides: ['repair_throttle=0'] }).repair_throttle).toBe(0);
    expect(loadSettings({ flags: required, environment: { CHORUS_REPAIR_THROTTLE: '1048576' } }).repair_throttle).toBe(1_048_576);
    expect(loadSettings({ flags: required, overrides: ['repair_schedule_interval=off'] }).repair_schedule_interval).toBe(0);
    expect(loadSettings({ flags: required, overrides: ['repair_schedule_interval=36h'] }).repair_schedule_interval).toBe(36 * 3_600_000);
    const dir = tempDir();
    const file = join(dir, 'chorus.yaml');
    writeFileSync(file, 'repair_throttle: 8MiB/s\nrepair_schedule_interval: 1d\nrepair_max_sessions: 3\n');
    expect(loadSettings({ file, flags: required })).toMatchObject({ repair_throttle: 8 * 1024 * 1024, repair_schedule_interval: 86_400_000, repair_max_sessions: 3 });
  });

  it.each([
    ['repair_throttle=fast', /repair_throttle must be a size per second like 64MiB, 512KiB\/s or 0, got "fast"/],
    ['repair_throttle=-1MiB', /repair_throttle must be a size per second/],
    ['repair_throttle=16M', /repair_throttle must be a size per second/],
    ['repair_max_sessions=0', /repair_max_sessions/],
    ['repair_max_sessions=65', /repair_max_sessions/],
    ['repair_schedule_interval=weekly', /repair_schedule_interval must be a duration like 7d, 12h or off/],
    ['repair_schedule_interval=400d', /repair_schedule_interval/],
    ['repair_history_size=0', /repair_history_size/],
  ])('refuses a bad repair setting with a one-line reason: %s', (pair, message) => {
    expect(() => loadSettings({ flags: required, overrides: [pair] })).toThrow(message);
  });

  it('sweeps for gc every hour by default; gc_sweep_interval is a duration', () => {
    expect(loadSettings({ flags: required }).gc_sweep_interval).toBe(3_600_000);
    expect(loadSettings({ flags: required, overrides: ['gc_sweep_interval=500ms', 'gc_grace_seconds=2'] })).toMatchObject({ gc_sweep_interval: 500, gc_grace_seconds: 2 });
    expect(() => loadSettings({ flags: required, overrides: ['gc_sweep_interval=often'] })).toThrow(/gc_sweep_interval must be a duration/);
  });

  it('layers file < environment < flags < --set, and parses durations and lists', () => {
    const dir = tempDir();
    const file = join(dir, 'chorus.yaml');
    writeFileSync(file, 'name: from-file\nseeds: [127.0.0.1:7100, 127.0.0.1:7101]\nwrite_request_timeout: 5s\nnum_tokens: 8\n');
    const s = loadSettings({
      file,
      environment: { CHORUS_NUM_TOKENS: '32', CHORUS_DC: 'east', PATH: '/bin' },
      flags: { ...required, name: 'from-flag' },
      overrides: ['dc=west', 'max_clock_skew=2s', 'phi_convict_threshold=10', 'dynamic_snitch_badness_threshold=0.1'],
    });
    expect(s.name).toBe('from-flag');
    expect(s.seeds).toEqual(['127.0.0.1:7100', '127.0.0.1:7101']);
    expect(s.write_request_timeout).toBe(5_000);
    expect(s.num_tokens).toBe(32);
    expect(s.dc).toBe('west');
    expect(s.max_clock_skew).toBe(2_000);
    expect(s.phi_convict_threshold).toBe(10);
    expect(s.dynamic_snitch_badness_threshold).toBe(0.1);
    expect(() => loadSettings({ flags: required, overrides: ['dynamic_snitch_badness_threshold=-1'] })).toThrow(/dynamic_snitch_badness_threshold/);
    expect(s.clock_skew_warn).toBe(20);
    expect(loadSettings({ flags: required, overrides: ['clock_skew_warn=50ms'] }).clock_skew_warn).toBe(50);
  });

  it.each([
    [{ overrides: ['no_such_thing=1'] }, /unknown setting "no_such_thing"/],
    [{ overrides: ['write_request_timeout=soon'] }, /write_request_timeout must be a duration/],
    [{ overrides: ['num_tokens=0'] }, /num_tokens/],
    [{ overrides: ['commit_sync=sometimes'] }, /commit_sync/],
    [{ overrides: ['listen_address=nowhere'] }, /listen_address/],
    [{ overrides: ['novalue'] }, /--set expects key=value/],
    [{ file: '/nonexistent/chorus.yaml' }, /cannot read config file/],
  ])('refuses a bad setting with a one-line reason (%#)', (extra, message) => {
    expect(() => loadSettings({ flags: required, ...extra })).toThrow(message);
    try {
      loadSettings({ flags: required, ...extra });
    } catch (error) {
      expect(error).toBeInstanceOf(ConfigError);
      expect((error as Error).message).not.toContain('\n');
    }
  });

  it('requires a name, address, data dir and secret', () => {
    expect(() => loadSettings({ flags: { ...required, secret: undefined } })).toThrow(/secret is required/);
  });

  it('refuses a config file that is not a map', () => {
    const dir = tempDir();
    const file = join(dir, 'bad.yaml');
    writeFileSync(file, '- just\n- a list\n');
    expect(() => loadSettings({ file, flags: required })).toThrow(/must hold a map/);
  });
});

describe('security settings', () => {
  const tls = ['tls_cert_file=/etc/chorus/node.pem', 'tls_key_file=/etc/chorus/node.key', 'tls_ca_file=/etc/chorus/ca.pem'];

  it('are off by default: no authenticator, no encryption, /metrics open', () => {
    expect(loadSettings({ flags: required })).toMatchObject({ authenticator: 'none', authenticator_tokens_file: '', metrics_require_auth: false, internode_encryption: 'none', client_encryption: false, tls_cert_file: '', tls_key_file: '', tls_ca_file: '' });
    const s = loadSettings({ flags: required, overrides: ['authenticator=token', 'authenticator_tokens_file=/etc/chorus/tokens', 'metrics_require_auth=true', 'internode_encryption=all', 'client_encryption=true', ...tls] });
    expect(s).toMatchObject({ authenticator: 'token', authenticator_tokens_file: '/etc/chorus/tokens', metrics_require_auth: true, internode_encryption: 'all', client_encryption: true, tls_ca_file: '/etc/chorus/ca.pem' });
  });

  it.each([
    [['authenticator=password'], /authenticator/],
    [['authenticator=token'], /authenticator: token needs authenticator_tokens_file/],
    [['internode_encryption=dc'], /internode_encryption/],
    [['client_encryption=yes'], /client_encryption must be true or false/],
    [['internode_encryption=all', 'client_encryption=true'], /needs tls_cert_file, tls_key_file and tls_ca_file/],
    [['internode_encryption=all', 'client_encryption=true', 'tls_cert_file=/a.pem'], /needs tls_cert_file, tls_key_file and tls_ca_file \(missing: tls_key_file, tls_ca_file\)/],
    [['internode_encryption=all', ...tls], /internode_encryption: all and client_encryption: false .* one port/],
    [['client_encryption=true', ...tls], /internode_encryption: none and client_encryption: true .* one port/],
  ])('refuses mismatched security settings with a one-line reason: %s', (pairs, message) => {
    let caught: unknown;
    try {
      loadSettings({ flags: required, overrides: pairs });
    } catch (error) {
      caught = error;
    }
    expect(caught).toBeInstanceOf(ConfigError);
    expect((caught as Error).message).toMatch(message);
    expect((caught as Error).message).not.toContain('\n');
  });
});
