// A VM scenario file that cannot run (here: ../shared/vm is not beside the checkout) must fail under CI and
// skip elsewhere: a skipped scenario in CI would pass a run that tested nothing (issue 11, defect 8). Each
// compiled *.vm.test.js runs from a copy of dist/ with no ../shared beside it.
import { execFile } from 'node:child_process';
import { cpSync, readdirSync, symlinkSync } from 'node:fs';
import path from 'node:path';
import t from 'tap';
import { REPO } from '../helpers/vm.js';

const vmTests = readdirSync(path.join(REPO, 'dist', 'test'), { recursive: true, encoding: 'utf8' })
  .filter((file) => /\.(vm|libvirt)\.test\.js$/.test(file))
  .sort();

t.test('there are VM scenario files to check', async (t) => {
  t.ok(vmTests.includes(path.join('guest', 'port-channel.vm.test.js')), vmTests.join(', '));
});

const copy = path.join(t.testdir({ repo: {} }), 'repo');
cpSync(path.join(REPO, 'dist'), path.join(copy, 'dist'), { recursive: true });
symlinkSync(path.join(REPO, 'node_modules'), path.join(copy, 'node_modules'));

// Each file once under CI=true and once without CI, all at once (each run mostly waits for tap to load).
const run = (file: string, ci: 'true' | undefined): Promise<{ status: number | null; output: string }> => {
  const env: NodeJS.ProcessEnv = { ...process.env, CI: ci };
  if (ci === undefined) delete env.CI;
  for (const name of Object.keys(env)) if (name.startsWith('TAP')) delete env[name];
  return new Promise((resolve) => {
    execFile(process.execPath, [path.join(copy, 'dist', 'test', file)], { env, timeout: 120_000 }, (error, stdout, stderr) =>
      resolve({ status: error ? (typeof error.code === 'number' ? error.code : -1) : 0, output: `${stdout}${stderr}` }),
    );
  });
};
const runs = vmTests.map((file) => ({ file, inCi: run(file, 'true'), outside: run(file, undefined) }));

for (const { file, inCi, outside } of runs) {
  t.test(`${file}: fails under CI=true when it cannot run, is skipped elsewhere`, async (t) => {
    const ci = await inCi;
    t.not(ci.status, 0, 'under CI: a non-zero exit');
    t.match(ci.output, /must run in CI but cannot: .*(is missing|needs root)/);
    const elsewhere = await outside;
    t.equal(elsewhere.status, 0, `without CI: exit 0\n${elsewhere.output}`);
    t.match(elsewhere.output, /skip/i);
  });
}
