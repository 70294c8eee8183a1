// The quick benchmark set (`npm run bench`): the negotiator agent over one UNIX socket, each figure beside
// its bare baseline on the same socket in the same run, then qemu-ga beside it when installed.
// The server (agent and baselines) is a separate node process; this process is the client.
import os from 'node:os';
import { openAgentClient } from './agent-client.js';
import { openCpuProbe } from './baseline-client.js';
import { openQemuGa, type QgaContenders } from './qemu-ga.js';
import { describeMachine, fixed, formatTable, formatVerdicts, round2, runBenchmark, writeResults, type TargetVerdict } from './report.js';
import { parseRunOptions } from './run-options.js';
import { LATENCY_ROWS, STREAM_CONTENDERS, measureExecute, measurePing, measureStreams, type StreamContender, type StreamRow } from './scenarios.js';
import { startServerProcess } from './server-process.js';
import { medianOf, type LatencySummary } from './stats.js';
import { measurePingUnderLoad, type PingUnderLoad } from './ping-under-load.js';
import { judgeAgainstBaselines, judgeAgainstQemuGa, judgePingUnderLoad } from './targets.js';
import { createWorkspace } from './workspace.js';

function formatLatency(latency: Record<string, LatencySummary>, qga: QgaContenders | undefined): string {
  const echo = latency[LATENCY_ROWS.echo] ?? latency[LATENCY_ROWS.echoDuringExecute];
  return formatTable(
    ['round trip', 'median us', 'p99 us', 'vs echo median', 'CPU us/call', 'n'],
    Object.entries(latency).map(([name, s]) => [
      name === LATENCY_ROWS.qgaExec && qga ? `${name} (median ${medianOf(qga.polls)})` : name,
      fixed(s.medianUs),
      fixed(s.p99Us),
      echo && !name.startsWith(LATENCY_ROWS.echo) ? `${fixed(s.medianUs / echo.medianUs, 2)}x` : '',
      s.cpuUsPerCall === undefined ? '' : fixed(s.cpuUsPerCall),
      String(s.count),
    ]),
  );
}

function formatStreams(rows: readonly StreamRow[]): string {
  return formatTable(
    ['stdout', 'contender', 'MiB/s median', 'min..max', 'ms median', 'CPU ms/MiB', 'vs socket', 'reps'],
    rows.flatMap((row) =>
      (Object.keys(STREAM_CONTENDERS) as StreamContender[])
        .filter((name) => row.results[name])
        .map((name, index) => {
          const s = row.results[name]!;
          const socket = row.results.source;
          return [
            index === 0 ? `${row.mib} MiB` : '',
            STREAM_CONTENDERS[name],
            fixed(s.medianMiBps),
            `${fixed(s.minMiBps)}..${fixed(s.maxMiBps)}`,
            fixed(s.medianMs),
            fixed(s.cpuMsPerMiB, 2),
            socket ? `${fixed((s.medianMiBps / socket.medianMiBps) * 100)}%` : '',
            String(s.reps),
          ];
        }),
    ),
  );
}

function formatUnderLoad(result: PingUnderLoad): string {
  return formatTable(
    ['rpc ping, same connection', 'median us', 'p99 us', 'max us', 'n'],
    [
      ['idle', fixed(result.idle.medianUs), fixed(result.idle.p99Us), fixed(result.idle.maxUs), String(result.idle.count)],
      [`during ${result.transferMiB} MiB of stdout (${result.transferMs} ms)`, fixed(result.busy.medianUs), fixed(result.busy.p99Us), fixed(result.busy.maxUs), String(result.busy.count)],
    ],
  );
}

async function main(argv: string[]): Promise<number> {
  const options = parseRunOptions(argv);
  const machine = describeMachine();
  console.log(`negotiator benchmark: ${machine.nproc} CPUs (${machine.cpuModel}), node ${machine.node}, ${machine.kernel}, 1-min load ${machine.loadavgStart}`);
  console.log('client: this process; server (agent + bare baselines): a separate node process; one UNIX socket, one connection per contender');
  console.log(`bulk bytes: ${options.frames ? 'binary frames' : 'base64 JSON lines (--no-frames)'}\n`);
  const qga = options.qga && !options.rpcOnly ? await openQemuGa() : { skipped: options.rpcOnly ? '--rpc-only' : '--no-qga' };
  const qgaContenders = 'skipped' in qga ? undefined : qga;
  if ('skipped' in qga) console.log(`qemu-ga: skipped: ${qga.skipped}\n`);
  else console.log(`qemu-ga: ${qga.version}, its own process on its own UNIX socket, interleaved with the rest\n`);
  const workspace = createWorkspace();
  let latency: Record<string, LatencySummary> = {};
  let streams: StreamRow[] = [];
  let underLoad: PingUnderLoad | undefined;
  const serverRssMiB = { start: Number.NaN, end: Number.NaN };
  try {
    const server = await startServerProcess(workspace, options.serverNodeArgs, options.prespawn);
    const agent = await openAgentClient(workspace.socketPath, options.frames);
    const probe = await openCpuProbe(workspace.socketPath);
    try {
      serverRssMiB.start = await probe.readRssMiB();
      const context = { socketPath: workspace.socketPath, agent, options, qga: qgaContenders };
      if (options.only.has('ping')) latency = { ...latency, ...(await measurePing(context)) };
      if (options.only.has('execute')) latency = { ...latency, ...(await measureExecute(context)) };
      if (Object.keys(latency).length > 0) console.log(formatLatency(latency, qgaContenders) + '\n');
      if (options.only.has('stream')) {
        streams = await measureStreams(context);
        console.log(formatStreams(streams) + '\n');
      }
      if (options.only.has('ping-under-load')) {
        underLoad = await measurePingUnderLoad(agent, Math.max(...options.sizes), Math.min(options.pings, 2000));
        console.log(formatUnderLoad(underLoad) + '\n');
      }
      serverRssMiB.end = await probe.readRssMiB();
      console.log(`server RSS: ${serverRssMiB.start} MiB after the handshake, ${serverRssMiB.end} MiB at the end (fork cost grows with it)\n`);
    } finally {
      probe.close();
      agent.close();
      await server.stop();
    }
  } finally {
    await qgaContenders?.close();
    workspace.remove();
  }

  const verdicts: TargetVerdict[] = [...judgeAgainstBaselines(latency, streams), ...judgeAgainstQemuGa(latency, streams), ...judgePingUnderLoad(underLoad)];
  if (verdicts.length > 0) console.log(formatVerdicts(verdicts) + '\n');

  const loadavgEnd = round2(os.loadavg()[0] ?? 0);
  writeResults(options.json, loadavgEnd, {
    machine: { ...machine, loadavgEnd },
    setup: {
      transport: 'one listening UNIX socket; one connection per contender; server in a separate node process',
      pings: options.pings,
      execs: options.execs,
      sizesMiB: options.sizes,
      cpu: 'CPU ms/MiB: user+system of the client and server node processes (not of the spawned head)',
    },
    serverRssMiB,
    latency,
    streams,
    pingUnderLoad: underLoad,
    qemuGa: qgaContenders
      ? { version: qgaContenders.version, pollIntervalMs: qgaContenders.pollIntervalMs, medianStatusPolls: medianOf(qgaContenders.polls) }
      : qga,
    verdicts,
  });
  return 0;
}

runBenchmark(main);
