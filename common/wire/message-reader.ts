// The receiving half of a peer (vscode-jsonrpc's "reader"): bytes from the channel become lines
// (line-reader.ts) or, once negotiated, binary frames (frame-codec.ts); both become typed JSON-RPC
// messages. Bulk lines in our senders' exact shape skip JSON.parse (bulk-line.ts). Whatever is not a
// message is described in words for the peer to log or answer; the reader itself never throws out of
// `push` because of what the other side sent.
import { BULK_METHODS, parseBulkLine } from './bulk-line.js';
import { errorMessage, truncateForLog } from './errors.js';
import { MAX_JSON_DEPTH, exceedsDepth } from './json-limits.js';
import { FRAME_HEADER_BYTES, FRAME_MAGIC, decodeFrameHeader, frameHeaderLength, type FrameHeader } from './frame-codec.js';
import { LineReader, type LineProblem } from './line-reader.js';
import { isRecord, isRequestId, type RequestId } from './protocol.js';

/** One message as the peer dispatches it. `id` of a request is unchecked (the peer answers a bad one). */
export type IncomingMessage =
  | { kind: 'request'; id: unknown; method: string; params: unknown; session: unknown }
  | { kind: 'notification'; method: string; params: unknown }
  | { kind: 'response'; id: unknown; message: Record<string, unknown> };

export interface MessageReaderOptions {
  maxLineBytes: number;
  onMessage(message: IncomingMessage): void;
  /** A line that is not a JSON-RPC 2.0 message; `requestId` is set when it still names a request to answer. */
  onInvalid(what: string, requestId?: RequestId): void;
  /** A response whose body we refuse (nested too deep): the request it names must still settle, with `error`. */
  onRefusedResponse(id: RequestId, error: string): void;
  /** Handling one line threw (a bug of ours): reported, and the next line is read all the same. */
  onInternalError(error: unknown): void;
  /** A line or frame that could not even be read (too long, not UTF-8, cut off, a bad frame header). */
  onLineProblem(what: string, preview: string): void;
}

const NEWLINE = 0x0a;
const NEWLINE_BLOCK = Buffer.alloc(1024, NEWLINE);
const MAX_FRAME_HEADER = FRAME_HEADER_BYTES + 64 + 130;

/** A frame being read: its header so far, then its payload (undefined while discarding it). */
interface FrameState {
  header: Buffer;
  headerHave: number;
  headerNeed: number;
  decoded?: FrameHeader;
  payload?: Buffer;
  payloadHave: number;
  /** Why the payload is read and dropped (a method we do not take); undefined: deliver it. */
  dropReason?: string;
}

export class MessageReader {
  readonly #lines: LineReader;
  readonly #options: MessageReaderOptions;
  #frames = false;
  #atLineStart = true;
  #frame: FrameState | undefined;
  /** Bytes dropped while resyncing to the next newline after a bad frame; -1 when not resyncing. */
  #skipped = -1;
  #skipReason = '';
  #skipPreview = '';

