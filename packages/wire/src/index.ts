export { MESSAGE_KINDS, type MessageKind, type WireMessage, type KindSpec, type GossipDigestWire, type EndpointStateWire } from './kinds.js';
export { wireCodec, type WireCodecOptions, MAX_FRAME_BYTES } from './codec.js';
export { FrameRejected, type RejectReason } from './errors.js';
