// Binary frames: the bytes of a bulk notification (execute.output, execute.input, stream.input, stream.output) raw after a
// short header, instead of base64 inside a JSON line. Sent only to a peer whose hello offers the
// `frames` capability (docs/protocol.md, "Frames"). Control messages stay JSON lines.
//
// Layout (big-endian), at a line start:
//   0  u8   0xF8 magic: never the first byte of an NDJSON line (not valid anywhere in UTF-8, and not
//           QEMU's 0xFF resync byte), so the reader can tell a frame from a line by one byte
//   1  u8   type, 0x01 = data
//   2  u8   stream: 0 none, 1 stdout, 2 stderr
//   3  u8   M: method length, 1..64 (ASCII `A-Za-z0-9._-`)
//   4  u8   I: id length, 1..130 (the id as JSON: an integer or a string)
//   5  u32  N: payload length, 0..FRAME_MAX_PAYLOAD
//   9  M bytes method, I bytes id, N bytes payload, then 0x0A (checks the length: a frame whose byte
//      after the payload is not a newline is dropped and the reader resyncs at the next newline).
//
// Hazard: a reader in the middle of a frame's payload cannot see that the peer died and a new agent
// started on the same channel; it would read the new agent's hello as payload. Hence every agent opens
// a session with FRAME_SYNC_BYTES newlines (more than any frame's remainder): a half frame is completed
// by newlines and dropped or delivered to the session that the hello after it ends.
import { isRequestId, type OutputStream, type RequestId } from './protocol.js';

export const FRAME_MAGIC = 0xf8;
export const FRAME_TYPE_DATA = 0x01;
export const FRAME_HEADER_BYTES = 9;
/** Largest payload of one frame; senders split larger data, readers refuse longer frames. */
export const FRAME_MAX_PAYLOAD = 64 * 1024;
const MAX_METHOD = 64;
const MAX_ID = 130;
/** Newlines that open a session: they finish any frame an earlier agent left half written. */
export const FRAME_SYNC_BYTES = FRAME_HEADER_BYTES + MAX_METHOD + MAX_ID + FRAME_MAX_PAYLOAD + 1;

const STREAMS: ReadonlyArray<OutputStream | undefined> = [undefined, 'stdout', 'stderr'];
const METHOD_PATTERN = /^[A-Za-z0-9._-]{1,64}$/;

/** One frame's header, as read. */
export interface FrameHeader {
  method: string;
  id: RequestId;
  stream?: OutputStream;
  payloadBytes: number;
  /** Header bytes including method and id. */
  headerBytes: number;
}

// One frame (header, payload, newline) in one buffer; `data` must be at most FRAME_MAX_PAYLOAD bytes.
export function encodeFrame(method: string, id: RequestId, stream: OutputStream | undefined, data: Buffer): Buffer {
  const header = encodeFrameHeader(method, id, stream, data.length);
  return Buffer.concat([header, data, FRAME_END], header.length + data.length + 1);
}

/** The byte that ends every frame, after its payload. */
export const FRAME_END: Buffer = Buffer.from([0x0a]);

// A frame's header (fixed part, method, id) for a payload of `payloadBytes`: the writer sends it, the
// payload itself (not copied) and FRAME_END together, in one gathered write.
export function encodeFrameHeader(method: string, id: RequestId, stream: OutputStream | undefined, payloadBytes: number): Buffer {
  const idText = JSON.stringify(id);
  const methodBytes = Buffer.byteLength(method, 'latin1');
  const idBytes = Buffer.byteLength(idText, 'utf8');
  if (!METHOD_PATTERN.test(method) || idBytes > MAX_ID || payloadBytes > FRAME_MAX_PAYLOAD) {
    throw new RangeError(`cannot frame \`${method}\` for id ${idText} with ${payloadBytes} bytes: method, id or payload out of bounds`);
  }
  const header = Buffer.allocUnsafe(FRAME_HEADER_BYTES + methodBytes + idBytes);
  header[0] = FRAME_MAGIC;
  header[1] = FRAME_TYPE_DATA;
  header[2] = stream === 'stdout' ? 1 : stream === 'stderr' ? 2 : 0;
  header[3] = methodBytes;
  header[4] = idBytes;
  header.writeUInt32BE(payloadBytes, 5);
  header.write(method, FRAME_HEADER_BYTES, 'latin1');
  header.write(idText, FRAME_HEADER_BYTES + methodBytes, 'utf8');
  return header;
}

/** Bytes needed to read the whole header once its fixed part is known; a reason string when it is bad. */
export function frameHeaderLength(fixed: Buffer): number | string {
  if (fixed[0] !== FRAME_MAGIC) return 'not a frame';
  if (fixed[1] !== FRAME_TYPE_DATA) return `unknown frame type ${fixed[1]}`;
  if (fixed[2]! >= STREAMS.length) return `unknown stream code ${fixed[2]}`;
  if (fixed[3]! < 1 || fixed[3]! > MAX_METHOD) return `method length ${fixed[3]} out of 1..${MAX_METHOD}`;
  if (fixed[4]! < 1 || fixed[4]! > MAX_ID) return `id length ${fixed[4]} out of 1..${MAX_ID}`;
  const payload = fixed.readUInt32BE(5);
  if (payload > FRAME_MAX_PAYLOAD) return `payload length ${payload} over the ${FRAME_MAX_PAYLOAD}-byte limit`;
  return FRAME_HEADER_BYTES + fixed[3]! + fixed[4]!;
}

// Read a whole header (fixed part, method, id); a reason string when it is malformed.
export function decodeFrameHeader(header: Buffer): FrameHeader | string {
  const length = frameHeaderLength(header);
  if (typeof length === 'string') return length;
  const method = header.toString('latin1', FRAME_HEADER_BYTES, FRAME_HEADER_BYTES + header[3]!);
  if (!METHOD_PATTERN.test(method)) return `malformed method name ${JSON.stringify(method)}`;
  const idText = header.toString('utf8', FRAME_HEADER_BYTES + header[3]!, length);
  let id: unknown;
  try {
    id = /^(0|[1-9][0-9]{0,14})$/.test(idText) ? Number(idText) : idText.startsWith('"') ? JSON.parse(idText) : undefined;
  } catch {
    id = undefined;
  }
  if (!isRequestId(id)) return `malformed id ${JSON.stringify(idText.slice(0, 40))}`;
  const stream = STREAMS[header[2]!];
  return { method, id, ...(stream ? { stream } : {}), payloadBytes: header.readUInt32BE(5), headerBytes: length };
}
