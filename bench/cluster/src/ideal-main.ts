import { parseArgs } from 'node:util';
import { startIdealNode } from './ideal-node.js';

// One ideal node in the foreground: `ideal-main.js --port P --ports P1,P2,P3 --dir D [--durable] [--plain-keys]`.
// It prints `ready` once it listens and holds a link to every peer, and stops on SIGTERM, or when its parent goes.
const { values } = parseArgs({ options: { port: { type: 'string' }, ports: { type: 'string' }, dir: { type: 'string' }, durable: { type: 'boolean', default: false }, 'plain-keys': { type: 'boolean', default: false } } });
const port = Number(values.port);
const ports = String(values.ports ?? '').split(',').map(Number);
if (!Number.isInteger(port) || ports.some((p) => !Number.isInteger(p)) || !values.dir) {
  process.stderr.write('usage: ideal-main.js --port P --ports P1,P2,P3 --dir D [--durable] [--plain-keys]\n');
  process.exit(2);
}
const node = await startIdealNode({ port, ports, dir: values.dir, durable: values.durable === true, plainKeys: values['plain-keys'] === true });
process.stdout.write('ready\n');
let stopping = false;
const stop = () => {
  if (stopping) return;
  stopping = true;
  node.close().then(
    () => process.exit(0),
    () => process.exit(1),
  );
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
// The parent's end closes the pipe: a bench killed outright leaves no ideal node behind.
process.stdin.on('end', stop);
process.stdin.resume();
