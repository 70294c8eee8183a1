// Presentation of benchmark results: aligned text tables, target verdicts, the machine description.
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

/** A target: a measured ratio against the bound it must meet. */
export interface TargetVerdict {
  name: string;
  /** What was measured, in words with the figures. */
  measured: string;
  target: string;
  met: boolean;
}

export interface MachineDescription {
  nproc: number;
  cpuModel: string;
  node: string;
  kernel: string;
  /** 1-minute load average when the run started and ended (other processes share this machine). */
  loadavgStart: number;
  loadavgEnd?: number;
  date: string;
}

// Describe the machine now; `loadavgEnd` is filled in by the caller at the end of the run.
export function describeMachine(): MachineDescription {
  return {
    nproc: os.availableParallelism(),
    cpuModel: os.cpus()[0]?.model ?? 'unknown',
    node: process.version,
    kernel: `${os.type()} ${os.release()}`,
    loadavgStart: round2(os.loadavg()[0] ?? 0),
    date: new Date().toISOString(),
  };
}

// Round to two decimals (load averages).
export function round2(value: number): number {
  return Math.round(value * 100) / 100;
}

// Render rows under headers; columns after the first are right-aligned (they hold figures).
export function formatTable(headers: readonly string[], rows: ReadonlyArray<readonly string[]>): string {
  const widths = headers.map((header, column) => Math.max(header.length, ...rows.map((row) => (row[column] ?? '').length)));
  const line = (cells: readonly string[]): string =>
    cells.map((cell, column) => (column === 0 ? cell.padEnd(widths[column]!) : cell.padStart(widths[column]!))).join('  ').trimEnd();
  return [line(headers), widths.map((width) => '-'.repeat(width)).join('  '), ...rows.map(line)].join('\n');
}

// Render verdicts as a table with a met / MISSED column.
export function formatVerdicts(verdicts: readonly TargetVerdict[]): string {
  return formatTable(
    ['target', 'required', 'measured', 'verdict'],
    verdicts.map((v) => [v.name, v.target, v.measured, v.met ? 'met' : 'MISSED']),
  );
}

// Format a number with a fixed count of decimals (figures in tables).
export function fixed(value: number, digits = 1): string {
  return Number.isFinite(value) ? value.toFixed(digits) : 'n/a';
}

// Write `data` as pretty JSON, creating the directory.
export function writeJson(file: string, data: unknown): void {
  mkdirSync(path.dirname(file), { recursive: true });
  writeFileSync(file, JSON.stringify(data, null, 2) + '\n');
}

/** Write a benchmark's results file and say where, with the load at the end. */
export function writeResults(file: string, loadavgEnd: number, data: unknown): void {
  writeJson(file, data);
  console.log(`1-min load at the end: ${loadavgEnd}; results written to ${path.relative(process.cwd(), file)}`);
}

/** Run a benchmark program: exit with the code `main` resolves to; on a failure print it, run `cleanup`, exit 1. */
export function runBenchmark(main: (argv: string[]) => Promise<number>, cleanup?: () => Promise<unknown>): void {
  main(process.argv).then(
    (code) => process.exit(code),
    async (error: unknown) => {
      console.error(`benchmark failed: ${error instanceof Error ? error.stack : String(error)}`);
      await cleanup?.();
      process.exit(1);
    },
  );
}
