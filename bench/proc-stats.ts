// Figures about other processes read from /proc (Linux): CPU time, resident memory, wake-ups, and the
// load average that goes beside every figure on a shared machine.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import os from 'node:os';
import { round2 } from './report.js';

let ticksPerSecond: number | undefined;

// Clock ticks per second of /proc/PID/stat's times (USER_HZ; 100 on Linux, asked once).
function clockTicks(): number {
  if (ticksPerSecond === undefined) {
    try {
      ticksPerSecond = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    } catch {
      ticksPerSecond = 100;
    }
  }
  return ticksPerSecond;
}

// Fields of /proc/PID/stat after the command name (which may hold spaces): index 0 is field 3 (state).
function statFields(pid: number | 'self'): string[] {
  const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return text.slice(text.lastIndexOf(')') + 2).split(' ');
}

// CPU time (user + system) `pid` has used so far, ms (10 ms resolution).
export function readProcessCpuMs(pid: number): number {
  const fields = statFields(pid);
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / clockTicks();
}

// CPU time (user + system) of this process's children that have exited and been reaped, ms: each spawned
// run's own CPU, read as the difference around it (the kernel sums it exactly; 10 ms resolution per read).
export function readReapedChildrenCpuMs(): number {
  const fields = statFields('self');
  return ((Number(fields[13]) + Number(fields[14])) * 1000) / clockTicks();
}

export interface ProcessMemory {
  /** VmRSS, MiB. */
  rssMiB: number;
  /** VmHWM (peak resident set), MiB. */
  peakMiB: number;
}

function statusField(text: string, name: string): number {
  const match = new RegExp(`^${name}:\\s+(\\d+)`, 'm').exec(text);
  if (!match) throw new Error(`no ${name} in /proc/PID/status`);
  return Number(match[1]);
}

// Resident and peak resident memory of `pid`.
export function readProcessMemory(pid: number): ProcessMemory {
  const text = readFileSync(`/proc/${pid}/status`, 'utf8');
  return { rssMiB: round2(statusField(text, 'VmRSS') / 1024), peakMiB: round2(statusField(text, 'VmHWM') / 1024) };
}

// Context switches of `pid` so far (voluntary ones are its wake-ups from sleep).
export function readContextSwitches(pid: number): { voluntary: number; involuntary: number } {
  const text = readFileSync(`/proc/${pid}/status`, 'utf8');
  return { voluntary: statusField(text, 'voluntary_ctxt_switches'), involuntary: statusField(text, 'nonvoluntary_ctxt_switches') };
}

// The 1-minute load average now (on this 2-CPU machine, other engineers' runs included).
export function loadavg1(): number {
  return round2(os.loadavg()[0] ?? 0);
}

/** Load averages sampled during a measurement: say them beside its figure. */
export class LoadSampler {
  readonly #samples: number[] = [];

  sample(): void {
    this.#samples.push(loadavg1());
  }

  // `min..max` of the samples (one value when they agree), or the current load when none were taken.
  describe(): string {
    if (this.#samples.length === 0) return String(loadavg1());
    const low = Math.min(...this.#samples);
    const high = Math.max(...this.#samples);
    return low === high ? String(low) : `${low}..${high}`;
  }
}