  constructor(options: MessageReaderOptions) {
    this.#options = options;
    this.#lines = new LineReader({
      maxLineBytes: options.maxLineBytes,
      onLine: (line) => this.#onLine(line),
      onProblem: (problem) => options.onLineProblem(this.#describe(problem), problem.preview),
    });
  }

  /**
   * Accept frames from now on (the handshake found the capability on both sides), or no longer (a new
   * session starts: until its hello, a frame start is a malformed line like any other).
   */
  setFrames(enabled: boolean): void {
    this.#frames = enabled;
    if (!enabled && this.#frame) {
      this.#frame = undefined;
      this.#startSkipping('a frame was cut short by a new session', 0);
    }
  }

  push(chunk: Buffer): void {
    let at = 0;
    const length = chunk.length;
    while (at < length) {
      if (this.#skipped >= 0) {
        at = this.#skipToNewline(chunk, at);
      } else if (this.#frame) {
        at = this.#feedFrame(chunk, at);
      } else {
        if (this.#atLineStart) {
          // Runs of blank lines (a session opens with FRAME_SYNC_BYTES of them) cost one loop, not a line
          // each; whole blocks of them are compared natively (a CLI meets them before its code is optimised).
          while (length - at >= NEWLINE_BLOCK.length && chunk.compare(NEWLINE_BLOCK, 0, NEWLINE_BLOCK.length, at, at + NEWLINE_BLOCK.length) === 0) at += NEWLINE_BLOCK.length;
          while (at < length && chunk[at] === NEWLINE) at++;
          if (at === length) return;
          if (this.#frames && chunk[at] === FRAME_MAGIC) {
            this.#frame = { header: Buffer.allocUnsafe(MAX_FRAME_HEADER), headerHave: 0, headerNeed: FRAME_HEADER_BYTES, payloadHave: 0 };
            continue;
          }
        }
        // One line at a time: a line may switch frames on (the hello answer) for the bytes after it.
        const end = chunk.indexOf(NEWLINE, at);
        if (end === -1) {
          this.#lines.push(chunk.subarray(at));
          this.#atLineStart = false;
          return;
        }
        this.#lines.push(chunk.subarray(at, end + 1));
        this.#atLineStart = true;
        at = end + 1;
      }
    }
  }

  /** The channel ended: report a half line or frame left in the buffer. */
  end(): void {
    if (this.#frame) {
      const have = this.#frame.headerHave + this.#frame.payloadHave;
      this.#frame = undefined;
      this.#options.onLineProblem(`the channel ended in the middle of a frame (${have} bytes), which was dropped`, '');
    }
    if (this.#skipped >= 0) this.#reportSkipped();
    this.#lines.end();
  }

  // ---- frames ----------------------------------------------------------------------------------

  #feedFrame(chunk: Buffer, at: number): number {
    const frame = this.#frame!;
    if (!frame.decoded) {
      const take = Math.min(frame.headerNeed - frame.headerHave, chunk.length - at);
      chunk.copy(frame.header, frame.headerHave, at, at + take);
      frame.headerHave += take;
      at += take;
      if (frame.headerHave < frame.headerNeed) return at;
      if (frame.headerNeed === FRAME_HEADER_BYTES) {
        const need = frameHeaderLength(frame.header);
        if (typeof need === 'string') return this.#badHeader(frame, need), at;
        frame.headerNeed = need;
        return at;
      }
      const decoded = decodeFrameHeader(frame.header.subarray(0, frame.headerHave));
      if (typeof decoded === 'string') return this.#badHeader(frame, decoded), at;
      frame.decoded = decoded;
      if (!BULK_METHODS.has(decoded.method)) frame.dropReason = `a frame of unknown method \`${decoded.method}\` (${decoded.payloadBytes} bytes) was skipped`;
      // A copy, not a view of the chunk even when it lies wholly inside: a payload queued for a reader that
      // does not read would keep the whole chunk alive (a port delivers up to 256 KiB at once), while the
      // memory budget counts the payload's bytes.
      else frame.payload = Buffer.allocUnsafe(decoded.payloadBytes);
    }
    const decoded = frame.decoded;
    if (frame.payloadHave < decoded.payloadBytes) {
      const take = Math.min(decoded.payloadBytes - frame.payloadHave, chunk.length - at);
      if (frame.payload) chunk.copy(frame.payload, frame.payloadHave, at, at + take);
      frame.payloadHave += take;
      at += take;
    }
    if (frame.payloadHave < decoded.payloadBytes || at === chunk.length) return at;
    this.#frame = undefined;
    if (chunk[at] !== NEWLINE) {
      this.#startSkipping(`a frame of \`${decoded.method}\` (${decoded.payloadBytes} bytes) not followed by a newline (a wrong length?) was dropped`, decoded.headerBytes + decoded.payloadBytes);
      return at;
    }
    this.#atLineStart = true;
    if (frame.dropReason) this.#options.onInvalid(frame.dropReason);
    else this.#options.onMessage({ kind: 'notification', method: decoded.method, params: { id: decoded.id, ...(decoded.stream ? { stream: decoded.stream } : {}), data: frame.payload! } });
    return at + 1;
  }

  // A header that is not one: drop its first byte and read what followed it again (it may hold the
  // newline that starts the next good line), skipping to that newline.
  #badHeader(frame: FrameState, reason: string): void {
    this.#frame = undefined;
    const replay = Buffer.from(frame.header.subarray(1, frame.headerHave));
    this.#startSkipping(`a malformed frame header (${reason}) was skipped`, 1, previewHex(frame.header.subarray(0, frame.headerHave)));
    this.push(replay);
  }

  #startSkipping(reason: string, bytes: number, preview = ''): void {
    this.#skipped = bytes;
    this.#skipReason = reason;
    this.#skipPreview = preview;
    this.#atLineStart = false;
  }

  #skipToNewline(chunk: Buffer, at: number): number {
    const end = chunk.indexOf(NEWLINE, at);
    if (end === -1) {
      this.#skipped += chunk.length - at;
      return chunk.length;
    }
    this.#skipped += end - at;
    this.#reportSkipped();
    this.#atLineStart = true;
    return end + 1;
  }

  #reportSkipped(): void {
    const what = `${this.#skipReason}; ${this.#skipped} byte(s) skipped up to the next newline`;
    this.#skipped = -1;
    this.#options.onLineProblem(what, this.#skipPreview);
  }

  #describe(problem: LineProblem): string {
    if (problem.kind === 'too-long') {
      return `a line of ${problem.bytes} bytes, over the ${this.#options.maxLineBytes}-byte limit (\`maxLineBytes\`), was skipped`;
    }
    if (problem.kind === 'invalid-utf8') return `a line of ${problem.bytes} bytes that is not valid UTF-8 was skipped`;
    return `the channel ended in the middle of a line (${problem.bytes} bytes), which was dropped`;
  }

  // One line's failure, whatever it is, must never cost the lines after it in the same read.
  #onLine(line: string): void {
    try {
      this.#handleLine(line);
    } catch (error) {
      this.#options.onInternalError(error);
    }
  }

  #handleLine(line: string): void {
    const bulk = parseBulkLine(line);
    if (bulk) {
      this.#options.onMessage({ kind: 'notification', method: bulk.method, params: bulk.params });
      return;
    }
    let message: unknown;
    try {
      message = JSON.parse(line);
    } catch (error) {
      this.#options.onInvalid(`malformed JSON (${errorMessage(error)}): ${truncateForLog(line, 80)}`);
      return;
    }
    if (exceedsDepth(message)) return this.#refuseDeep(message, line);
    if (!isRecord(message) || message.jsonrpc !== '2.0') {
      const id = isRecord(message) && isRequestId(message.id) && typeof message.method === 'string' ? message.id : undefined;
      this.#options.onInvalid(`not a JSON-RPC 2.0 message: ${truncateForLog(line, 80)}`, id);
      return;
    }
    if (typeof message.method === 'string') {
      if ('id' in message) this.#options.onMessage({ kind: 'request', id: message.id, method: message.method, params: message.params, session: message.session });
      else this.#options.onMessage({ kind: 'notification', method: message.method, params: message.params });
    } else if ('id' in message && ('result' in message || 'error' in message)) {
      this.#options.onMessage({ kind: 'response', id: message.id, message });
    } else {
      this.#options.onInvalid(`message is neither a request, a notification nor a response: ${truncateForLog(line, 80)}`);
    }
  }

  // A message nested deeper than we handle: answer or settle what it names, read nothing else of it.
  #refuseDeep(message: unknown, line: string): void {
    const what = `a message nested deeper than ${MAX_JSON_DEPTH} levels`;
    const id = isRecord(message) && isRequestId(message.id) ? message.id : undefined;
    if (id !== undefined && isRecord(message) && typeof message.method !== 'string' && ('result' in message || 'error' in message)) {
      this.#options.onRefusedResponse(id, `the answer is ${what}, refused`);
    } else {
      this.#options.onInvalid(`${what}: ${truncateForLog(line, 80)}`, isRecord(message) && typeof message.method === 'string' ? id : undefined);
    }
  }
}

function previewHex(bytes: Buffer): string {
  return bytes.subarray(0, 24).toString('hex');
}
