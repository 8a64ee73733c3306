import { ChorusError } from '@chorus/core';

/** A range could not be repaired; `reason` says why (a replica down, a timeout, a refusal). Its job goes on with the other ranges. */
export class RepairSessionFailed extends ChorusError {
  constructor(keyspace: string, start: string, end: string, reason: string) {
    super('RepairSessionFailed', 'REPAIR_SESSION_FAILED', `repair of ${keyspace} (${start}, ${end}] failed: ${reason}`, { keyspace, start, end, reason }, 503);
  }
}

/** A replica of a range is down: the range fails at once rather than hang, and is not recorded as repaired. */
export class ReplicaDown extends ChorusError {
  constructor(node: string) {
    super('ReplicaDown', 'REPLICA_DOWN', `replica ${node} is down`, { node }, 503);
  }
}

/** A session asked about a tree this node does not hold (it restarted, or released the session after it idled). */
export class UnknownRepairSession extends ChorusError {
  constructor(session: string) {
    super('UnknownRepairSession', 'UNKNOWN_REPAIR_SESSION', `no repair session ${session} here (the node restarted or the session expired)`, { session }, 503);
  }
}

/** The job was cancelled while the session ran. */
export class RepairCancelled extends ChorusError {
  constructor(job: string) {
    super('RepairCancelled', 'REPAIR_CANCELLED', `repair job ${job} was cancelled`, { job }, 409);
  }
}

/** A job refused because `max` jobs already run on this node. */
export class TooManyRepairJobs extends ChorusError {
  constructor(running: number, max: number) {
    super('TooManyRepairJobs', 'TOO_MANY_REPAIR_JOBS', `${running} repair job(s) already run on this node (at most ${max}); wait for one to end or cancel it`, { running, max }, 503);
  }
}

/** The repair service was stopped (the node is stopping). */
export class RepairStopped extends ChorusError {
  constructor() {
    super('RepairStopped', 'REPAIR_STOPPED', 'the repair service is stopping', {}, 503);
  }
}
