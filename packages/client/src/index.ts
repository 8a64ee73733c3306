export {
  connect,
  type ChorusClient,
  type ClientOptions,
  type ClientEnv,
  type ClientStats,
  type HostStats,
  type HostState,
  type Bytes,
  type PutOptions,
  type ReadOptions,
  type DelOptions,
  type SliceOptions,
  type SliceResult,
  type Row,
  type LocalCell,
  type RingInfo,
} from './client.js';
export {
  Unavailable,
  WriteTimeout,
  ReadTimeout,
  InvalidRequest,
  Overloaded,
  ConnectionError,
  NoHostAvailable,
  RequestTimeout,
  ClientClosed,
  RETRIED_SERVER_ERRORS,
  READ_RETRIED_SERVER_ERRORS,
  errorFromWire,
} from './errors.js';
/** The wire protocol, for servers and tools that speak it. */
export * as protocol from './protocol.js';
