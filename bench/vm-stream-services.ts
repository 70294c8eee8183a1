// The services behind the stream transfers of `npm run bench:vm`: `sink` and `source`
// (bench/stream-services.ts) on UNIX sockets in the benchmark guest, which the guest daemon offers to the
// host (`--service NAME=unix:PATH`). Started in the guest beside the daemon as `node
// dist/bench/vm-stream-services.js`; prints `vm-stream-services ready` on the console once both listen.
import { startStreamServices } from './stream-services.js';
import { VM_STREAM_SERVICES } from './vm-guest.js';

await startStreamServices(VM_STREAM_SERVICES);
console.log(`vm-stream-services ready: sink on ${VM_STREAM_SERVICES.sink}, source on ${VM_STREAM_SERVICES.source}`);
