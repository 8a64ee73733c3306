import { ChorusError } from '@chorus/core';

/** An application state value that cannot be put on the wire (bad token, too long, unknown status). */
export class InvalidAppState extends ChorusError {
  constructor(key: string, detail: string) {
    super('InvalidAppState', 'INVALID_APP_STATE', `invalid application state ${key}: ${detail}`, { key }, 400);
  }
}

/** `removeNode` refused: the node is this one, unknown, or still UP (remove only dead nodes, as `nodetool removenode` does). */
export class CannotRemoveNode extends ChorusError {
  constructor(node: string, reason: 'self' | 'unknown' | 'up') {
    const why = reason === 'self' ? 'it is this node' : reason === 'unknown' ? 'no such endpoint' : 'it is UP';
    super('CannotRemoveNode', 'CANNOT_REMOVE_NODE', `cannot remove node ${node}: ${why}`, { node, reason }, 400);
  }
}
