// The bulk-line fast path (common/wire/bulk-line.ts) must be exact: what it takes, JSON.parse plus a base64
// decode would have given the same; everything else goes to JSON.parse. And the lines our senders build
// are what JSON.stringify would write.
import t from 'tap';
import { randomBytes } from 'node:crypto';
import { encodeBulkLine, parseBulkLine } from '../../../common/wire/bulk-line.js';
import { executeRemote } from '../../../common/execute/client.js';
import { METHODS, type OutputStream } from '../../../common/wire/protocol.js';
import { createPeerPair } from '../../helpers/agents.js';

// What the general path makes of a line: JSON.parse, then the payload decoded.
function viaJson(line: string): { method: string; params: Record<string, unknown> } {
  const message = JSON.parse(line) as { method: string; params: Record<string, unknown> };
  return { method: message.method, params: { ...message.params, data: Buffer.from(message.params.data as string, 'base64') } };
}

function canonical(method: string, id: number, stream: OutputStream | undefined, data: Buffer): string {
  return JSON.stringify({ jsonrpc: '2.0', method, params: { id, ...(stream ? { stream } : {}), data: data.toString('base64') } });
}

t.test('our lines are JSON.stringify byte for byte, and the fast path reads them as JSON.parse does', async (t) => {
  const cases: Array<[string, OutputStream | undefined]> = [
    [METHODS.executeOutput, 'stdout'],
    [METHODS.executeOutput, 'stderr'],
    [METHODS.executeInput, undefined],
  ];
  for (const [method, stream] of cases) {
    for (const size of [800, 801, 802, 803, 4096, 65_536, 262_144]) {
      for (const id of [0, 7, 999_999_999_999_999]) {
        const data = randomBytes(size);
        const line = encodeBulkLine(method, id, stream, data);
        const text = canonical(method, id, stream, data);
        t.equal(line.toString('latin1'), `${text}\n`, `${method} ${stream ?? ''} ${size} bytes, id ${id}: as JSON.stringify`);
        const parsed = parseBulkLine(text);
        t.ok(parsed, 'taken by the fast path');
        t.same(parsed, viaJson(text));
        t.ok(parsed!.params.data.equals(data));
      }
    }
  }
});

t.test('any other shape goes to JSON.parse', async (t) => {
  const data = randomBytes(1500).toString('base64');
  const head = '{"jsonrpc":"2.0","method":"execute.output","params":';
  const refused: Record<string, string> = {
    'too short to be worth it': `${head}{"id":1,"stream":"stdout","data":"QUFB"}}`,
    'a space after a colon': `${head}{"id": 1,"stream":"stdout","data":"${data}"}}`,
    'a string id': `${head}{"id":"1","stream":"stdout","data":"${data}"}}`,
    'a leading zero (invalid JSON)': `${head}{"id":01,"stream":"stdout","data":"${data}"}}`,
    'a negative id': `${head}{"id":-1,"stream":"stdout","data":"${data}"}}`,
    'an exponent': `${head}{"id":1e0,"stream":"stdout","data":"${data}"}}`,
    'a fraction': `${head}{"id":1.0,"stream":"stdout","data":"${data}"}}`,
    'an id past 15 digits': `${head}{"id":1234567890123456,"stream":"stdout","data":"${data}"}}`,
    'an unknown stream': `${head}{"id":1,"stream":"stdin","data":"${data}"}}`,
    'fields in another order': `${head}{"data":"${data}","id":1,"stream":"stdout"}}`,
    'an extra field': `${head}{"id":1,"stream":"stdout","data":"${data}","more":1}}`,
    'another method': `{"jsonrpc":"2.0","method":"execute.outputAck","params":{"id":1,"data":"${data}"}}`,
    'an escaped slash in the payload': `${head}{"id":1,"stream":"stdout","data":"${data.slice(0, -4)}\\/AAA"}}`,
    'a \\u escape in the payload': `${head}{"id":1,"stream":"stdout","data":"${data.slice(0, -6)}\\u0041AA"}}`,
    'a quote in the payload (invalid JSON)': `${head}{"id":1,"stream":"stdout","data":"${data.slice(0, -4)}A"AA"}}`,
    'a control character in the payload (invalid JSON)': `${head}{"id":1,"stream":"stdout","data":"${data.slice(0, -4)}A\tAA"}}`,
    'padding in the middle': `${head}{"id":1,"stream":"stdout","data":"QQ==${data}"}}`,
    'a length not a multiple of 4': `${head}{"id":1,"stream":"stdout","data":"${data}A"}}`,
    'trailing space': `${head}{"id":1,"stream":"stdout","data":"${data}"}} `,
  };
  for (const [what, line] of Object.entries(refused)) t.equal(parseBulkLine(line), undefined, what);
  // Valid JSON that the fast path takes must come out as JSON.parse has it: base64url letters decode alike.
  const urlSafe = `${head}{"id":1,"stream":"stdout","data":"${data.slice(0, -4)}-_-_"}}`;
  t.same(parseBulkLine(urlSafe), viaJson(urlSafe));
});

t.test('a bulk line the fast path refuses still reaches the caller through JSON.parse', async (t) => {
  const { host, guest, hostEnd } = createPeerPair();
  t.teardown(() => Promise.all([host.close(), guest.close()]));
  const payload = randomBytes(3000);
  guest.handle(METHODS.execute, async (_params, context) => {
    // Valid JSON, not in our senders' shape: spaces and an escaped slash.
    const b64 = payload.toString('base64').replaceAll('/', '\\/');
    hostEnd.inject(`{ "jsonrpc": "2.0", "method": "execute.output", "params": { "id": ${String(context.id)}, "stream": "stderr", "data": "${b64}" } }\n`);
    await new Promise((resolve) => setTimeout(resolve, 50));
    return { exitCode: 0, signal: null, timedOut: false, isCanceled: false, durationMs: 1, stdoutBytes: 0, stderrBytes: payload.length, outputTruncated: false };
  });
  host.start();
  guest.start();
  const err: Buffer[] = [];
  await executeRemote(host, { command: 'anything', stderr: (c) => void err.push(c) });
  t.ok(Buffer.concat(err).equals(payload));
});
