import { ChorusError, Overloaded, isChorusError } from '@chorus/core';
import type { WireError } from './envelope.js';

/** The receiving actor's mailbox is full (messages, or its byte budget) and its policy is to reject. */
export class MailboxFull extends Overloaded {
  constructor(actor: string, capacity: number, bytes?: { heldBytes: number; requestBytes: number }) {
    super(`mailbox of actor ${actor}`, capacity, bytes);
    this.name = 'MailboxFull';
  }
}

/** No reply arrived within the ask's timeout. The message may still have been processed. */
export class AskTimeout extends ChorusError {
  constructor(actor: string, timeoutMs: number) {
    super('AskTimeout', 'ASK_TIMEOUT', `no reply from ${actor} within ${timeoutMs} ms`, { timeoutMs }, 504);
  }
}

/** The transport reports the actor's node as unreachable. */
export class NodeUnreachable extends ChorusError {
  constructor(node: string) {
    super('NodeUnreachable', 'NODE_UNREACHABLE', `node ${node} is unreachable`, { node }, 503);
  }
}

/** The actor stopped before it handled the message. */
export class ActorStopped extends ChorusError {
  constructor(actor: string) {
    super('ActorStopped', 'ACTOR_STOPPED', `actor ${actor} is stopped`, {}, 503);
  }
}

/** No actor of that name lives on the node. */
export class ActorNotFound extends ChorusError {
  constructor(actor: string) {
    super('ActorNotFound', 'ACTOR_NOT_FOUND', `no actor named ${actor}`, {}, 503);
  }
}

/** The actor threw while handling the message; its supervisor is restarting it. */
export class ActorCrashed extends ChorusError {
  constructor(actor: string, cause: unknown) {
    super('ActorCrashed', 'ACTOR_CRASHED', `actor ${actor} failed: ${cause instanceof Error ? cause.message : String(cause)}`, {}, 500);
  }
}

/**
 * A peer answered an ask with a reply of another kind than the ask's kind
 * takes (the wire's kind table says which). The answer is not used; the peer
 * may still have handled the message.
 */
export class UnexpectedReply extends ChorusError {
  constructor(node: string, actor: string, expected: string | null, received: string | undefined) {
    super(
      'UnexpectedReply',
      'UNEXPECTED_REPLY',
      `${node}/${actor} answered with ${received ?? 'a message of no known kind'} where ${expected === null ? 'no reply' : expected} was due`,
      { node, actor, expected, received: received ?? null },
      502,
    );
  }
}

/** The error a remote actor answered with, rebuilt on this side with its name, code and numbers. */
export class RemoteActorError extends ChorusError {
  constructor(name: string, code: string, message: string, fields: Record<string, unknown>, httpStatus: number) {
    super(name, code, message, fields, httpStatus);
  }
}

/** An error as it crosses the wire: a Chorus error keeps its name, code, fields and status; anything else is an internal error. */
export function toWireError(error: Error): WireError {
  if (isChorusError(error)) return { name: error.name, code: error.code, message: error.message, fields: { ...error.fields }, status: error.httpStatus };
  return { name: 'InternalError', code: 'INTERNAL', message: error.message, fields: {}, status: 500 };
}

/** The error a peer sent, rebuilt with the same name, code, fields and status. */
export function fromWireError(e: WireError): RemoteActorError {
  return new RemoteActorError(e.name, e.code, e.message, e.fields, e.status);
}
