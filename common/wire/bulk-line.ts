// The fast path for the lines that carry a command's bytes (`execute.output`, `execute.input`): one
// JSON-RPC notification a line like any other, but up to ~350 KB each, and parsing them was the largest
// cost of the receiving side (JSON.parse of each line; docs/benchmarks.md, "A fast path for bulk lines", has the figures).
//
// For a line in exactly the shape our senders write,
//   {"jsonrpc":"2.0","method":"execute.output","params":{"id":7,"stream":"stdout","data":"<base64>"}}
//   {"jsonrpc":"2.0","method":"execute.input","params":{"id":7,"data":"<base64>"}}
// the payload is decoded straight from the line, and the params come out with `data` already a Buffer.
// The result is exact: a payload that is not canonical base64 (an escape, a quote, a control character,
// misplaced padding: anything the decoder would skip) decodes short of its length and the line goes
// to JSON.parse instead, as does any other shape (string ids, spaces, other field orders). So a line
// taken here is valid JSON whose params JSON.parse and a base64 decode would have given the same.
import { METHODS, type OutputStream, type RequestId } from './protocol.js';

/** Methods whose params may arrive with `data` as a Buffer (decoded here) instead of a base64 string. */
export const BULK_METHODS: ReadonlySet<string> = new Set([METHODS.executeOutput, METHODS.executeInput]);

const PREFIX = '{"jsonrpc":"2.0","method":"';
const PARAMS_ID = '","params":{"id":';
const STREAM = ',"stream":"';
const DATA = ',"data":"';
const END = '"}}';
// Below this a line is cheap to JSON.parse anyway.
const MIN_LENGTH = 1024;

export interface BulkNotification {
  method: string;
  params: { id: number; stream?: 'stdout' | 'stderr'; data: Buffer };
}

/** The notification in `line`, when it has the exact shape above; undefined: parse it as JSON. */
export function parseBulkLine(line: string): BulkNotification | undefined {
  if (line.length < MIN_LENGTH || !line.startsWith(PREFIX) || !line.endsWith(END)) return undefined;
  const methodEnd = line.indexOf('"', PREFIX.length);
  const method = line.slice(PREFIX.length, methodEnd);
  if (!BULK_METHODS.has(method) || !line.startsWith(PARAMS_ID, methodEnd)) return undefined;
  // The id: a JSON integer (no sign, no leading zero) within the safe range.
  let at = methodEnd + PARAMS_ID.length;
  const idStart = at;
  while (at < line.length && at - idStart <= 15 && line.charCodeAt(at) >= 0x30 && line.charCodeAt(at) <= 0x39) at++;
  const idText = line.slice(idStart, at);
  if (idText === '' || idText.length > 15 || (idText.length > 1 && idText.startsWith('0'))) return undefined;
  let stream: 'stdout' | 'stderr' | undefined;
  if (line.startsWith(STREAM, at)) {
    at += STREAM.length;
    if (line.startsWith('stdout"', at)) stream = 'stdout';
    else if (line.startsWith('stderr"', at)) stream = 'stderr';
    else return undefined;
    at += 7;
  }
  if (!line.startsWith(DATA, at)) return undefined;
  const payload = line.slice(at + DATA.length, line.length - END.length);
  if (payload.length % 4 !== 0) return undefined;
  const padding = payload.endsWith('==') ? 2 : payload.endsWith('=') ? 1 : 0;
  const data = Buffer.from(payload, 'base64');
  if (data.length !== (payload.length / 4) * 3 - padding) return undefined;
  return { method, params: { id: Number(idText), ...(stream ? { stream } : {}), data } };
}

/** The bytes of a bulk notification's params: decoded by the fast path, or base64 from JSON. */
export function bulkDataOf(params: Record<string, unknown>): Buffer | undefined {
  if (Buffer.isBuffer(params.data)) return params.data;
  return typeof params.data === 'string' ? Buffer.from(params.data, 'base64') : undefined;
}

/**
 * A bulk notification line (with its newline) built straight into one buffer: base64 needs no JSON
 * escaping, so this is byte for byte what JSON.stringify would write, without scanning and re-encoding
 * ~350 KB per chunk; and it is the shape `parseBulkLine` takes on the other side.
 */
export function encodeBulkLine(method: string, id: RequestId, stream: OutputStream | undefined, data: Buffer): Buffer {
  const head = `${PREFIX}${method}${PARAMS_ID}${JSON.stringify(id)}${stream ? `${STREAM}${stream}"` : ''}${DATA}`;
  const headBytes = Buffer.byteLength(head);
  const dataBytes = 4 * Math.ceil(data.length / 3);
  const line = Buffer.allocUnsafe(headBytes + dataBytes + END.length + 1);
  line.write(head, 0, 'utf8');
  line.write(data.toString('base64'), headBytes, 'latin1');
  line.write(`${END}\n`, headBytes + dataBytes, 'latin1');
  return line;
}
