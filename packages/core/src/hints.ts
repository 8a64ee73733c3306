import type { NodeId } from './ids.js';

/**
 * Where a coordinator leaves the writes a replica missed, so they reach it
 * later (hinted handoff). Generic in the mutation type because core sits
 * below the data model; the node wires the coordinator's sink to the hints
 * service, and the coordinator never imports it. (Cassandra's write path
 * calls its hints service statically; this interface is what avoids that.)
 *
 * Contract:
 * - Called by the coordinator's write request, from the coordinator actor's
 *   turn, once per replica that did not acknowledge in time (or was down
 *   when the request started).
 * - `offer` returns at once and never throws: it must not block the
 *   coordinator. The implementation stores the hint asynchronously.
 * - The promise resolves `true` once the hint is as durable as the node's
 *   local writes (its commit mode), so a write at consistency ANY may count
 *   it as the one acknowledgement it needs. It resolves `false` when the
 *   hint was refused (hints disabled, the target has been down longer than
 *   the hint window, the target is unknown, the hints store is over its
 *   budget) or could not be stored: the write is then missed until repair.
 *   It never rejects.
 */
export interface HintSink<M> {
  offer(target: NodeId, mutation: M): Promise<boolean>;
}

/** The sink of a node without hinted handoff: refuses every hint. */
export const NO_HINTS: HintSink<unknown> = {
  offer: () => Promise.resolve(false),
};
