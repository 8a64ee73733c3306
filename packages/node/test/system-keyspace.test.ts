import { tokenOf } from '@chorus/ring';
import { LOCAL, SCHEMA_PARTITION, SYSTEM_PARTITION_TOKENS, systemRow } from '@chorus/storage';
import { describe, expect, it } from 'vitest';

describe('system keyspace', () => {
  it("stores each system partition under the partitioner's token of its name, as earlier versions wrote it", () => {
    for (const [partition, token] of Object.entries(SYSTEM_PARTITION_TOKENS)) expect(token).toBe(tokenOf(partition));
    expect(systemRow(SCHEMA_PARTITION, 'ks').token).toBe(tokenOf('schema'));
    for (const row of Object.values(LOCAL)) expect(row.token).toBe(tokenOf('local'));
  });
});
