'use strict';
// The upload clients that the benchmark (bench/client.js) and
// tools/peer-faults.js run, each made the same way against a test kit
// server:
//
//   const start = starterFor(client, {endpoint, accessKey, secretKey, bucket, filesAtOnce});
//   start(file, key, {partSize, taskNum, progress, checkpointFile, checksum}, done);
//
// `done(err)` is called as the SDK calls back: with null on success, else
// with the SDK's own error (an object or a string), and as often as the SDK
// calls back. Each SDK uploads through its own resumable (multipart) call,
// with its defaults otherwise (retries, timeouts): what a user gets.
// esdk-obs-nodejs finishes its setup one tick after construction; callers
// wait that tick before the first upload.

const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const CLIENTS = ['obs-native', 'esdk-obs-nodejs', 'lib-storage', 'ali-oss', 'cos-nodejs-sdk-v5'];

function noop() {}

/** `done` for the OBS SDKs' `(err, result)` callback. */
function obsDone(done) {
  return (err, result) => {
    const msg = result && result.CommonMsg;
    if (err) done(err);
    else if (!msg || msg.Status >= 300) done(`upload failed: ${msg && msg.Status} ${msg && msg.Code}`);
    else done(null);
  };
}

function starterFor(client, { endpoint, accessKey, secretKey, bucket, filesAtOnce = 1 }) {
  const url = new URL(endpoint);
  switch (client) {
    case 'obs-native':
    case 'esdk-obs-nodejs': {
      const ObsClient = require(client === 'obs-native' ? path.join(__dirname, '..') : 'esdk-obs-nodejs');
      const c = new ObsClient({ access_key_id: accessKey, secret_access_key: secretKey, server: endpoint });
      return (file, key, o, done) => {
        const params = { Bucket: bucket, Key: key, UploadFile: file, PartSize: o.partSize, TaskNum: o.taskNum };
        if (o.checkpointFile) Object.assign(params, { EnableCheckpoint: true, CheckpointFile: o.checkpointFile, EnableCheckSum: Boolean(o.checksum) });
        if (o.progress) params.ProgressCallback = noop;
        c.uploadFile(params, obsDone(done));
      };
    }
    case 'lib-storage': {
      const { S3Client } = require('@aws-sdk/client-s3');
      const { Upload } = require('@aws-sdk/lib-storage');
      const s3 = new S3Client({ endpoint, forcePathStyle: true, region: 'us-east-1', credentials: { accessKeyId: accessKey, secretAccessKey: secretKey } });
      return (file, key, o, done) => {
        const upload = new Upload({
          client: s3,
          params: { Bucket: bucket, Key: key, Body: fs.createReadStream(file, { highWaterMark: 1 << 20 }) },
          partSize: Math.max(o.partSize, 5 * 1024 * 1024),
          queueSize: o.taskNum,
        });
        if (o.progress) upload.on('httpUploadProgress', noop);
        upload.done().then(() => done(null), done);
      };
    }
    // The peers sign for their own clouds: they run against the sink only,
    // which checks no signature.
    case 'ali-oss': {
      const OSS = require('ali-oss');
      // Over TLS it names the server by its region's host name, not the
      // endpoint's, so the test certificate (for 127.0.0.1) is checked
      // without its host name; its own keep-alive agent otherwise.
      const { HttpsAgent } = require(require.resolve('agentkeepalive', { paths: [path.dirname(require.resolve('ali-oss'))] }));
      const oss = new OSS({
        endpoint,
        secure: url.protocol === 'https:',
        httpsAgent: new HttpsAgent({ checkServerIdentity: () => undefined }),
        bucket,
        accessKeyId: accessKey,
        accessKeySecret: secretKey,
      });
      return (file, key, o, done) => {
        const options = { parallel: o.taskNum, partSize: o.partSize };
        if (o.progress) options.progress = noop;
        oss.multipartUpload(key, file, options).then((r) => done(r && r.res && r.res.status === 200 ? null : `upload failed: ${r && r.res && r.res.status}`), done);
      };
    }
    case 'cos-nodejs-sdk-v5': {
      const COS = require('cos-nodejs-sdk-v5');
      // COS addresses buckets by host name only; with the endpoint as its
      // domain every request goes there, which the sink does not mind.
      // FileParallelLimit: as many files at once as the others get. Its
      // resume cache (upload ids by file) goes to a folder of this process,
      // not the user's ~/.config.
      const confDir = fs.mkdtempSync(path.join(os.tmpdir(), 'cos-conf-'));
      process.on('exit', () => fs.rmSync(confDir, { recursive: true, force: true }));
      const cos = new COS({ SecretId: accessKey, SecretKey: secretKey, Protocol: url.protocol, Domain: url.host, FileParallelLimit: filesAtOnce, ConfCwd: confDir });
      return (file, key, o, done) => {
        const params = { Bucket: `${bucket}-1250000000`, Region: 'ap-guangzhou', Key: key, FilePath: file, SliceSize: o.partSize, AsyncLimit: o.taskNum };
        if (o.progress) params.onProgress = noop;
        cos.sliceUploadFile(params, (err, data) => done(err || (data && data.statusCode === 200 ? null : `upload failed: ${data && data.statusCode}`)));
      };
    }
    default:
      throw new Error(`unknown client ${client}`);
  }
}

/** A short text for any SDK's error (object or string). */
function describe(e) {
  if (e === null || e === undefined) return 'no error object';
  if (typeof e !== 'object') return String(e).slice(0, 60);
  const status = e.status || e.statusCode || (e.$metadata && e.$metadata.httpStatusCode) || '';
  const inner = e.error && typeof e.error === 'object' ? e.error : {};
  const code = e.code || e.Code || inner.Code || inner.code || (e.name && e.name !== 'Error' ? e.name : '');
  const msg = code ? '' : e.message || inner.Message || inner.message || String(e);
  return [status, code, msg].filter(Boolean).join(' ').slice(0, 60);
}

module.exports = { CLIENTS, starterFor, describe };
