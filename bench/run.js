'use strict';
// `npm run bench`: obs-native, esdk-obs-nodejs and @aws-sdk/lib-storage
// (and, on the sink, ali-oss and cos-nodejs-sdk-v5) in turn on the same
// machine, files and servers, each upload in a process of its own
// (bench/client.js). Servers: s3s-fs (as in the tests) and the test
// kit's sink (reads and discards bodies: the client's cost alone), plus a
// floor row (plain parallel PUTs by a minimal Rust loop). Medians of several
// runs; ratios against esdk-obs-nodejs from the same run. Writes
// bench/RESULTS.md and prints each target with its verdict.
//
//   node bench/run.js [--runs N] [--quick] [--only <case substring>]

const { spawn, spawnSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { startServer } = require('../__test__/kit/server.js');

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
const MB5 = 5 * MiB;
const MB16 = 16 * MiB;
// Every SDK: CLIENTS, then the peers that sign for their own clouds (Alibaba
// OSS, Tencent COS). The peers run against the sink only, which checks no
// signature, each through its own multipart upload (ali-oss multipartUpload,
// COS sliceUploadFile).
const SDKS = require('./sdks').CLIENTS;
const CLIENTS = SDKS.filter((c) => ['obs-native', 'esdk-obs-nodejs', 'lib-storage'].includes(c));
const BASE = 'esdk-obs-nodejs';
const WITH_PROGRESS = 'obs-native + ProgressCallback';
// Part bodies copied through buffers, as over HTTPS or a proxy, instead of
// sendfile (which plain HTTP on Linux gets).
const BUFFERED = 'obs-native, buffered (HTTPS path)';
const IDLE_FLOOR = 'idle Node beside the floor';
const IDLE_OURS = 'idle Node beside obs-native';
const HTTPS_SINK = 'sink over HTTPS';
const TLS = path.join(__dirname, '..', '__test__', 'fixtures', 'tls');
// Node clients trust the test CA (the HTTPS sink's certificate) through this.
const TRUST_TEST_CA = { NODE_EXTRA_CA_CERTS: path.join(TLS, 'ca.pem') };

const argv = process.argv.slice(2);
const flag = (name) => argv.includes(name);
const option = (name, def) => {
  const i = argv.indexOf(name);
  return i >= 0 ? argv[i + 1] : def;
};
const RUNS = Number(option('--runs', flag('--quick') ? 1 : 3));
const ONLY = option('--only', '');
const DATA = path.join(__dirname, 'data');
const TIMEOUT_S = 240;

// ---------------------------------------------------------------- data

function randomFile(name, size) {
  const file = path.join(DATA, name);
  if (fs.existsSync(file) && fs.statSync(file).size === size) return file;
  const fd = fs.openSync(file, 'w');
  const block = Buffer.alloc(8 * MiB);
  for (let done = 0; done < size; ) {
    const n = Math.min(block.length, size - done);
    require('node:crypto').randomFillSync(block, 0, n);
    fs.writeSync(fd, block, 0, n);
    done += n;
  }
  fs.closeSync(fd);
  return file;
}

function sparseFile(name, size) {
  const file = path.join(DATA, name);
  if (!fs.existsSync(file) || fs.statSync(file).size !== size) {
    fs.writeFileSync(file, '');
    fs.truncateSync(file, size);
  }
  return file;
}

// ---------------------------------------------------------------- running

function floorBinary() {
  const dirs = [process.env.CARGO_TARGET_DIR, path.join(__dirname, '..', 'target')].filter(Boolean);
  const found = dirs.map((d) => path.join(d, 'release', 'obs-floor')).find((f) => fs.existsSync(f));
  if (!found) throw new Error('obs-floor is not built: run `cargo build --release -p obs-testkit`');
  return found;
}

/** Runs one client job in its own process; resolves with its measurements. */
function runClient(spec, { onCalled } = {}) {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [path.join(__dirname, 'client.js'), JSON.stringify(spec)], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, ...(spec.env || {}) },
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => {
      out += d;
    });
    child.stderr.on('data', (d) => {
      err += d;
      const m = /CALLED (\d+)/.exec(err);
      if (m && onCalled) {
        onCalled(Number(m[1]), child);
        onCalled = null;
      }
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), (spec.timeoutSeconds || TIMEOUT_S) * 1000);
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      const line = out.trim().split('\n').pop();
      try {
        resolve({ ...JSON.parse(line), signal });
      } catch (_) {
        let error = `no result: ${err.slice(-400)}`;
        if (signal === 'SIGKILL') error = 'killed (timeout)';
        // The process ran out of work while still awaiting the upload.
        else if (code === 0) error = 'never called back';
        resolve({ ok: false, signal, error });
      }
    });
  });
}

