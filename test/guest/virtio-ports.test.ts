import { spawn } from 'node:child_process';
import fs from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import t, { type Test } from 'tap';
import { ConfigError } from '../../common/wire/errors.js';
import {
  findDeviceHolders,
  findVirtioPort,
  listVirtioPorts,
  openPortDevice,
  PortNotFoundError,
  waitForVirtioPort,
} from '../../guest/virtio-ports.js';

// A sysfs tree as the virtio_console driver shows it: numbers unrelated to names, one port not named yet.
function fakeSysfs(t: Test, ports: Record<string, string>): { sysRoot: string; devRoot: string } {
  const entries = Object.fromEntries(Object.entries(ports).map(([entry, name]) => [entry, { name }]));
  const root = t.testdir({ sys: { class: { 'virtio-ports': entries } }, dev: {} });
  return { sysRoot: path.join(root, 'sys'), devRoot: path.join(root, 'dev') };
}

t.test('listVirtioPorts reads names from sysfs and leaves out unnamed ports', async (t) => {
  const roots = fakeSysfs(t, {
    vport1p2: 'negotiator-guest-to-host.0\n',
    vport1p1: 'negotiator-host-to-guest.0\n',
    vport1p3: '(null)\n',
    vport1p4: '',
  });
  t.same(await listVirtioPorts(roots), [
    { name: 'negotiator-host-to-guest.0', device: path.join(roots.devRoot, 'vport1p1'), entry: 'vport1p1' },
    { name: 'negotiator-guest-to-host.0', device: path.join(roots.devRoot, 'vport1p2'), entry: 'vport1p2' },
  ]);
});

t.test('listVirtioPorts returns nothing when the driver is not loaded', async (t) => {
  const root = t.testdir({});
  t.same(await listVirtioPorts({ sysRoot: root, devRoot: root }), []);
});

t.test('findVirtioPort finds a port by name, not by number', async (t) => {
  const roots = fakeSysfs(t, { vport0p1: 'org.qemu.guest_agent.0\n', vport0p7: 'negotiator-host-to-guest.0\n' });
  const port = await findVirtioPort('negotiator-host-to-guest.0', roots);
  t.equal(port.device, path.join(roots.devRoot, 'vport0p7'));
});

t.test('findVirtioPort names the ports it found when the wanted one is missing', async (t) => {
  const roots = fakeSysfs(t, { vport0p1: 'org.qemu.guest_agent.0\n' });
  const error = await findVirtioPort('negotiator-host-to-guest.0', roots).catch((caught: unknown) => caught);
  t.type(error, PortNotFoundError);
  t.match(error, {
    name: 'PortNotFoundError',
    portName: 'negotiator-host-to-guest.0',
    foundNames: ['org.qemu.guest_agent.0'],
    message:
      'No virtio-serial port named "negotiator-host-to-guest.0": found only "org.qemu.guest_agent.0" (vport0p1). ' +
      'Add a channel named "negotiator-host-to-guest.0" to the domain XML (see libvirt/ and the README) and restart the guest. ' +
      'To use a device directly instead, pass `--character-device PATH`.',
  });
});

t.test('findVirtioPort says what to check when there are no ports at all', async (t) => {
  const root = t.testdir({});
  const error = await findVirtioPort('negotiator-host-to-guest.0', { sysRoot: root }).catch((caught: unknown) => caught);
  t.type(error, PortNotFoundError);
  const message = (error as Error).message;
  t.match(message, `there are no named virtio-serial ports in ${path.join(root, 'class', 'virtio-ports')}`);
  t.match(message, 'virtio_console kernel module is not loaded (`modprobe virtio_console`)');
  t.match(message, 'see libvirt/ and the README');
  t.match(message, '`--character-device PATH`');
});

t.test('a port name is validated before any I/O', async (t) => {
  await t.rejects(findVirtioPort('', {}), ConfigError);
  await t.rejects(findVirtioPort('../vport0p1', {}), { name: 'ConfigError', message: /got `\.\.\/vport0p1`/ });
  await t.rejects(waitForVirtioPort('x', { timeoutMs: -1 }), {
    name: 'ConfigError',
    message: 'Expected the `timeoutMs` option to be a non-negative integer, got `-1`.',
  });
  await t.rejects(waitForVirtioPort('x', { intervalMs: 0 }), { name: 'ConfigError', message: /`intervalMs`/ });
});

t.test('waitForVirtioPort resolves when the name is announced late', async (t) => {
  const roots = fakeSysfs(t, { vport1p1: '(null)\n' });
  const announced = new Promise<void>((resolve) =>
    setTimeout(() => void writeFile(path.join(roots.sysRoot, 'class', 'virtio-ports', 'vport1p1', 'name'), 'late.0\n').then(resolve), 150),
  );
  const port = await waitForVirtioPort('late.0', { ...roots, timeoutMs: 5000, intervalMs: 20 });
  await announced;
  t.equal(port.entry, 'vport1p1');
});

t.test('waitForVirtioPort finds a port whose entry appears late', async (t) => {
  const roots = fakeSysfs(t, {});
  setTimeout(() => {
    const dir = path.join(roots.sysRoot, 'class', 'virtio-ports', 'vport2p1');
    void mkdir(dir).then(() => writeFile(path.join(dir, 'name'), 'later.0\n'));
  }, 100);
  t.equal((await waitForVirtioPort('later.0', { ...roots, timeoutMs: 5000, intervalMs: 20 })).entry, 'vport2p1');
});

