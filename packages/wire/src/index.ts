export { MESSAGE_KINDS, MAX_HANDOFF_HINTS, MAX_STREAM_ENTRIES, MAX_BATCH_ITEMS, MAX_REPAIR_TREE_NODES, MAX_REPAIR_TREE_DEPTH, MAX_REPAIR_ROWS, type MessageKind, type WireMessage, type KindSpec, type GossipDigestWire, type EndpointStateWire, type KeyspaceDefinitionWire } from './kinds.js';
export { wireCodec, type WireCodecOptions, MAX_FRAME_BYTES } from './codec.js';
export { FrameRejected, type RejectReason, HandshakeRefused, type HandshakeFailure } from './errors.js';
export {
  createWsTransport,
  listenWsTransport,
  peerTlsServerOptions,
  type WsTransport,
  type WsTransportOptions,
  type WsListenOptions,
  type WsTransportStats,
  type PeerLinkStats,
} from './ws-transport.js';
export type { PeerTls } from './ws-shared.js';
export { PEER_PATH } from './ws-peer-address.js';
export type { OutboundPhase } from './ws-outbound.js';
export { PEER_PROTOCOL_VERSION, PEER_CLOSE_CODES, LATER_KINDS, type PeerCloseReason } from './handshake.js';
/** The dialing side of the handshake and the frame container, for tools that speak to a node as a peer (the fuzzer). */
export { ClientHandshake, type HandshakeIdentity } from './handshake.js';
export { encodeBatch } from './batch.js';
