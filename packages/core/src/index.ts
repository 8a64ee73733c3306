export { type NodeId, type HostId, type Token, MIN_TOKEN, MAX_TOKEN, nodeId, hostId, token } from './ids.js';
export { type Clock, type Timer, type Scheduler, type Random, type Logger, type Env, silentLogger, uuidFromBytes } from './env.js';
export { type Transport, type LinkState } from './transport.js';
export { type MembershipView, type MembershipChange, type MembershipEvent, type MembershipListener, type MembershipEvents, type DownReason } from './membership.js';
export { type HintSink, NO_HINTS } from './hints.js';
export { type SchemaGossip, type SchemaMismatch } from './schema-gossip.js';
export { realEnv } from './real-env.js';
export { SeededRandom, hashString } from './seeded-random.js';
export { ChorusError, InvalidRequest, Overloaded, isChorusError } from './errors.js';
