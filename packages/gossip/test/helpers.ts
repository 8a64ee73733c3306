import { type ActorRef, ActorSystem } from '@chorus/actors';
import { type Logger, type NodeId, nodeId } from '@chorus/core';
import { type LinkFaults, Simulation } from '@chorus/sim';
import { wireCodec } from '@chorus/wire';
import { type GossipMsg, type GossipOptions, type MembershipEvent, type MembershipSnapshot, reportLink, spawnGossiper, subscribe } from '../src/index.js';

export const INTERVAL = 1_000;

export interface Harness {
  sim: Simulation;
  /** The latest view each node pushed to its probe (stale for crashed nodes). */
  views: Map<string, MembershipSnapshot>;
  events: Map<string, MembershipEvent[]>;
  gossipers: Map<string, ActorRef<GossipMsg>>;
  systems: Map<string, ActorSystem>;
  logs: Array<{ level: string; msg: string | undefined; obj: object }>;
  add(name: string, options?: Partial<GossipOptions>): Promise<void>;
  /** Every running node in `observers` sees `predicate` hold for its view. */
  all(predicate: (view: MembershipSnapshot, node: string) => boolean, observers?: string[]): boolean;
  running(): string[];
}

/** A logger that keeps warn and info lines, so tests can look for them. */
function recordingLogger(logs: Harness['logs'], bindings: object = {}): Logger {
  const keep = (level: string) => (obj: object, msg?: string) => void logs.push({ level, msg, obj: { ...bindings, ...obj } });
  return { debug() {}, info: keep('info'), warn: keep('warn'), error: keep('error'), child: (b) => recordingLogger(logs, { ...bindings, ...b }) };
}

export function names(n: number, from = 1): string[] {
  return Array.from({ length: n }, (_, i) => `n${i + from}`);
}

export async function harness(seed: number, network: Partial<LinkFaults> = { latencyMs: 2, jitterMs: 3 }, base: Partial<GossipOptions> = {}, wiring: { linkReports?: boolean } = {}): Promise<Harness> {
  const logs: Harness['logs'] = [];
  const sim = new Simulation({ seed, network, logger: recordingLogger(logs) });
  const views = new Map<string, MembershipSnapshot>();
  const events = new Map<string, MembershipEvent[]>();
  const gossipers = new Map<string, ActorRef<GossipMsg>>();
  const systems = new Map<string, ActorSystem>();
  const h: Harness = {
    sim,
    views,
    events,
    gossipers,
    systems,
    logs,
    async add(name, options = {}) {
      await sim.addNode(name, ({ env, transport }) => {
        const system = new ActorSystem({ env, transport, codec: wireCodec() });
        systems.set(name, system);
        const gossiper = spawnGossiper(system, { clusterName: 'test', seeds: [nodeId('n1')], gossipIntervalMs: INTERVAL, ...base, ...options });
        gossipers.set(name, gossiper);
        // As the node composition does: the transport's link reports feed the failure detector.
        if (wiring.linkReports) transport.onLinkState((peer, state) => reportLink(gossiper, peer, state));
        const log: MembershipEvent[] = [];
        events.set(name, log);
        const probe = system.spawn<MembershipEvent>('probe', () => ({
          receive(event) {
            views.set(name, event.view);
            log.push(event);
          },
        }));
        subscribe(gossiper, probe);
      });
    },
    all(predicate, observers = h.running()) {
      return observers.every((n) => {
        const view = views.get(n);
        return view !== undefined && predicate(view, n);
      });
    },
    running() {
      return sim.nodeIds().filter((n) => sim.isUp(n));
    },
  };
  return h;
}

/** Runs until `done()` holds or `limitMs` of virtual time passed; returns the virtual time it took, or undefined. */
export async function until(h: Harness, done: () => boolean, limitMs: number): Promise<number | undefined> {
  const start = h.sim.now;
  await h.sim.run({ stopWhen: done, untilMs: start + limitMs });
  return done() ? h.sim.now - start : undefined;
}

/** A cluster of `n` nodes with seed n1 that has converged: everyone sees everyone UP. */
export async function converged(seed: number, n: number, network?: Partial<LinkFaults>, base?: Partial<GossipOptions>): Promise<Harness> {
  const h = await harness(seed, network, base);
  for (const name of names(n)) await h.add(name);
  const took = await until(h, () => h.all((v) => v.liveNodes().length === n), 120_000);
  if (took === undefined) throw new Error(`seed ${seed}: ${n} nodes did not converge within 120 s`);
  return h;
}

export function id(name: string): NodeId {
  return nodeId(name);
}