function runFloor(server, file, partSize, tasks) {
  const r = spawnSync(
    '/usr/bin/time',
    ['-f', 'TIME %U %S %M', floorBinary(), '--endpoint', server.endpoint, ...(server.endpoint.startsWith('https:') ? ['--ca', path.join(TLS, 'ca.pem')] : []), '--bucket', 'bench', '--key', 'floor', '--file', file, '--part-size', String(partSize), '--tasks', String(tasks)],
    { encoding: 'utf8' },
  );
  const res = JSON.parse(r.stdout.trim());
  const t = /TIME ([\d.]+) ([\d.]+) (\d+)/.exec(r.stderr);
  return {
    ok: true,
    seconds: res.seconds,
    bytes: res.bytes,
    cpuUser: t ? Number(t[1]) : NaN,
    cpuSystem: t ? Number(t[2]) : NaN,
    maxRssBytes: t ? Number(t[3]) * 1024 : NaN,
    loopDelay: null,
  };
}

/**
 * The event-loop delay of a Node process that does nothing, running beside
 * the floor's transfer: what the machine alone (2 cores busy with sending
 * and serving) does to any event loop, with no client code in it.
 */
/**
 * The event-loop delay of a Node process that does nothing, measured while
 * `work` (an async function) runs beside it: what the machine alone does to
 * an event loop during that transfer.
 */
function idleBeside(work) {
  const idle = spawn(process.execPath, [
    '-e',
    "const h=require('perf_hooks').monitorEventLoopDelay({resolution:1});h.enable();" +
      "process.stdin.on('data',()=>{h.disable();console.log(JSON.stringify({p50:h.percentile(50)/1e6,p99:h.percentile(99)/1e6,max:h.max/1e6}));process.exit(0)});",
  ]);
  return new Promise((resolve) => {
    let out = '';
    idle.stdout.on('data', (d) => {
      out += d;
    });
    idle.on('exit', () => resolve(JSON.parse(out.trim())));
    setTimeout(async () => {
      await work();
      idle.stdin.write('done\n');
    }, 300);
  });
}

function warm(file) {
  const fd = fs.openSync(file, 'r');
  const buf = Buffer.allocUnsafe(8 * MiB);
  let pos = 0;
  for (let n; (n = fs.readSync(fd, buf, 0, buf.length, pos)) > 0; ) pos += n;
  fs.closeSync(fd);
}

const median = (xs) => {
  const v = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (!v.length) return NaN;
  const m = Math.floor(v.length / 2);
  return v.length % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
};

function summarize(runs) {
  const ok = runs.filter((r) => r.ok);
  if (!ok.length) return { ok: false, error: runs[0] && runs[0].error };
  return {
    ok: true,
    runs: ok.length,
    mbps: median(ok.map((r) => r.bytes / 1e6 / r.seconds)),
    seconds: median(ok.map((r) => r.seconds)),
    cpuPerGiB: median(ok.map((r) => (r.cpuUser + r.cpuSystem) / (r.bytes / GiB))),
    rssMB: median(ok.map((r) => r.maxRssBytes / 1e6)),
    p50: median(ok.map((r) => (r.loopDelay ? r.loopDelay.p50 : NaN))),
    p99: median(ok.map((r) => (r.loopDelay ? r.loopDelay.p99 : NaN))),
    max: median(ok.map((r) => (r.loopDelay ? r.loopDelay.max : NaN))),
    firstPartMs: median(ok.map((r) => (r.firstPartMs === undefined ? NaN : r.firstPartMs))),
  };
}