t.test('waitForVirtioPort gives up after timeoutMs with the not-found message', async (t) => {
  const roots = fakeSysfs(t, { vport1p1: 'other.0\n' });
  const started = Date.now();
  await t.rejects(waitForVirtioPort('missing.0', { ...roots, timeoutMs: 200, intervalMs: 50 }), {
    name: 'PortNotFoundError',
    message: /^No virtio-serial port named "missing\.0" after waiting 200 ms: found only "other\.0"/,
  });
  t.ok(Date.now() - started >= 190, 'waited about timeoutMs');
});

t.test('waitForVirtioPort stops when aborted', async (t) => {
  const roots = fakeSysfs(t, {});
  const controller = new AbortController();
  setTimeout(() => controller.abort(), 50);
  await t.rejects(waitForVirtioPort('never.0', { ...roots, timeoutMs: 10_000, intervalMs: 20, signal: controller.signal }), { name: 'AbortError' });
});

t.test('findDeviceHolders names the process that has a device open', async (t) => {
  const dir = t.testdir({ device: '' });
  const device = path.join(dir, 'device');
  const fd = fs.openSync(device, 'r');
  const child = spawn('sleep', ['30'], { stdio: ['ignore', 'ignore', 'ignore', fd] });
  fs.closeSync(fd);
  t.teardown(() => void child.kill('SIGKILL'));
  await new Promise((resolve) => child.once('spawn', resolve));
  const holders = await findDeviceHolders(device);
  t.same(holders, [{ pid: child.pid, command: 'sleep 30' }]);
  t.same(await findDeviceHolders(path.join(dir, 'nobody-has-this')), []);
});

t.test('openPortDevice opens read-write and non-blocking', async (t) => {
  const dir = t.testdir({ device: 'abc' });
  const fd = await openPortDevice(path.join(dir, 'device'));
  t.teardown(() => fs.closeSync(fd));
  t.equal(fs.readFileSync(fd, 'utf8'), 'abc');
});

t.test('openPortDevice says what to do when the device is missing', async (t) => {
  const dir = t.testdir({});
  await t.rejects(openPortDevice(path.join(dir, 'vport9p9'), { description: 'port x' }), {
    name: 'DeviceOpenError',
    code: 'ENOENT',
    message: /^Cannot open port x \(.*vport9p9\): ENOENT.*To fix: check the path given to `--character-device`/,
  });
  await t.rejects(openPortDevice('/dev/null', { openTimeoutMs: 1.5 }), {
    name: 'ConfigError',
    message: 'Expected the `openTimeoutMs` option to be a non-negative integer, got `1.5`.',
  });
});

t.test('openPortDevice retries EBUSY, then names the holder', async (t) => {
  const dir = t.testdir({ device: '' });
  const device = path.join(dir, 'device');
  let busyLeft = 2;
  let attempts = 0;
  const busyOpen = (file: string, flags: number, callback: (error: NodeJS.ErrnoException | null, fd?: number) => void): void => {
    attempts++;
    if (busyLeft-- > 0) {
      callback(Object.assign(new Error(`EBUSY: resource busy or locked, open '${file}'`), { code: 'EBUSY' }));
      return;
    }
    fs.open(file, flags, callback);
  };
  // An absolute URL: tap resolves a relative one against the source map's .ts file, not this .js file.
  const ports = await t.mockImport<typeof import('../../guest/virtio-ports.js')>(new URL('../../guest/virtio-ports.js', import.meta.url).href, {
    'node:fs': { ...fs, open: busyOpen },
  });

  const fd = await ports.openPortDevice(device, { openTimeoutMs: 5000 });
  fs.closeSync(fd);
  t.equal(attempts, 3, 'succeeded on the third attempt');

  const holderFd = fs.openSync(device, 'r');
  const child = spawn('sleep', ['30'], { stdio: ['ignore', 'ignore', 'ignore', holderFd] });
  fs.closeSync(holderFd);
  t.teardown(() => void child.kill('SIGKILL'));
  await new Promise((resolve) => child.once('spawn', resolve));
  busyLeft = Infinity;
  attempts = 0;
  const started = Date.now();
  const error = await ports.openPortDevice(device, { openTimeoutMs: 300, description: 'negotiator-host-to-guest.0' }).catch((caught: unknown) => caught);
  t.ok(Date.now() - started >= 290, 'kept trying for openTimeoutMs');
  t.ok(attempts > 2, `retried (${attempts} attempts)`);
  t.match(error, {
    name: 'DeviceOpenError',
    code: 'EBUSY',
    holders: [{ pid: child.pid, command: 'sleep 30' }],
    message:
      `Cannot open negotiator-host-to-guest.0 (${device}): another process holds it open (pid ${child.pid}: sleep 30), ` +
      'and a virtio-serial port takes only one opener. Stop that process (another negotiator-guest, or an agent given ' +
      'the wrong port?) and start again. Gave up after 300 ms (`openTimeoutMs`).',
  });
});
