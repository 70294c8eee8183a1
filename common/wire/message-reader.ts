// The receiving half of a peer (vscode-jsonrpc's "reader"): bytes from the channel become lines
// (line-reader.ts), lines become typed JSON-RPC messages. Bulk lines in our senders' exact shape skip
// JSON.parse (bulk-line.ts). Whatever is not a message is described in words for the peer to log or
// answer; the reader itself never throws out of `push` because of what the other side sent.
import { parseBulkLine } from './bulk-line.js';
import { errorMessage, truncateForLog } from './errors.js';
import { LineReader, type LineProblem } from './line-reader.js';
import { isRecord, isRequestId, type RequestId } from './protocol.js';

/** One message as the peer dispatches it. `id` of a request is unchecked (the peer answers a bad one). */
export type IncomingMessage =
  | { kind: 'request'; id: unknown; method: string; params: unknown }
  | { kind: 'notification'; method: string; params: unknown }
  | { kind: 'response'; id: unknown; message: Record<string, unknown> };

export interface MessageReaderOptions {
  maxLineBytes: number;
  onMessage(message: IncomingMessage): void;
  /** A line that is not a JSON-RPC 2.0 message; `requestId` is set when it still names a request to answer. */
  onInvalid(what: string, requestId?: RequestId): void;
  /** A line that could not even be read (too long, not UTF-8, cut off at the end). */
  onLineProblem(what: string, preview: string): void;
}

export class MessageReader {
  readonly #lines: LineReader;
  readonly #options: MessageReaderOptions;

  constructor(options: MessageReaderOptions) {
    this.#options = options;
    this.#lines = new LineReader({
      maxLineBytes: options.maxLineBytes,
      onLine: (line) => this.#onLine(line),
      onProblem: (problem) => options.onLineProblem(this.#describe(problem), problem.preview),
    });
  }

  push(chunk: Buffer): void {
    this.#lines.push(chunk);
  }

  /** The channel ended: report a half line left in the buffer. */
  end(): void {
    this.#lines.end();
  }

  #describe(problem: LineProblem): string {
    if (problem.kind === 'too-long') {
      return `a line of ${problem.bytes} bytes, over the ${this.#options.maxLineBytes}-byte limit (\`maxLineBytes\`), was skipped`;
    }
    if (problem.kind === 'invalid-utf8') return `a line of ${problem.bytes} bytes that is not valid UTF-8 was skipped`;
    return `the channel ended in the middle of a line (${problem.bytes} bytes), which was dropped`;
  }

  #onLine(line: string): void {
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
    if (!isRecord(message) || message.jsonrpc !== '2.0') {
      const id = isRecord(message) && isRequestId(message.id) && typeof message.method === 'string' ? message.id : undefined;
      this.#options.onInvalid(`not a JSON-RPC 2.0 message: ${truncateForLog(line, 80)}`, id);
      return;
    }
    if (typeof message.method === 'string') {
      if ('id' in message) this.#options.onMessage({ kind: 'request', id: message.id, method: message.method, params: message.params });
      else this.#options.onMessage({ kind: 'notification', method: message.method, params: message.params });
    } else if ('id' in message && ('result' in message || 'error' in message)) {
      this.#options.onMessage({ kind: 'response', id: message.id, message });
    } else {
      this.#options.onInvalid(`message is neither a request, a notification nor a response: ${truncateForLog(line, 80)}`);
    }
  }
}