// ---------------------------------------------------------------- cases

/**
 * A case: a server, the files, the upload parameters and which clients.
 * Every client runs RUNS times, interleaved (a, b, c, a, b, c, ...) so that
 * drift in the machine's state hits all of them alike.
 */
function cases(files) {
  const list = [];
  for (const partSize of [MB5, MB16]) {
    const clients = partSize === MB5 ? [...CLIENTS, BUFFERED] : CLIENTS;
    list.push({ server: 's3s-fs', name: `1 GiB, ${partSize / MiB} MiB parts, TaskNum 20`, files: [files.g1], partSize, taskNum: 20, floor: false, clients, idleBesideOurs: partSize === MB5 });
  }
  for (const partSize of [MB5, MB16]) {
    for (const taskNum of [1, 4, 20, 64]) {
      const baseline = partSize === MB5 && taskNum === 20;
      const clients = baseline ? [...SDKS, BUFFERED] : CLIENTS;
      list.push({ server: 'sink', name: `1 GiB, ${partSize / MiB} MiB parts, TaskNum ${taskNum}`, files: [files.g1], partSize, taskNum, floor: true, baseline, clients, idleBesideOurs: baseline });
    }
  }
  // HTTPS, the path real endpoints take: TLS on the sink's own port
  // (rustls). Node clients trust the test CA through NODE_EXTRA_CA_CERTS
  // (esdk-obs-nodejs and obs-native do not verify unless ssl_verify is set).
  // Its floor is the same minimal loop through rustls.
  list.push({ server: HTTPS_SINK, name: '1 GiB, 5 MiB parts, TaskNum 20', files: [files.g1], partSize: MB5, taskNum: 20, floor: true, idleBesideOurs: true, clients: SDKS, env: TRUST_TEST_CA });
  // With and without a ProgressCallback, interleaved in one case so that
  // drift in the machine's state hits both alike.
  list.push({
    server: 'sink',
    name: '1 GiB, 5 MiB parts, TaskNum 20: ProgressCallback off / on',
    files: [files.g1],
    partSize: MB5,
    taskNum: 20,
    clients: ['obs-native', WITH_PROGRESS],
    runs: Math.max(RUNS, 5),
  });
  // EnableCheckpoint / EnableCheckSum are the OBS SDKs' options; lib-storage has none.
  const OBS_SDKS = ['obs-native', 'esdk-obs-nodejs'];
  list.push({ server: 'sink', name: '100 MB, EnableCheckpoint', files: [files.m100], partSize: MB5, taskNum: 20, checkpoint: true, clients: OBS_SDKS });
  list.push({
    server: 'sink',
    name: '100 MB, EnableCheckpoint + EnableCheckSum',
    files: [files.m100],
    partSize: MB5,
    taskNum: 20,
    checkpoint: true,
    checksum: true,
    timeoutSeconds: 30,
    clients: OBS_SDKS,
  });
  list.push({ server: 'sink', name: '1 GiB, EnableCheckpoint', files: [files.g1], partSize: MB5, taskNum: 20, checkpoint: true, clients: OBS_SDKS });
  list.push({
    server: 'sink',
    name: '1 GiB, EnableCheckpoint + EnableCheckSum',
    files: [files.g1],
    partSize: MB5,
    taskNum: 20,
    checkpoint: true,
    checksum: true,
    timeoutSeconds: 60,
    clients: OBS_SDKS,
  });
  list.push({ server: 'sink', name: '50 files of 20 MB at once, TaskNum 4 each', files: files.f20, partSize: MB5, taskNum: 4, clients: SDKS });
  // What each call costs beyond its bytes: a folder of small files, a few
  // uploads at a time.
  list.push({ server: 'sink', name: '1,000 files of 64 KiB, 16 at a time', files: files.k64, partSize: MB5, taskNum: 20, concurrency: 16, clients: SDKS });
  list.push({ server: 'sink', name: '1,000 files of 64 KiB, 16 at a time, EnableCheckpoint', files: files.k64, partSize: MB5, taskNum: 20, concurrency: 16, checkpoint: true, clients: OBS_SDKS });
  // The same over TLS, as real endpoints take it: what a client pays per
  // connection (a handshake) shows when its connections are not kept.
  list.push({ server: HTTPS_SINK, name: '1,000 files of 64 KiB, 16 at a time', files: files.k64, partSize: MB5, taskNum: 20, concurrency: 16, clients: SDKS, env: TRUST_TEST_CA });
  list.push({ server: 'sink', name: '16 GiB (sparse), 5 MiB parts, TaskNum 20', files: [files.s16g], partSize: MB5, taskNum: 20, runs: 1, timeoutSeconds: 400 });
  list.push({ server: 'sink', name: '10,000-part plan (48.8 GiB sparse): time to first part', files: [files.s10k], partSize: MB5, taskNum: 20, firstPart: true, noWarmup: true });
  return list.filter((c) => !ONLY || `${c.server} ${c.name}`.includes(ONLY));
}

