// `negotiator-host doctor [GUEST]`: the Debugging section of Negotiator's README as checks. Each check is
// one line `ok|warn|FAIL  <what>  <fix>`; the exit code is 1 when any check FAILs. Per guest, the checks
// go from the definition to the agent and stop where a later one could only repeat the earlier failure.
// Without a host daemon the agent is asked directly; with one, only through it (QEMU serves one client per
// socket: a second connection would wait unanswered behind the daemon's). This file finds the guests and
// runs the checks (doctor-checks.ts) over them; the CLI's entry is runDoctor.
import { mapConcurrently } from '../common/base/concurrency.js';
import { formatCliError, type CliIo } from '../common/cli/actions.js';
import { printChecks, type DoctorCheck } from '../common/cli/doctor-report.js';
import { errorMessage } from '../common/wire/errors.js';
import { checkGuest, checkHostDaemon, checkLibvirt, type GuestTarget, type HostDoctorOptions } from './doctor-checks.js';
import { guestOfDomain, parseDomainXml } from './domain-xml.js';
import { staticGuestOf, type StaticGuestSpec } from './guest-specs.js';
import { VIRSH_FAILURES, VirshError } from './virsh.js';

export { CHECK_STATUSES, exitCodeOfChecks, formatChecks, type CheckStatus, type DoctorCheck } from '../common/cli/doctor-report.js';
export type { DoctorFs, HostDoctorOptions } from './doctor-checks.js';

/** Guests checked at once (each may wait for an agent's answer). */
const GUEST_CONCURRENCY = 8;

// Run every check; resolves with them in print order (host first, then each guest by name).
export async function diagnoseHost(options: HostDoctorOptions): Promise<DoctorCheck[]> {
  const checks: DoctorCheck[] = [];
  const libvirtUsable = options.virsh ? await checkLibvirt(options, checks) : false;
  const daemon = await checkHostDaemon(options, checks);
  try {
    const targets = await findTargets(options, libvirtUsable, checks);
    const perGuest = await mapConcurrently(targets, GUEST_CONCURRENCY, (target) => checkGuest(target, options, daemon));
    checks.push(...perGuest.flat());
  } finally {
    await daemon?.peer.close();
  }
  return checks;
}

// The guests to check: the one named, or every --guest and running domain, by name.
async function findTargets(options: HostDoctorOptions, libvirtUsable: boolean, checks: DoctorCheck[]): Promise<GuestTarget[]> {
  const staticTarget = (spec: StaticGuestSpec): GuestTarget => ({ name: spec.name, source: 'static', endpoints: staticGuestOf(spec).channels });
  const libvirtTarget = async (name: string): Promise<GuestTarget> => {
    const domain = parseDomainXml(await options.virsh!.dumpXml(name));
    return { name: domain.name, source: 'libvirt', domain, endpoints: guestOfDomain(domain).guest.channels };
  };
  const { guestName } = options;
  if (guestName !== undefined) {
    const spec = options.staticGuests.find((candidate) => candidate.name === guestName);
    if (spec) return [staticTarget(spec)];
    if (!libvirtUsable) {
      checks.push({ id: 'guest', status: 'fail', guest: guestName, what: `no guest ${guestName}: it is not a --guest and libvirt cannot be asked`, fix: 'fix libvirt (above), or give the guest\'s sockets with --guest NAME=DIR' });
      return [];
    }
    try {
      return [await libvirtTarget(guestName)];
    } catch (error) {
      if (!(error instanceof VirshError && error.kind === VIRSH_FAILURES.noDomain)) {
        checks.push({ id: 'guest', status: 'fail', guest: guestName, what: `cannot read the domain: ${errorMessage(error)}`, fix: 'fix libvirt, then run doctor again' });
        return [];
      }
      const known = await listKnownDomains(options);
      checks.push({ id: 'guest', status: 'fail', guest: guestName, what: `libvirt has no domain ${guestName}`, fix: known ? `the domains it knows: ${known.join(', ') || '(none)'}` : 'list them with virsh list --all' });
      return [];
    }
  }
  const targets = options.staticGuests.map(staticTarget);
  if (libvirtUsable) {
    try {
      for (const running of await options.virsh!.listDomains()) {
        try {
          targets.push(await libvirtTarget(running.name));
        } catch (error) {
          // It stopped between the list and the dump: nothing to check.
          if (!(error instanceof VirshError && error.kind === VIRSH_FAILURES.noDomain)) throw error;
        }
      }
    } catch (error) {
      checks.push({ id: 'guest', status: 'fail', what: `cannot read the running guests: ${errorMessage(error)}`, fix: 'fix libvirt, then run doctor again' });
    }
  }
  if (targets.length === 0) {
    checks.push({ id: 'guest', status: 'warn', what: 'no running guests to check', fix: 'start one, or name a defined one: negotiator-host doctor GUEST' });
  }
  return targets.sort((a, b) => a.name.localeCompare(b.name));
}

// Every domain's name (the running ones when the definitions cannot be listed); undefined when libvirt fails.
async function listKnownDomains(options: HostDoctorOptions): Promise<string[] | undefined> {
  try {
    if (options.definitions) return await options.definitions.listAllDomains();
    return (await options.virsh!.listDomains()).map((domain) => domain.name);
  } catch {
    return undefined;
  }
}

// ---- output ----------------------------------------------------------------------------------------

/** `negotiator-host doctor` as the CLI parsed it. */
export interface HostDoctorCliOptions extends Omit<HostDoctorOptions, 'virsh' | 'definitions'> {
  libvirt: boolean;
  libvirtUri: string;
  json: boolean;
}

// Run `negotiator-host doctor`; resolves with the exit code (0: nothing FAILed, 1: something did).
export async function runDoctor(options: HostDoctorCliOptions, io: CliIo, program = 'negotiator-host'): Promise<number> {
  try {
    const { createVirsh } = await import('./virsh.js');
    const { createDomainDefinitions } = await import('./setup-domain.js');
    const checks = await diagnoseHost({
      ...options,
      virsh: options.libvirt ? createVirsh({ uri: options.libvirtUri }) : undefined,
      definitions: options.libvirt ? createDomainDefinitions({ uri: options.libvirtUri }) : undefined,
    });
    return printChecks(checks, options.json, io);
  } catch (error) {
    io.stderr.write(formatCliError(program, error));
    return 1;
  }
}
