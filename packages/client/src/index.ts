export { connect, type ChorusClient, type ClientStats, type HostStats, type SliceResult, type ClientRow, type LocalCell } from './client.js';
export { type ClientOptions, type ClientEnv, type Bytes, type GetOptions, type PutOptions, type DelOptions, type SliceOptions } from './options.js';
export { type HostState, type RingInfo } from './routing.js';
export { type ChorusSession, type SessionOptions, DEFAULT_SESSION_MAX_KEYS } from './session.js';
export {
  Unavailable,
  WriteTimeout,
  ReadTimeout,
  SessionFloorNotMet,
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