async function firstPartRun(server, spec) {
  await server.resetStats();
  let calledAt;
  let firstAt;
  const result = await runClient(spec, {
    onCalled: (at, child) => {
      calledAt = at;
      const poll = setInterval(async () => {
        const { requests } = await server.stats();
        const part = requests.find((r) => r.method === 'PUT' && /partNumber=/.test(r.query));
        if (part) {
          clearInterval(poll);
          firstAt = part.at_ms;
          child.kill('SIGKILL');
        }
      }, 5);
      child.on('exit', () => clearInterval(poll));
    },
  });
  if (firstAt === undefined) return { ok: false, error: result.error || 'no part arrived' };
  return { ok: true, firstPartMs: firstAt - calledAt, bytes: 0, seconds: NaN, cpuUser: NaN, cpuSystem: NaN, maxRssBytes: NaN };
}

// ---------------------------------------------------------------- report

const fmt = (v, d = 0) => (Number.isFinite(v) ? v.toFixed(d) : '-');

function targets(results) {
  const get = (server, name, client) => results.find((r) => r.server === server && r.name === name && r.client === client);
  const out = [];
  const check = (what, value, limit, pass, note = '') => out.push({ what, value, limit, pass, note });
  const main = '1 GiB, 5 MiB parts, TaskNum 20';
  for (const server of ['s3s-fs', 'sink', HTTPS_SINK]) {
    const ours = get(server, main, 'obs-native');
    const base = get(server, main, BASE);
    const floor = get(server, main, 'floor');
    if (ours && base && ours.ok && base.ok) {
      const floorNote = floor && floor.ok ? `; the floor ${fmt(floor.cpuPerGiB, 2)} s (${fmt(floor.cpuPerGiB / base.cpuPerGiB, 2)}x)` : '';
      check(`CPU per GiB on ${server} <= 0.25 x esdk-obs-nodejs`, `${fmt(ours.cpuPerGiB, 2)} s vs ${fmt(base.cpuPerGiB, 2)} s (${fmt(ours.cpuPerGiB / base.cpuPerGiB, 2)}x${floorNote})`, '0.25x', ours.cpuPerGiB <= 0.25 * base.cpuPerGiB);
    }
  }
  const sinkOurs = get('sink', main, 'obs-native');
  const sinkBase = get('sink', main, BASE);
  const sinkFloor = get('sink', main, 'floor');
  if (sinkOurs && sinkBase && sinkOurs.ok && sinkBase.ok) {
    check('Sink throughput >= 3 x esdk-obs-nodejs', `${fmt(sinkOurs.mbps)} vs ${fmt(sinkBase.mbps)} MB/s (${fmt(sinkOurs.mbps / sinkBase.mbps, 2)}x)`, '3x', sinkOurs.mbps >= 3 * sinkBase.mbps);
  }
  if (sinkOurs && sinkFloor && sinkOurs.ok && sinkFloor.ok) {
    check('Sink throughput >= 80% of the floor', `${fmt(sinkOurs.mbps)} vs ${fmt(sinkFloor.mbps)} MB/s (${fmt((100 * sinkOurs.mbps) / sinkFloor.mbps)}%)`, '80%', sinkOurs.mbps >= 0.8 * sinkFloor.mbps);
  }
  for (const [server, name] of [['sink', main], ['s3s-fs', main], [HTTPS_SINK, main], ['sink', '16 GiB (sparse), 5 MiB parts, TaskNum 20']]) {
    const r = get(server, name, 'obs-native');
    if (r && r.ok) check(`Peak RSS <= 64 MB (${server}, ${name})`, `${fmt(r.rssMB)} MB`, '64 MB', r.rssMB <= 64);
  }
  // An idle Node process beside a transfer shows what the machine alone
  // does to an event loop at that moment.
  const idleNote = (server, label, what) => {
    const idle = get(server, main, label);
    return idle && idle.ok ? [`an idle Node process beside ${what} ${fmt(idle.p99, 2)} / ${fmt(idle.max, 2)} ms`] : [];
  };
  for (const server of ['s3s-fs', 'sink', HTTPS_SINK]) {
    const r = get(server, main, 'obs-native');
    const base = get(server, main, BASE);
    if (r && r.ok) {
      const others = [
        ...(base && base.ok ? [`esdk-obs-nodejs ${fmt(base.p99, 2)} / ${fmt(base.max, 2)} ms`] : []),
        ...idleNote(server, IDLE_OURS, "obs-native's upload"),
        ...idleNote(server, IDLE_FLOOR, "the floor's transfer"),
      ];
      check(`Event-loop delay p99 <= 2 ms (${server})`, `${fmt(r.p99, 2)} ms (p99 / max of the others: ${others.join('; ')})`, '2 ms', r.p99 <= 2);
      check(`Event-loop delay max <= 10 ms (${server})`, `${fmt(r.max, 2)} ms`, '10 ms', r.max <= 10);
    }
  }
  const progressCase = '1 GiB, 5 MiB parts, TaskNum 20: ProgressCallback off / on';
  const withProgress = get('sink', progressCase, WITH_PROGRESS);
  const withoutProgress = get('sink', progressCase, 'obs-native');
  if (withProgress && withoutProgress && withProgress.ok && withoutProgress.ok) {
    check(
      'ProgressCallback costs < 5% throughput',
      `${fmt(withProgress.mbps)} vs ${fmt(withoutProgress.mbps)} MB/s (${fmt((100 * withProgress.mbps) / withoutProgress.mbps)}%)`,
      '95%',
      withProgress.mbps >= 0.95 * withoutProgress.mbps,
    );
  }
  const plain = get('sink', '1 GiB, EnableCheckpoint', 'obs-native');
  const summed = get('sink', '1 GiB, EnableCheckpoint + EnableCheckSum', 'obs-native');
  if (plain && summed && plain.ok && summed.ok) {
    const md5Rate = GiB / 1e6 / Math.max(summed.seconds - plain.seconds, 1e-9);
    check('EnableCheckSum: whole-file MD5 >= 500 MB/s', `${fmt(md5Rate)} MB/s (1 GiB: ${fmt(summed.seconds, 2)} s with, ${fmt(plain.seconds, 2)} s without)`, '500 MB/s', md5Rate >= 500);
    check('EnableCheckSum: MD5 off the JS thread (loop delay max <= 10 ms)', `${fmt(summed.max, 2)} ms`, '10 ms', summed.max <= 10);
  }
  return out;
}

