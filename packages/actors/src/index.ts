export {
  ActorSystem,
  type ActorRef,
  type Answered,
  type ActorContext,
  type ActorSystemOptions,
  type MessageClock,
  type Behavior,
  type SpawnOptions,
  type SupervisionOptions,
  type SystemStats,
} from './system.js';
export { type ReplyTo, type ActorAddress, type Envelope, type Codec, type WireError, msgpackCodec, checkEnvelope, isClockStamp } from './envelope.js';
export { type MailboxOptions, type OverflowPolicy } from './mailbox.js';
export { MailboxFull, AskTimeout, NodeUnreachable, ActorStopped, ActorNotFound, ActorCrashed, RemoteActorError, UnexpectedReply, toWireError, fromWireError } from './errors.js';
export { DeadlineQueues } from './deadlines.js';
