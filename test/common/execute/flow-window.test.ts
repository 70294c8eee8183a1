// Flow windows and the batched acknowledgements of their receiving side: few acknowledgements, and a
// sender never left waiting for one that is not coming, whatever the window and the sender's piece size.
import t from 'tap';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { AckBatch, FlowWindow, ackThreshold } from '../../../common/execute/flow-window.js';
import { MAX_CHUNK_BYTES } from '../../../common/wire/protocol.js';

const WINDOWS = [1024, 64 * 1024, MAX_CHUNK_BYTES, 300 * 1024, 1024 * 1024, 2 * 1024 * 1024, 4 * 1024 * 1024];
// Sender piece sizes, used in turn: one size, or small and largest pieces mixed (socket reads vary).
const PIECES = [[1000], [4096], [64 * 1024], [MAX_CHUNK_BYTES], [1000, MAX_CHUNK_BYTES], [1000, 64 * 1024]];

t.test('ackThreshold: a quarter of the window, at most the window less one chunk, at least 1', async (t) => {
  t.equal(ackThreshold(2 * 1024 * 1024), 512 * 1024);
  t.equal(ackThreshold(4 * 1024 * 1024), 1024 * 1024);
  t.equal(ackThreshold(300 * 1024), 300 * 1024 - MAX_CHUNK_BYTES);
  t.equal(ackThreshold(MAX_CHUNK_BYTES), 1);
  t.equal(ackThreshold(1024), 1);
});

// A sender sends `total` bytes in `pieces` (the sizes in turn) through a FlowWindow; the receiver consumes
// each at once and acknowledges through an AckBatch. Resolves with the acknowledgements sent, or 'stalled'.
async function transfer(window: number, pieces: number[], total: number): Promise<number | 'stalled'> {
  const sender = new FlowWindow(window);
  let acks = 0;
  const receiver = new AckBatch(window, (bytes) => {
    acks++;
    if (!sender.ack(bytes)) throw new Error(`acknowledged ${bytes}, more than in flight`);
  });
  for (let sent = 0, turn = 0; sent < total; turn++) {
    const piece = pieces[turn % pieces.length]!;
    sent += piece;
    const reserved = sender.reserve(piece);
    const outcome = await Promise.race([reserved, nextTurn().then(() => 'stalled' as const)]);
    if (outcome === 'stalled') return 'stalled';
    receiver.add(piece);
  }
  return acks;
}

t.test('AckBatch: no stall and few acknowledgements for every window and piece size', async (t) => {
  for (const window of WINDOWS) {
    for (const pieces of PIECES) {
      const piece = Math.max(...pieces);
      const total = Math.max(3 * window, 16 * piece);
      const acks = await transfer(window, pieces, total);
      if (acks === 'stalled') {
        t.fail(`window ${window}, pieces of ${pieces.join(' and ')}: the sender waits for an acknowledgement that never comes`);
        continue;
      }
      const bound = Math.ceil(total / ackThreshold(window)) + 1;
      if (acks > bound) t.fail(`window ${window}, pieces of ${pieces.join(' and ')}: ${acks} acknowledgements, over ${bound}`);
    }
  }
  t.equal(await transfer(2 * 1024 * 1024, [64 * 1024], 64 * 1024 * 1024), 128, '64 MiB through a 2 MiB window: one acknowledgement per 512 KiB, not one per 64 KiB chunk');
});

t.test('FlowWindow.maxPiece: one chunk, never more than the window', async (t) => {
  t.equal(new FlowWindow(4 * 1024 * 1024).maxPiece, MAX_CHUNK_BYTES);
  t.equal(new FlowWindow(64 * 1024).maxPiece, 64 * 1024, 'a piece larger than the window would be refused by the receiver');
});

t.test('AckBatch: flush sends what is pending, and nothing when nothing is', async (t) => {
  const sent: number[] = [];
  const batch = new AckBatch(4 * 1024 * 1024, (bytes) => sent.push(bytes));
  batch.add(100);
  batch.add(200);
  t.equal(batch.pending, 300);
  t.same(sent, [], 'below the threshold: held');
  batch.flush();
  batch.flush();
  t.same(sent, [300]);
  batch.add(ackThreshold(4 * 1024 * 1024));
  t.same(sent, [300, 1024 * 1024], 'at the threshold: sent at once');
});
