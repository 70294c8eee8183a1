// `npm run demo` as a newcomer runs it (the built demo, a real process): every step works, the output
// says what happened, and nothing is left behind, also after Ctrl-C or a failing step.
import t from 'tap';
import { execa } from 'execa';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { runDemo } from '../../examples/demo/run-demo.js';
import { DIST, waitForOutput, startCli } from '../helpers/spawn-cli.js';

const DEMO = path.join(DIST, 'examples', 'demo', 'demo.js');

// The temp directory the demo announced.
function demoDirectoryOf(output: string): string {
  const match = /^Everything lives in DEMO=(\S+) /m.exec(output);
  if (!match) throw new Error(`the demo did not say where it works:\n${output}`);
  return match[1]!;
}

// Processes whose command line mentions `text` (the daemons are started with paths in the demo directory).
function processesMentioning(text: string): string[] {
  const found: string[] = [];
  for (const pid of readdirSync('/proc').filter((name) => /^\d+$/.test(name))) {
    try {
      const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ');
      if (cmdline.includes(text)) found.push(`${pid}: ${cmdline}`);
    } catch {
      // Gone meanwhile.
    }
  }
  return found;
}

t.test('the demo runs list and execute both ways, explains each step, and cleans up', async (t) => {
  // Through env(1), which drops NODE_OPTIONS: tap's process tracker adds itself to NODE_OPTIONS and to the
  // environment of every process spawned below it, the commands' included, which would hide whether the
  // daemons really give commands a clean environment.
  const result = await execa('env', ['-u', 'NODE_OPTIONS', process.execPath, DEMO], { reject: false, timeout: 90_000, stdin: 'ignore' });
  const output = String(result.stdout);
  if (result.exitCode !== 0) t.comment(`${output}\nstderr: ${result.stderr}`);
  t.equal(result.exitCode, 0, 'exit status 0');
  t.match(output, /^\$ negotiator-host --daemon --no-libvirt --guest demo-vm=\$DEMO\/vm --control-socket \$DEMO\/host\.sock --commands-dir \S+examples\/commands\/host$/m);
  t.match(output, /^\[1\/9\] the host lists its guests$/m);
  t.match(output, /^\$ negotiator-host --control-socket \$DEMO\/host\.sock --list-guests\n {2}\| NAME .*\n {2}\| demo-vm +negotiator /m);
  t.match(output, /^\$ negotiator-host --control-socket \$DEMO\/host\.sock --execute kernel demo-vm$/m);
  t.match(output, /^ {2}\| NEGOTIATOR_PEER_SIDE=host$/m, 'the guest command saw the host as its caller');
  t.match(output, /^\$ negotiator-host --control-socket \$DEMO\/host\.sock --execute 'cat \/etc\/shadow' demo-vm\n.*command `cat` not found.*\n {2}exit status 127$/m);
  t.match(output, /^\$ negotiator-guest --control-socket \$DEMO\/guest\.sock --execute 'reboot-notify kernel update'$/m);
  t.match(output, /^ {2}\| host \S+ acknowledges: guest demo-vm may reboot; logged to /m);
  t.match(output, /^ {2}host daemon log: guest demo-vm ran `reboot-notify` \(2 args\): exit 0 in \d+ ms$/m);
  t.match(output, /^ {2}\| NEGOTIATOR_GUEST=demo-vm$/m, 'the host command learned which guest called');
  t.equal(output.match(/^ {2}=> /gm)?.length, 10, 'one explanation for the start and for each of the 9 steps');
  t.match(output, /^All 9 steps worked\./m);
  const dir = demoDirectoryOf(output);
  t.notOk(existsSync(dir), 'the temp directory is removed');
  t.same(processesMentioning(dir), [], 'both daemons are gone');
});

t.test('Ctrl-C (SIGINT) stops the demo with 130, the daemons with it, and removes the temp directory', async (t) => {
  const demo = startCli(DEMO, []);
  await waitForOutput(demo, /^\[2\/9\]/m, 60_000);
  demo.kill('SIGINT');
  const result = await demo;
  const output = String(result.all);
  if (result.exitCode !== 130) t.comment(output);
  t.equal(result.exitCode, 130, 'exit status 130, as after Ctrl-C');
  t.match(output, /^SIGINT: stopping the demo and cleaning up\.\.\.$/m);
  t.match(output, /^Cleaned up: both daemons stopped, \$DEMO removed\.$/m);
  const dir = demoDirectoryOf(output);
  t.notOk(existsSync(dir), 'the temp directory is removed');
  t.same(processesMentioning(dir), [], 'both daemons are gone');
});

t.test('a step that does not do what it should fails the demo (exit 1) with the daemon logs, and still cleans up', async (t) => {
  let output = '';
  const status = await runDemo({
    write: (text) => void (output += text),
    steps: (guest) => [
      { side: 'host', title: 'expects the wrong exit status', args: ['--execute', 'kernel', guest], exitCode: 3, expect: [], explain: 'never shown' },
      { side: 'host', title: 'never run', args: ['--list-guests'], expect: [], explain: 'never shown' },
    ],
  });
  t.equal(status, 1);
  t.match(output, /^FAILED: expected exit status 3, got 0$/m);
  t.match(output, /^--- host daemon log \(last lines\) ---$/m);
  t.notMatch(output, /never/);
  t.match(output, /^Cleaned up: both daemons stopped, \$DEMO removed\.$/m);
  const dir = demoDirectoryOf(output);
  t.notOk(existsSync(dir));
  t.same(processesMentioning(dir), []);
});

t.test('when its reader goes away (npm run demo | head) the demo still stops the daemons and cleans up', async (t) => {
  const demo = execa(process.execPath, [DEMO], { reject: false, stdin: 'ignore', stdout: 'pipe', stderr: 'pipe', buffer: false, env: { NODE_OPTIONS: '' } });
  let seen = '';
  const dir = await new Promise<string>((resolve) => {
    demo.stdout.on('data', (chunk: Buffer) => {
      seen += chunk.toString();
      const match = /^Everything lives in DEMO=(\S+) /m.exec(seen);
      if (match) {
        demo.stdout.destroy();
        resolve(match[1]!);
      }
    });
  });
  const result = await demo;
  t.equal(result.exitCode, 141, 'as a process ended by SIGPIPE');
  t.notOk(existsSync(dir), 'the temp directory is removed');
  t.same(processesMentioning(dir), [], 'both daemons are gone');
});
