// What receiving one bulk line costs, step by step: an `execute.output` line carrying 256 KiB (the
// largest chunk, MAX_CHUNK_BYTES) as the serving side writes it. Each step is timed alone, 400 times after
// a warm-up; the figures feed the streaming section of docs/benchmarks.md.
// Usage: node dist/bench/line-costs.js
import { isAscii } from 'node:buffer';
import { MAX_CHUNK_BYTES } from '../common/wire/protocol.js';
import { formatTable } from './report.js';

const RUNS = 400;
const data = Buffer.alloc(MAX_CHUNK_BYTES, 7).toString('base64');
const text = `{"jsonrpc":"2.0","method":"execute.output","params":{"id":17,"stream":"stdout","data":"${data}"}}`;
const line = Buffer.from(text);
const payloadStart = text.indexOf('"data":"') + 8;
const decoder = new TextDecoder('utf-8', { fatal: true });

const steps: Array<[string, () => unknown]> = [
  ['JSON.parse of the line', () => JSON.parse(text)],
  ['TextDecoder (fatal) of the line', () => decoder.decode(line)],
  ['toString latin1 of the line', () => line.toString('latin1')],
  ['buffer.isAscii of the line', () => isAscii(line)],
  ['indexOf of " and \\ in the payload', () => text.indexOf('"', payloadStart) + text.indexOf('\\', payloadStart)],
  ['base64 decode of a flat string', () => Buffer.from(data, 'base64')],
  ['base64 decode of a substring of the line', () => Buffer.from(text.slice(payloadStart, -3), 'base64')],
];

const rows = steps.map(([name, step]) => {
  for (let i = 0; i < 20; i++) step();
  const start = performance.now();
  for (let i = 0; i < RUNS; i++) step();
  const us = ((performance.now() - start) / RUNS) * 1000;
  return [name, us.toFixed(0), (line.length / us / 1000).toFixed(2)];
});
process.stdout.write(`one execute.output line of ${line.length} bytes (${MAX_CHUNK_BYTES} bytes of output), node ${process.version}\n\n`);
process.stdout.write(`${formatTable(['step', 'us per line', 'GB/s of line'], rows)}\n`);
