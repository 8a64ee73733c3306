import { ChorusError, InvalidRequest } from '@chorus/core';

export class InvalidSlice extends InvalidRequest {
  constructor(message: string) {
    super(message, { reason: 'INVALID_SLICE' });
  }
}

/** The store was closed (node shutting down); the write was not applied. */
export class StorageClosed extends ChorusError {
  constructor() {
    super('StorageClosed', 'STORAGE_CLOSED', 'storage is closed', {}, 503);
  }
}