function markdown(results, checks, env) {
  const lines = [];
  lines.push('# Benchmark results', '');
  lines.push(`Generated by \`npm run bench\` (bench/run.js) on ${env.date}: ${env.cpu}, ${env.cores} cores, ${env.memGiB} GiB, Node ${env.node}, ${RUNS} run(s) per row (median).`, '');
  lines.push('Servers: **s3s-fs** is the store the tests use (it checks signatures and writes to disk, and on 2 cores it sets the pace); **sink** reads and discards bodies and answers valid multipart responses, so it measures the client alone. **ali-oss** (`multipartUpload`) and **cos-nodejs-sdk-v5** (`sliceUploadFile`, with the endpoint as its `Domain` and `FileParallelLimit` as many as the files uploaded at once) are the SDKs of Alibaba Cloud and Tencent Cloud; they sign for their own services, so they run against the sink only, with their defaults otherwise. **floor** is the same bytes as plain parallel HTTP PUTs by a minimal Rust loop (no SDK, no signing, read + write through a buffer; over HTTPS the same loop through rustls, with the same ring crypto and cipher order obs-native uses, AES-128-GCM first; the sink follows the client\'s order, so esdk-obs-nodejs, through Node\'s OpenSSL, gets AES-256-GCM). **sink over HTTPS** is the sink behind TLS (rustls, on the same machine, so it also pays for decryption); it measures the path real endpoints take. Over plain HTTP on Linux obs-native sends part bodies with sendfile (no copy through user space); **obs-native, buffered (HTTPS path)** is obs-native with that turned off (`OBS_NATIVE_SENDFILE=0`), the copying path that HTTPS and proxies take, without the encryption. CPU is user + system time of the client process (all its threads) per GiB uploaded; RSS is the client process\'s peak; event-loop delay is measured in the client process during the upload with `monitorEventLoopDelay({resolution: 1})`, which records the whole interval between its 1 ms ticks, so an idle loop shows about 1.1 ms and a figure of 3 ms means the loop ran about 2 ms late. Ratios are against esdk-obs-nodejs in the same run.', '');
  lines.push('| server | case | client | MB/s | x esdk | CPU s/GiB | x esdk | peak RSS MB | loop p50 / p99 / max ms |');
  lines.push('|---|---|---|---:|---:|---:|---:|---:|---|');
  for (const r of results) {
    const base = results.find((b) => b.server === r.server && b.name === r.name && b.client === BASE);
    const ratio = (a, b) => (base && base.ok && r.ok && Number.isFinite(a) && Number.isFinite(b) && b ? `${fmt(a / b, 2)}` : '-');
    if (!r.ok) {
      lines.push(`| ${r.server} | ${r.name} | ${r.client} | ${r.error ? String(r.error).split('\n')[0].slice(0, 80) : 'failed'} | | | | | |`);
      continue;
    }
    if (Number.isFinite(r.firstPartMs)) {
      lines.push(`| ${r.server} | ${r.name} | ${r.client} | first part after ${fmt(r.firstPartMs)} ms | | | | | |`);
      continue;
    }
    const loop = Number.isFinite(r.p99) ? `${fmt(r.p50, 2)} / ${fmt(r.p99, 2)} / ${fmt(r.max, 2)}` : '-';
    lines.push(
      `| ${r.server} | ${r.name} | ${r.client} | ${fmt(r.mbps)} | ${ratio(r.mbps, base && base.mbps)} | ${fmt(r.cpuPerGiB, 2)} | ${ratio(r.cpuPerGiB, base && base.cpuPerGiB)} | ${fmt(r.rssMB)} | ${loop} |`,
    );
  }
  lines.push('', '## Targets', '', '| target | measured | limit | verdict |', '|---|---|---|---|');
  for (const c of checks) lines.push(`| ${c.what} | ${c.value} | ${c.limit} | ${c.pass ? 'met' : '**not met**'} |`);
  lines.push('');
  return lines.join('\n');
}

