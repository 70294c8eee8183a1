// The transport seam: the RPC peer speaks to a ByteChannel and never to a socket, a device or a stream
// directly. Adapters: common/wire/stream-channel.ts (any node Duplex: UNIX socket, TCP, in-memory pair),
// guest/port-channel.ts (a virtio-serial or serial device held open for the daemon's life).

/**
 * A bidirectional byte stream.
 *
 * Lifecycle: listeners are attached once, before data flows (the adapter buffers nothing for late
 * listeners). `onClose` fires at most once, after which `write` rejects. `close()` is idempotent.
 */
/** Bulk gathered into one write when the channel does not say (a virtio port write is costly, and slow). */
export const DEFAULT_WRITE_BATCH_BYTES = 64 * 1024;

export interface ByteChannel {
  /** Human-readable name for logs and errors (a socket path, a device). */
  readonly description: string;
  /** Each chunk is the listener's to keep (an adapter never reuses its memory for a later read). */
  onData(listener: (chunk: Buffer) => void): void;
  /** The channel is gone for good (error: why, when it failed rather than ended). */
  onClose(listener: (error?: Error) => void): void;
  /**
   * Optional: the far end went away and came back on the same channel (a virtio-serial port whose host
   * reconnected). Bytes before and after belong to different sessions; the peer re-handshakes.
   */
  onReset?(listener: () => void): void;
  /**
   * Optional: the far end went away (a virtio-serial port whose host closed its side); bytes written now
   * reach nobody. `onReset` follows when it is back. The peer stops being ready until then.
   */
  onAbsent?(listener: () => void): void;
  /**
   * Queue bytes for sending, in call order. Resolves when the bytes are handed to the OS or the channel
   * can take more without growing its buffer (backpressure); rejects when the channel failed.
   */
  write(chunk: Buffer): Promise<void>;
  /**
   * Optional: `write` of several buffers as one (a gathered write: no copy into one buffer, one system
   * call). The buffers must not change until it settles. Without it the writer concatenates them.
   */
  writev?(chunks: readonly Buffer[]): Promise<void>;
  /**
   * Optional: how many bytes of bulk the writer gathers into one write (default DEFAULT_WRITE_BATCH_BYTES).
   * A control line written meanwhile waits behind at most one such write, so a slow channel keeps it small.
   */
  readonly writeBatchBytes?: number;
  /** Bytes accepted by `write` and not yet handed to the OS. */
  readonly pendingWriteBytes: number;
  /** Stop / restart delivering data (used when the peer does not read our replies). */
  pause(): void;
  resume(): void;
  close(): Promise<void>;
}
