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
const path = require('node:path');
const { monitorEventLoopDelay, performance } = require('node:perf_hooks');

const spec = JSON.parse(process.argv[2]);

function noop() {}

async function uploadWith(client, file, key) {
  const common = { Bucket: spec.bucket, Key: key, UploadFile: file, PartSize: spec.partSize, TaskNum: spec.taskNum };
  if (spec.checkpoint) {
    common.EnableCheckpoint = true;
    common.CheckpointFile = `${file}.${spec.client}.${process.pid}.record`;
    if (spec.checksum) common.EnableCheckSum = true;
  }
  if (spec.progress) common.ProgressCallback = noop;
  const result = await client.uploadFile(common);
  if (!result || !result.CommonMsg || result.CommonMsg.Status >= 300) {
    throw new Error(`upload failed: ${JSON.stringify(result && result.CommonMsg)}`);
  }
}

function makeClient() {
  const options = { access_key_id: spec.accessKey, secret_access_key: spec.secretKey, server: spec.endpoint };
  switch (spec.client) {
    case 'obs-native': {
      const ObsClient = require('..');
      const c = new ObsClient(options);
      return (file, key) => uploadWith(c, file, key);
    }
    case 'esdk-obs-nodejs': {
      const ObsClient = require('esdk-obs-nodejs');
      const c = new ObsClient(options);
      return (file, key) => uploadWith(c, file, key);
    }
    case 'lib-storage': {
      const { S3Client } = require('@aws-sdk/client-s3');
      const { Upload } = require('@aws-sdk/lib-storage');
      const s3 = new S3Client({
        endpoint: spec.endpoint,
        forcePathStyle: true,
        region: 'us-east-1',
        credentials: { accessKeyId: spec.accessKey, secretAccessKey: spec.secretKey },
      });
      return async (file, key) => {
        const upload = new Upload({
          client: s3,
          params: { Bucket: spec.bucket, Key: key, Body: fs.createReadStream(file, { highWaterMark: 1 << 20 }) },
          partSize: Math.max(spec.partSize, 5 * 1024 * 1024),
          queueSize: spec.taskNum,
        });
        if (spec.progress) upload.on('httpUploadProgress', noop);
        await upload.done();
      };
    }
    // The peers' own resumable (multipart) uploads, with their defaults
    // otherwise. They sign for their own clouds, so they run against the
    // sink only, which checks no signature.
    case 'ali-oss': {
      const OSS = require('ali-oss');
      const url = new URL(spec.endpoint);
      // Over TLS it names the server by its region's host name, not the
      // endpoint's, so the test certificate (for 127.0.0.1) is checked
      // without its host name; its own keep-alive agent otherwise.
      const { HttpsAgent } = require(require.resolve('agentkeepalive', { paths: [path.dirname(require.resolve('ali-oss'))] }));
      const oss = new OSS({
        endpoint: spec.endpoint,
        secure: url.protocol === 'https:',
        httpsAgent: new HttpsAgent({ checkServerIdentity: () => undefined }),
        bucket: spec.bucket,
        accessKeyId: spec.accessKey,
        accessKeySecret: spec.secretKey,
      });
      return async (file, key) => {
        const options = { parallel: spec.taskNum, partSize: spec.partSize };
        if (spec.progress) options.progress = noop;
        const result = await oss.multipartUpload(key, file, options);
        if (!result || !result.res || result.res.status !== 200) throw new Error(`upload failed: ${result && result.res && result.res.status}`);
      };
    }
    case 'cos-nodejs-sdk-v5': {
      const COS = require('cos-nodejs-sdk-v5');
      const url = new URL(spec.endpoint);
      // COS addresses buckets by host name only; with the endpoint as its
      // domain every request goes there, which the sink does not mind.
      // FileParallelLimit: as many files at once as the others get.
      const cos = new COS({
        SecretId: spec.accessKey,
        SecretKey: spec.secretKey,
        Protocol: url.protocol,
        Domain: url.host,
        FileParallelLimit: spec.concurrency || spec.files.length,
      });
      return (file, key) =>
        new Promise((resolve, reject) => {
          const params = { Bucket: `${spec.bucket}-1250000000`, Region: 'ap-guangzhou', Key: key, FilePath: file, SliceSize: spec.partSize, AsyncLimit: spec.taskNum };
          if (spec.progress) params.onProgress = noop;
          cos.sliceUploadFile(params, (err, data) => {
            if (err) reject(new Error(`upload failed: ${err.statusCode || ''} ${err.code || err.message || ''}`));
            else if (!data || data.statusCode !== 200) reject(new Error(`upload failed: ${data && data.statusCode}`));
            else resolve();
          });
        });
    }
    default:
      throw new Error(`unknown client ${spec.client}`);
  }
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
