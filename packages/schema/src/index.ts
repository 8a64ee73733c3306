export {
  spawnSchema,
  putKeyspace,
  loadSchema,
  schemaVersion,
  validateKeyspaceRequest,
  SCHEMA_ACTOR,
  type SchemaMsg,
  type SchemaOptions,
  type SchemaListener,
  type SchemaSnapshot,
  type StoredKeyspace,
} from './schema.js';