// ---------------------------------------------------------------- main

async function main() {
  fs.mkdirSync(DATA, { recursive: true });
  console.log('preparing data in bench/data ...');
  const files = {
    g1: randomFile('g1.bin', GiB),
    m100: randomFile('m100.bin', 100 * 1000 * 1000),
    f20: Array.from({ length: 50 }, (_, i) => randomFile(`f20-${i}.bin`, 20 * 1000 * 1000)),
    k64: Array.from({ length: 1000 }, (_, i) => randomFile(`k64-${i}.bin`, 64 * 1024)),
    s16g: sparseFile('s16g.bin', 16 * GiB),
    s10k: sparseFile('s10k.bin', 10000 * MB5),
  };
  const servers = {
    's3s-fs': await startServer({ buckets: ['bench'], root: fs.mkdtempSync(path.join(DATA, 'store-')) }),
    sink: await startServer({ mode: 'sink', buckets: ['bench'] }),
    [HTTPS_SINK]: await startServer({ mode: 'sink', buckets: ['bench'], tls: { cert: path.join(TLS, 'cert.pem'), key: path.join(TLS, 'key.pem') } }),
  };
  const results = [];
  try {
    for (const c of cases(files)) {
      const server = servers[c.server];
      const clients = c.clients || CLIENTS;
      const runs = Object.fromEntries([...clients, 'floor'].map((k) => [k, []]));
      const n = c.runs || RUNS;
      // Read the files once first, so that no client pays for filling the
      // page cache (for a sparse file, allocating and zeroing every page).
      if (!c.noWarmup) for (const f of c.files) warm(f);
      const specFor = (client) => ({
        client: client === WITH_PROGRESS || client === BUFFERED ? 'obs-native' : client,
        env: { ...c.env, ...(client === BUFFERED ? { OBS_NATIVE_SENDFILE: '0' } : {}) },
        endpoint: server.endpoint,
        accessKey: server.accessKey,
        secretKey: server.secretKey,
        bucket: 'bench',
        files: c.files,
        keyPrefix: `bench-${client}`,
        partSize: c.partSize,
        taskNum: c.taskNum,
        concurrency: c.concurrency,
        checkpoint: Boolean(c.checkpoint),
        checksum: Boolean(c.checksum),
        progress: Boolean(c.progress) || client === WITH_PROGRESS,
        timeoutSeconds: c.timeoutSeconds,
        announce: Boolean(c.firstPart),
      });
      const idleRow = (label, loopDelay) => {
        runs[label] = (runs[label] || []).concat([{ ok: true, bytes: NaN, seconds: NaN, cpuUser: NaN, cpuSystem: NaN, maxRssBytes: NaN, loopDelay }]);
      };
      for (let i = 0; i < n; i += 1) {
        for (const client of clients) {
          const spec = specFor(client);
          const r = c.firstPart ? await firstPartRun(server, spec) : await runClient(spec);
          runs[client].push(r);
          process.stdout.write(`${c.server} | ${c.name} | ${client} | run ${i + 1}: ${r.ok ? (c.firstPart ? `${r.firstPartMs} ms to first part` : `${fmt(r.bytes / 1e6 / r.seconds)} MB/s, ${fmt(r.cpuUser + r.cpuSystem, 2)} s CPU, ${fmt(r.maxRssBytes / 1e6)} MB`) : `FAILED ${String(r.error).split('\n')[0]}`}\n`);
        }
        if (c.floor) runs.floor.push(runFloor(server, c.files[0], c.partSize, c.taskNum));
        if (c.baseline) idleRow(IDLE_FLOOR, await idleBeside(async () => runFloor(server, c.files[0], c.partSize, c.taskNum)));
        if (c.idleBesideOurs) idleRow(IDLE_OURS, await idleBeside(() => runClient(specFor('obs-native'))));
      }
      for (const [client, list] of Object.entries(runs)) {
        if (list.length) results.push({ server: c.server, name: c.name, client, ...summarize(list) });
      }
    }
  } finally {
    for (const s of Object.values(servers)) await s.close();
    for (const d of fs.readdirSync(DATA).filter((n) => n.startsWith('store-'))) fs.rmSync(path.join(DATA, d), { recursive: true, force: true });
    for (const f of fs.readdirSync(DATA).filter((n) => n.endsWith('.record'))) fs.rmSync(path.join(DATA, f), { force: true });
  }
  const checks = targets(results);
  const env = {
    date: new Date().toISOString().slice(0, 10),
    cpu: (os.cpus()[0] || {}).model || 'unknown CPU',
    cores: os.cpus().length,
    memGiB: Math.round(os.totalmem() / GiB),
    node: process.version,
  };
  const md = markdown(results, checks, env);
  if (!ONLY) fs.writeFileSync(path.join(__dirname, 'RESULTS.md'), md);
  console.log(`\n${md}`);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
