// The findings of `negotiator-host doctor` and `negotiator-guest doctor`, and how they are printed.
import type { CliIo } from './actions.js';

export const CHECK_STATUSES = { ok: 'ok', warn: 'warn', fail: 'fail' } as const;
export type CheckStatus = (typeof CHECK_STATUSES)[keyof typeof CHECK_STATUSES];

/** One finding: what was checked and found, and for warn/fail what to do. */
export interface DoctorCheck {
  /** Stable name of the check (`virsh`, `channels`, `ports`, `agent`, ...). */
  id: string;
  status: CheckStatus;
  /** On the host, the guest the check is about. */
  guest?: string;
  what: string;
  fix?: string;
}

const LABELS: Record<CheckStatus, string> = { ok: 'ok', warn: 'warn', fail: 'FAIL' };

// One line per check: `ok|warn|FAIL  <what>  <fix>`, a guest's name leading its checks.
export function formatChecks(checks: readonly DoctorCheck[]): string {
  return checks.map((check) => `${LABELS[check.status].padEnd(4)}  ${check.guest ? `${check.guest}: ` : ''}${check.what}${check.fix ? `  ${check.fix}` : ''}\n`).join('');
}

// 0 when nothing failed, 1 otherwise.
export function exitCodeOfChecks(checks: readonly DoctorCheck[]): number {
  return checks.some((check) => check.status === 'fail') ? 1 : 0;
}

// Print the checks (lines or JSON) and return the exit code.
export function printChecks(checks: readonly DoctorCheck[], json: boolean, io: CliIo): number {
  const code = exitCodeOfChecks(checks);
  io.stdout.write(json ? `${JSON.stringify({ ok: code === 0, checks })}\n` : formatChecks(checks));
  return code;
}
