import { ActorSystem, type ReplyTo } from '@chorus/actors';
import { type NodeId, isChorusError } from '@chorus/core';
import { Simulation } from './simulation.js';

export interface ScenarioResult {
  scenario: string;
  seed: number;
  /** Figures worth printing, in order. */
  figures: Record<string, number | string>;
  traceHash: string;
}

type PongerMsg = { type: 'ping'; seq: number; replyTo: ReplyTo<{ from: string; seq: number }> };
type PingerMsg = { type: 'tick' };

/**
 * Five nodes ping each other through asks while the network drops,
 * duplicates and delays frames, random partitions come and go, one ponger
 * crashes now and then (and is restarted by its supervisor), and one node
 * crashes and comes back.
 */
async function demo(seed: number): Promise<ScenarioResult> {
  const sim = new Simulation({ seed, network: { latencyMs: 2, jitterMs: 8, loss: 0.01, duplicate: 0.005, reorder: 0.01 } });
  const names = ['n1', 'n2', 'n3', 'n4', 'n5'];
  const outcome = { asked: 0, answered: 0, timedOut: 0, unreachable: 0, crashed: 0, other: 0 };
  const systems = new Map<string, ActorSystem>();

  for (const name of names) {
    await sim.addNode(name, ({ env, transport }) => {
      const system = new ActorSystem({ env, transport });
      systems.set(name, system);
      system.spawn<PongerMsg>('ponger', () => ({
        receive(msg, ctx) {
          // A deliberate fault: the supervisor restarts the actor and the asker sees ActorCrashed.
          if (msg.seq % 101 === 0) throw new Error(`ping ${msg.seq} is poison`);
          ctx.reply(msg.replyTo, { from: name, seq: msg.seq });
        },
      }));
      system.spawn<PingerMsg>('pinger', () => {
        let seq = 0;
        return {
          started: (ctx) => void ctx.after(env.random.int(50), { type: 'tick' }),
          receive(_msg, ctx) {
            const peer = names[env.random.int(names.length)]! as NodeId;
            const ponger = ctx.system.ref<PongerMsg>({ node: peer, name: 'ponger' });
            const ping = ++seq;
            outcome.asked++;
            ponger.ask<{ from: string; seq: number }>((replyTo) => ({ type: 'ping', seq: ping, replyTo }), 250).then(
              () => void outcome.answered++,
              (error: unknown) => {
                const name = isChorusError(error) ? error.name : 'other';
                if (name === 'AskTimeout') outcome.timedOut++;
                else if (name === 'NodeUnreachable') outcome.unreachable++;
                else if (name === 'ActorCrashed') outcome.crashed++;
                else outcome.other++;
                sim.queue.note(`${env.node} ping ${ping} to ${peer} failed: ${name}`);
              },
            );
            ctx.after(20 + env.random.int(30), { type: 'tick' });
          },
        };
      });
    });
  }

  // Random partitions, each healed after a while.
  for (let t = 1_000; t < 18_000; t += 1_500 + sim.random.int(2_000)) {
    const shuffled = [...names].sort(() => sim.random.next() - 0.5) as NodeId[];
    const cutAt = 1 + sim.random.int(names.length - 1);
    sim.at(t, 'partition', () => sim.network.partition(shuffled.slice(0, cutAt), shuffled.slice(cutAt)));
    sim.at(t + 300 + sim.random.int(1_200), 'heal', () => sim.network.heal());
  }
  sim.at(6_000, 'crash n3', () => sim.crash('n3'));
  sim.at(9_000, 'restart n3', () => sim.restart('n3'));

  const started = performance.now(); // house-rules-allow: measures the harness, not the cluster
  await sim.run({ untilMs: 20_000 });
  const wallMs = performance.now() - started; // house-rules-allow
  const net = sim.network.stats();
  return {
    scenario: 'demo',
    seed,
    figures: {
      ...outcome,
      restarts: [...systems.values()].reduce((n, s) => n + s.stats().restarts, 0),
      framesSent: net.sent,
      framesDelivered: net.delivered,
      framesDropped: net.dropped,
      events: sim.queue.eventsExecuted,
      virtualMs: sim.now,
      wallMs: Math.round(wallMs),
    },
    traceHash: sim.traceHash(),
  };
}

type SinkMsg = { type: 'data'; payload: number };
type SourceMsg = { type: 'tick' };

/** Ten nodes flood each other with small messages until 100,000 have been delivered: how fast the simulator itself is. */
async function throughput(seed: number, target = 100_000): Promise<ScenarioResult> {
  const sim = new Simulation({ seed, network: { latencyMs: 1, jitterMs: 1 } });
  const names = Array.from({ length: 10 }, (_, i) => `n${i + 1}`);
  let received = 0;
  for (const name of names) {
    await sim.addNode(name, ({ env, transport }) => {
      const system = new ActorSystem({ env, transport });
      system.spawn<SinkMsg>('sink', () => ({ receiveBatch: (msgs) => void (received += msgs.length) }));
      system.spawn<SourceMsg>('source', () => ({
        started: (ctx) => void ctx.after(1, { type: 'tick' }),
        receive(_msg, ctx) {
          for (let i = 0; i < 100; i++) {
            const peer = names[env.random.int(names.length)]! as NodeId;
            if (peer !== env.node) ctx.system.ref<SinkMsg>({ node: peer, name: 'sink' }).tell({ type: 'data', payload: i });
          }
          ctx.after(1, { type: 'tick' });
        },
      }));
    });
  }
  const started = performance.now(); // house-rules-allow
  await sim.run({ stopWhen: () => received >= target });
  const wallMs = performance.now() - started; // house-rules-allow
  return {
    scenario: 'throughput',
    seed,
    figures: {
      nodes: names.length,
      messagesDelivered: received,
      events: sim.queue.eventsExecuted,
      virtualMs: sim.now,
      wallMs: Math.round(wallMs),
      messagesPerSecond: Math.round(received / (wallMs / 1000)),
    },
    traceHash: sim.traceHash(),
  };
}

/** Each scenario takes a seed and, where it has one, a size (throughput: messages to deliver). */
export const scenarios: Record<string, (seed: number, size?: number) => Promise<ScenarioResult>> = { demo, throughput };

export function runScenario(name: string, seed: number, size?: number): Promise<ScenarioResult> {
  const scenario = scenarios[name];
  if (!scenario) throw new Error(`unknown scenario ${JSON.stringify(name)}; known: ${Object.keys(scenarios).join(', ')}`);
  return scenario(seed, size);
}
