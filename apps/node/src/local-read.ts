import { InvalidRequest, SchemaDisagreement } from '@chorus/core';
import { type ChorusNode, SYSTEM_KEYSPACE } from '@chorus/node';

/**
 * This node's own replica of a row (`GET /v1/local`, the client's `local`).
 * It bypasses coordination, so it must not become a way around the schema:
 * only keyspaces of the schema are read. Keyspace `system` holds host ids,
 * tokens and generations, which are no client's business.
 */
export async function readLocal(node: ChorusNode, keyspace: string, key: Uint8Array | string, clustering: Uint8Array | string | undefined) {
  if (keyspace === SYSTEM_KEYSPACE) throw new InvalidRequest(`keyspace ${SYSTEM_KEYSPACE} holds the node's own records and is not readable`, { field: 'keyspace' });
  const { keyspaces, schemaAgreed } = await node.keyspaces();
  if (!keyspaces.some((k) => k.name === keyspace)) {
    if (!schemaAgreed) throw new SchemaDisagreement(keyspace);
    throw new InvalidRequest(`unknown keyspace ${JSON.stringify(keyspace).slice(0, 80)}`, { field: 'keyspace', reason: 'UNKNOWN_KEYSPACE' });
  }
  return node.coordinator.local(keyspace, key, clustering);
}
