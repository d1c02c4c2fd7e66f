'use strict';
// One measured upload job, run in a process of its own so that its CPU
// time, peak RSS and event-loop delay belong to that client alone.
//
//   node bench/client.js '<json spec>'
//
// spec: {client: 'obs-native' | 'esdk-obs-nodejs' | 'lib-storage' | 'ali-oss'
//        | 'cos-nodejs-sdk-v5', endpoint,
//        accessKey, secretKey, bucket, files: [path...], keyPrefix, partSize,
//        taskNum, concurrency, checkpoint, checksum, progress}
// concurrency: how many files are uploaded at a time (default: all at once).
// Prints one JSON line: {ok, seconds, bytes, cpuUser, cpuSystem, maxRssBytes,
//   loopDelay: {p50, p99, max} (ms), calledAt (epoch ms), error?}

const fs = require('node:fs');
const { monitorEventLoopDelay, performance } = require('node:perf_hooks');

const { starterFor, describe } = require('./sdks');

const spec = JSON.parse(process.argv[2]);

function makeClient() {
  const start = starterFor(spec.client, {
    endpoint: spec.endpoint,
    accessKey: spec.accessKey,
    secretKey: spec.secretKey,
    bucket: spec.bucket,
    filesAtOnce: spec.concurrency || spec.files.length,
  });
  return (file, key) =>
    new Promise((resolve, reject) => {
      const options = { partSize: spec.partSize, taskNum: spec.taskNum, progress: spec.progress, checksum: spec.checksum };
      if (spec.checkpoint) options.checkpointFile = `${file}.${spec.client}.${process.pid}.record`;
      start(file, key, options, (err) => (err ? reject(err instanceof Error ? err : new Error(`upload failed: ${describe(err)}`)) : resolve()));
    });
}

async function main() {
  const upload = makeClient();
  // The reference SDK finishes its setup one tick after construction.
  await new Promise((r) => setImmediate(r));
  const bytes = spec.files.reduce((n, f) => n + fs.statSync(f).size, 0);
  const loop = monitorEventLoopDelay({ resolution: 1 });
  loop.enable();
  const cpu0 = process.cpuUsage();
  const calledAt = Date.now();
  // The orchestrator times the first part from this moment (10,000-part case).
  if (spec.announce) process.stderr.write(`CALLED ${calledAt}\n`);
  const t0 = performance.now();
  let error;
  try {
    let next = 0;
    const worker = async () => {
      while (next < spec.files.length) {
        const i = next++;
        await upload(spec.files[i], `${spec.keyPrefix}-${i}`);
      }
    };
    await Promise.all(Array.from({ length: spec.concurrency || spec.files.length }, worker));
  } catch (e) {
    error = String(e && e.stack ? e.stack : e);
  }
  const seconds = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  loop.disable();
  const ms = (ns) => Math.round((ns / 1e6) * 100) / 100;
  const out = {
    ok: !error,
    error,
    seconds,
    bytes,
    cpuUser: cpu.user / 1e6,
    cpuSystem: cpu.system / 1e6,
    maxRssBytes: process.resourceUsage().maxRSS * 1024,
    loopDelay: { p50: ms(loop.percentile(50)), p99: ms(loop.percentile(99)), max: ms(loop.max) },
    calledAt,
  };
  process.stdout.write(`${JSON.stringify(out)}\n`);
  // Some SDKs keep sockets open; the measurement is done.
  process.exit(error ? 1 : 0);
}

main().catch((e) => {
  process.stdout.write(`${JSON.stringify({ ok: false, error: String(e && e.stack ? e.stack : e) })}\n`);
  process.exit(1);
});
