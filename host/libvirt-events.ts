// What libvirt's domain events (`virsh event --loop --all`, parsed by virsh.ts) say about the guest
// agent's sessions: a `reboot` event means the guest was reset (by `virsh reset`, `virsh reboot` or the
// guest itself), so what its agent had in flight is gone at once; `agent-lifecycle` is the QEMU guest
// agent's channel (not ours), reported for `--events` only. libvirt gives no event for the state of other
// channels: theirs (`state='connected|disconnected'` in the domain XML) is read when a domain is inspected.
import type { DomainEvent } from './virsh.js';

/** A libvirt event that matters to a guest's sessions or to `--events`. */
export interface LibvirtGuestSignal {
  guest: string;
  /** `reset`: the sessions are over. `paused`/`resumed`: the agent cannot answer meanwhile. `qemu-ga`: informational. */
  kind: 'reset' | 'paused' | 'resumed' | 'qemu-ga';
  detail: string;
}

// Interpret one event; undefined for those that say nothing about the agent (start and stop are discovery's).
export function interpretLibvirtEvent(event: DomainEvent): LibvirtGuestSignal | undefined {
  const guest = event.domain;
  if (event.event === 'reboot') return { guest, kind: 'reset', detail: 'libvirt reported a reboot (reset) of the domain' };
  if (event.lifecycle === 'suspended') return { guest, kind: 'paused', detail: `libvirt: the domain was suspended (${event.detail || 'paused'})` };
  if (event.lifecycle === 'resumed') return { guest, kind: 'resumed', detail: `libvirt: the domain was resumed (${event.detail || 'unpaused'})` };
  if (event.event === 'agent-lifecycle') return { guest, kind: 'qemu-ga', detail: `QEMU guest agent channel: ${event.detail}` };
  return undefined;
}
