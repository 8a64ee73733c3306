export { startCluster, stopCluster, killNode, readLayout, addressOf, waitForCluster, type ClusterLayout, type StartOptions } from './cluster.js';
export { request, getJson, CliError } from './http.js';
export { formatStatus, formatRing, type StatusNode, type RingEntry } from './format.js';
export { createCa, issueCert, type Pem } from './certs.js';
export { caPath, tokensPath, firstToken } from './cluster.js';
