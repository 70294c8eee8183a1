// The textual forms of services and forwards: what is accepted, and errors that name the fix.
import t from 'tap';
import { formatAddress, parseForwardSpec, parseServiceFile, parseServiceOption } from '../../../common/streams/address.js';

t.test('--service NAME=ADDRESS [guests=...]', async (t) => {
  t.same(parseServiceOption('ssh=tcp:127.0.0.1:22'), { name: 'ssh', address: { kind: 'tcp', host: '127.0.0.1', port: 22 } });
  t.same(parseServiceOption('web=tcp:[::1]:8080 guests=vm1,vm2'), { name: 'web', address: { kind: 'tcp', host: '::1', port: 8080 }, guests: ['vm1', 'vm2'] });
  t.same(parseServiceOption('app=unix:/run/app.sock'), { name: 'app', address: { kind: 'unix', path: '/run/app.sock' } });
  t.throws(() => parseServiceOption('ssh'), /expected NAME=ADDRESS \(e\.g\. ssh=tcp:127\.0\.0\.1:22\)/);
  t.throws(() => parseServiceOption('../x=tcp:1.2.3.4:5'), /Invalid service name .*may not contain `\/` or `\.\.`/);
  t.throws(() => parseServiceOption('ssh=tcp:host:99999'), /expected a port number 1-65535, got `99999`/);
  t.throws(() => parseServiceOption('ssh=http://x'), /expected tcp:HOST:PORT or unix:PATH/);
  t.throws(() => parseServiceOption('ssh=unix:relative.sock'), /expected unix:\/absolute\/path/);
  t.throws(() => parseServiceOption('ssh=tcp:h:22 users=root'), /unknown option `users=root` .*only guests=NAME,NAME/);
  t.equal(formatAddress(parseServiceOption('web=tcp:[::1]:80').address), 'tcp:[::1]:80');
});

t.test('drop-in files: the first line that is not blank or a comment', async (t) => {
  t.same(parseServiceFile('db', '# the database\n\n  unix:/run/db.sock guests=vm3\n', '/etc/negotiator/services/db'), { name: 'db', address: { kind: 'unix', path: '/run/db.sock' }, guests: ['vm3'] });
  t.throws(() => parseServiceFile('db', '# nothing\n', '/etc/negotiator/services/db'), /\/etc\/negotiator\/services\/db: empty; write one line like tcp:127\.0\.0\.1:22/);
});

t.test('--forward specs', async (t) => {
  t.match(parseForwardSpec('2222:ssh', false), { listen: { kind: 'tcp', host: '127.0.0.1', port: 2222 }, service: 'ssh' });
  t.match(parseForwardSpec('0.0.0.0:8080:web', false), { listen: { kind: 'tcp', host: '0.0.0.0', port: 8080 }, service: 'web' });
  t.match(parseForwardSpec('[::1]:0:web', false), { listen: { kind: 'tcp', host: '::1', port: 0 }, service: 'web' });
  t.match(parseForwardSpec('unix:/run/a:b.sock:web', false), { listen: { kind: 'unix', path: '/run/a:b.sock' }, service: 'web' });
  t.match(parseForwardSpec('2222:ssh@vm1', true), { listen: { port: 2222 }, service: 'ssh', guest: 'vm1' });
  t.throws(() => parseForwardSpec('2222:ssh', true), /a daemon's forward names its guest: \[BIND:\]PORT:SERVICE@GUEST/);
  t.throws(() => parseForwardSpec('ssh', false), /expected \[BIND:\]PORT:SERVICE or unix:PATH:SERVICE/);
  t.throws(() => parseForwardSpec('host:2222:ssh:extra', false), /Invalid service name|expected HOST:PORT/);
});
