// NDJSON framing on the receiving side: splits a byte stream into lines, bounded in memory.
// ndjson (split2) was measured unfit here (test/common/ndjson-limits.test.ts): it lets a line that arrives
// in one chunk exceed `maxLength`, and reports a bad line by erroring the stream, which unpipes the source.
import { isAscii } from 'node:buffer';

/** What went wrong with one line; the reader goes on with the next line. */
export interface LineProblem {
  kind: 'too-long' | 'invalid-utf8' | 'partial-at-end';
  /** Bytes of the offending line (for too-long: bytes skipped, including those past the limit). */
  bytes: number;
  /** The first bytes of the line, decoded leniently, for a log line. */
  preview: string;
}

export interface LineReaderOptions {
  /** Longest line accepted, in bytes, without its newline. */
  maxLineBytes: number;
  onLine: (line: string) => void;
  onProblem: (problem: LineProblem) => void;
}

const NEWLINE = 0x0a;
const PREVIEW_BYTES = 80;

/**
 * Feed chunks with `push`; complete lines come out through `onLine` in order. Blank lines are skipped
 * (a connection starts with a bare newline to end an earlier client's half line). Memory held is at most
 * `maxLineBytes` plus one chunk.
 */
export class LineReader {
  readonly #options: LineReaderOptions;
  readonly #decoder = new TextDecoder('utf-8', { fatal: true });
  #parts: Buffer[] = [];
  #partBytes = 0;
  /** Bytes skipped so far of a line that is over the limit; -1 when not skipping. */
  #skipped = -1;
  #skippedPreview = '';

  constructor(options: LineReaderOptions) {
    if (!Number.isSafeInteger(options.maxLineBytes) || options.maxLineBytes < 64) {
      throw new RangeError(`Expected \`maxLineBytes\` to be an integer >= 64, got \`${options.maxLineBytes}\``);
    }
    this.#options = options;
  }

  push(chunk: Buffer): void {
    let start = 0;
    while (start < chunk.length) {
      const end = chunk.indexOf(NEWLINE, start);
      if (end === -1) {
        this.#keep(chunk.subarray(start));
        return;
      }
      this.#keep(chunk.subarray(start, end));
      this.#finishLine();
      start = end + 1;
    }
  }

  /** The stream ended: a partial line left over is reported, not parsed. */
  end(): void {
    if (this.#skipped >= 0) {
      this.#finishLine();
      return;
    }
    if (this.#partBytes > 0) {
      const line = Buffer.concat(this.#parts, this.#partBytes);
      this.#reset();
      if (line.toString('latin1').trim() !== '') {
        this.#options.onProblem({ kind: 'partial-at-end', bytes: line.length, preview: previewOf(line) });
      }
    }
  }

  #keep(bytes: Buffer): void {
    if (bytes.length === 0) return;
    if (this.#skipped >= 0) {
      this.#skipped += bytes.length;
      return;
    }
    if (this.#partBytes + bytes.length > this.#options.maxLineBytes) {
      // Over the limit: drop what we hold and count the rest of the line without storing it.
      const held = this.#partBytes > 0 ? Buffer.concat([...this.#parts, bytes.subarray(0, PREVIEW_BYTES)]) : bytes;
      this.#skippedPreview = previewOf(held);
      this.#skipped = this.#partBytes + bytes.length;
      this.#parts = [];
      this.#partBytes = 0;
      return;
    }
    // Copy: a part of a line held from a large chunk would keep all of that chunk's memory.
    this.#parts.push(Buffer.from(bytes));
    this.#partBytes += bytes.length;
  }

  #finishLine(): void {
    if (this.#skipped >= 0) {
      const problem: LineProblem = { kind: 'too-long', bytes: this.#skipped, preview: this.#skippedPreview };
      this.#reset();
      this.#options.onProblem(problem);
      return;
    }
    if (this.#partBytes === 0) return;
    const line = this.#parts.length === 1 ? this.#parts[0]! : Buffer.concat(this.#parts, this.#partBytes);
    this.#reset();
    let text: string;
    try {
      // ASCII (every line our senders write) needs no UTF-8 validation: latin1 is a straight copy.
      text = isAscii(line) ? line.toString('latin1') : this.#decoder.decode(line);
    } catch {
      this.#options.onProblem({ kind: 'invalid-utf8', bytes: line.length, preview: previewOf(line) });
      return;
    }
    if (text.endsWith('\r')) text = text.slice(0, -1);
    if (text.trim() === '') return;
    this.#options.onLine(text);
  }

  #reset(): void {
    this.#parts = [];
    this.#partBytes = 0;
    this.#skipped = -1;
    this.#skippedPreview = '';
  }
}

function previewOf(bytes: Buffer): string {
  return JSON.stringify(bytes.subarray(0, PREVIEW_BYTES).toString('utf8').replace(/\uFFFD/g, '?'));
}
