// In-memory ByteChannel pair for unit tests: what one end writes arrives at the other, in order and
// asynchronously (as on a socket). `inject` plays raw bytes into an end as if its peer had sent them.
import type { ByteChannel } from '../../common/wire/byte-channel.js';
import { ChannelClosedError } from '../../common/wire/errors.js';

export interface MemoryChannel extends ByteChannel {
  /** Everything written to this end, in order. */
  readonly written: Buffer[];
  inject(bytes: Buffer | string): void;
  /** Simulate the far end going away and coming back (virtio-serial host reconnect). */
  triggerReset(): void;
  /** Simulate the far end going away (a virtio-serial host that closed its side). */
  triggerAbsent(): void;
}

export function createMemoryChannelPair(): [MemoryChannel, MemoryChannel] {
  const ends: MemoryChannel[] = [];
  const state = { closed: false };
  const make = (name: string, otherIndex: number): MemoryChannel => {
    const dataListeners: Array<(chunk: Buffer) => void> = [];
    const closeListeners: Array<(error?: Error) => void> = [];
    const resetListeners: Array<() => void> = [];
    const absentListeners: Array<() => void> = [];
    let paused = false;
    const queued: Buffer[] = [];
    const deliver = (chunk: Buffer): void => {
      if (paused) {
        queued.push(chunk);
        return;
      }
      for (const listener of dataListeners) listener(chunk);
    };
    const channel: MemoryChannel & { deliverLater(chunk: Buffer): void; fireClose(): void } = {
      description: name,
      written: [],
      onData: (listener) => void dataListeners.push(listener),
      onClose: (listener) => void closeListeners.push(listener),
      onReset: (listener) => void resetListeners.push(listener),
      onAbsent: (listener) => void absentListeners.push(listener),
      write(chunk) {
        if (state.closed) return Promise.reject(new ChannelClosedError(`${name} closed`));
        const copy = Buffer.from(chunk);
        channel.written.push(copy);
        (ends[otherIndex] as unknown as { deliverLater(chunk: Buffer): void }).deliverLater(copy);
        return Promise.resolve();
      },
      pendingWriteBytes: 0,
      pause: () => void (paused = true),
      resume() {
        paused = false;
        for (const chunk of queued.splice(0)) deliver(chunk);
      },
      close() {
        if (!state.closed) {
          state.closed = true;
          setImmediate(() => {
            for (const end of ends) (end as unknown as { fireClose(): void }).fireClose();
          });
        }
        return Promise.resolve();
      },
      inject: (bytes) => channel.deliverLater(Buffer.from(bytes)),
      triggerReset: () => resetListeners.forEach((listener) => listener()),
      triggerAbsent: () => absentListeners.forEach((listener) => listener()),
      deliverLater: (chunk) => void setImmediate(() => deliver(chunk)),
      fireClose: () => closeListeners.forEach((listener) => listener()),
    };
    return channel;
  };
  ends.push(make('memory-a', 1), make('memory-b', 0));
  return [ends[0]!, ends[1]!];
}
