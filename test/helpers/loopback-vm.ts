// The QEMU-like loopback of the two chardev sockets now lives in the product (`npm run demo` uses it).
export { startLoopbackVm, type LoopbackVm } from '../../examples/demo/loopback-vm.js';
