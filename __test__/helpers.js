'use strict';
// Shared test fixtures: the local S3 server, test files, clients of both
// SDKs, and reading an object back through S3 to compare bytes.

const crypto = require('node:crypto');
const fs = require('node:fs');
const http = require('node:http');
const os = require('node:os');
const path = require('node:path');
const { startServer } = require('./kit/server.js');
const ObsClient = require('..');
const ReferenceClient = require('esdk-obs-nodejs');

const MB = 1024 * 1024;
const BUCKET = 'test-bucket';

let keyCounter = 0;
/** A key no other test uses. */
function uniqueKey(prefix = 'obj') {
  keyCounter += 1;
  return `${prefix}-${process.pid}-${Date.now()}-${keyCounter}`;
}

/** A new temporary folder (useServer removes its suite's after the suite). */
function tempDir() {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'obs-native-test-'));
}

/** Writes `size` random bytes to a new file in `dir` and returns its path. */
function makeFile(dir, size) {
  const file = path.join(dir, `file-${size}-${crypto.randomBytes(4).toString('hex')}.bin`);
  const fd = fs.openSync(file, 'w');
  for (let written = 0; written < size; ) {
    const n = Math.min(4 * MB, size - written);
    fs.writeSync(fd, crypto.randomBytes(n));
    written += n;
  }
  fs.closeSync(fd);
  return file;
}

function clientFor(server, extra = {}) {
  return new ObsClient({
    access_key_id: server.accessKey,
    secret_access_key: server.secretKey,
    server: server.endpoint,
    ...extra,
  });
}

/** The reference SDK's client; it finishes its setup one tick after construction. */
async function referenceClientFor(server, extra = {}) {
  const c = new ReferenceClient({
    access_key_id: server.accessKey,
    secret_access_key: server.secretKey,
    security_token: server.securityToken,
    server: server.endpoint,
    ...extra,
  });
  await new Promise((r) => setImmediate(r));
  return c;
}

/** The object's bytes, read back with a plain S3 GET (the reference SDK's getObject). */
async function readBack(server, key, bucket = BUCKET) {
  const ref = await referenceClientFor(server);
  const r = await ref.getObject({ Bucket: bucket, Key: key, SaveAsStream: true });
  if (r.CommonMsg.Status !== 200) {
    throw new Error(`GET ${bucket}/${key}: ${r.CommonMsg.Status} ${r.CommonMsg.Code}`);
  }
  const chunks = [];
  for await (const c of r.InterfaceResult.Content) chunks.push(c);
  return Buffer.concat(chunks);
}

/**
 * Multipart uploads the server holds that were not there at the last
 * `markUploads` (so that one failed test does not fail the next).
 */
async function newUploads(server) {
  const before = new Set(server.uploadsBaseline || []);
  return (await server.uploads()).filter((id) => !before.has(id));
}

async function markUploads(server) {
  server.uploadsBaseline = await server.uploads();
}

/** Asserts the object equals the file byte for byte and no multipart upload is left behind. */
async function expectUploaded(server, key, file) {
  const got = await readBack(server, key);
  const want = fs.readFileSync(file);
  expect(got.length).toBe(want.length);
  expect(got.equals(want)).toBe(true);
  expect(await newUploads(server)).toEqual([]);
}

/** Whether a logged request is a CompleteMultipartUpload (a POST to an upload). */
const isComplete = (r) => r.method === 'POST' && /(^|&)uploadId=/.test(r.query);

/** CompleteMultipartUpload requests since the last stats reset, whatever their answer. */
async function completes(server) {
  return (await server.stats()).requests.filter(isComplete);
}

/** PUT part requests the server answered with 200 since the last stats reset. */
async function partPuts(server) {
  const { requests } = await server.stats();
  return requests.filter((r) => r.method === 'PUT' && /partNumber=/.test(r.query) && r.status === 200);
}

/**
 * Sets a checkpoint record's `md5` by the reference SDK's rule, so tests can
 * write records as a process killed at a given moment would have left them.
 */
function sealRecord(record) {
  const data = [record.bucketName, record.objectKey, record.uploadFile, String(record.partSize), String(record.partCount)];
  for (const f of ['contentType', 'acl', 'websiteRedirectLocation', 'sseKms', 'sseKmsKey', 'sseC', 'sseCKey']) {
    if (record[f]) data.push(record[f]);
  }
  if (record.metadata) data.push(JSON.stringify(record.metadata));
  if (record.uploadId) data.push(record.uploadId);
  for (const n of Object.keys(record.partsMeta || {})) {
    const p = record.partsMeta[n];
    data.push(n, String(p.offset), String(p.partSize), String(p.isCompleted), String(p.etag));
  }
  record.md5 = crypto.createHash('md5').update(Buffer.from(data.join(''), 'utf8')).digest('base64');
  return record;
}

/**
 * Registers the hooks every suite needs: a server of its own (started with
 * `options`), an obs-native client for it and a temporary folder; before
 * each test the faults are cleared, the stats reset and the open uploads
 * noted. Returns an object whose fields are set once the suite starts.
 */
function useServer(options = {}) {
  const ctx = {};
  beforeAll(async () => {
    ctx.server = await startServer(options);
    ctx.client = clientFor(ctx.server);
    ctx.dir = tempDir();
  });
  afterAll(async () => {
    await ctx.server.close();
    fs.rmSync(ctx.dir, { recursive: true, force: true });
  });
  beforeEach(async () => {
    await ctx.server.clearFaults();
    await ctx.server.resetStats();
    await markUploads(ctx.server);
  });
  return ctx;
}

/**
 * How many parts the record at `record` holds as done; 0 while there is no
 * record, or while it is being replaced.
 */
function partsRecorded(record) {
  try {
    return Object.values(JSON.parse(fs.readFileSync(record, 'utf8')).partsMeta).filter((p) => p.isCompleted).length;
  } catch (_) {
    return 0;
  }
}

/**
 * How many connections the server has accepted so far; it numbers them as
 * it accepts them, and its request log says which one each request came on.
 */
async function acceptedConnections(server) {
  return (await server.stats()).connections;
}

/**
 * The connections numbered after `since` (see `acceptedConnections`) that
 * requests came on, read-backs (GET) aside: those a client opened since.
 */
async function connectionsSince(server, since) {
  const { requests } = await server.stats();
  return new Set(requests.filter((r) => r.method !== 'GET' && r.connection > since).map((r) => r.connection));
}

/** How many times each fault on the server has fired, in the order added. */
async function faultsFired(server) {
  return (await server.faults()).map((f) => f.fired);
}

/** Every part PUT of `key` waits `ms` at the server before it is read. */
function slowParts(server, key, ms) {
  return server.addFault({ method: 'PUT', path_contains: key, query: { partNumber: null }, times: 1000, action: { delay_ms: ms } });
}

/**
 * The most requests seen in flight at once (not yet answered) among those
 * `which` picks from the server's request log, sampled every 20 ms until
 * `running` (a promise) settles, or, with `windowMs`, until that long after
 * the first such request was seen. Fails if none is seen within 10 s.
 */
async function mostInFlight(server, running, which, { windowMs } = {}) {
  let done = false;
  running.then(
    () => (done = true),
    () => (done = true),
  );
  const deadline = Date.now() + 10000;
  let most = 0;
  let first;
  while (!done && !(first && windowMs !== undefined && Date.now() - first >= windowMs)) {
    if (!first && Date.now() > deadline) throw new Error('no request in flight within 10 s');
    const picked = (await server.stats()).requests.filter(which);
    if (picked.length && !first) first = Date.now();
    most = Math.max(most, picked.filter((r) => r.status === null).length);
    await new Promise((r) => setTimeout(r, 20));
  }
  return most;
}

/**
 * Passes `req` on to `host`:`port` at `path` (with `headers`, the request's
 * own unless given) and the answer back through `res`: a few lines of Node
 * in front of the test server.
 */
function passOn(req, res, { host, port, path: target, headers = req.headers }) {
  const up = http.request({ host, port, method: req.method, path: target, headers }, (answer) => {
    res.writeHead(answer.statusCode, answer.headers);
    answer.pipe(res);
  });
  up.on('error', () => res.destroy());
  req.pipe(up);
}

/** Runs uploadFile in callback form; resolves with `{err, result}`. */
function uploadWithCallback(client, params) {
  return new Promise((resolve) => client.uploadFile(params, (err, result) => resolve({ err, result })));
}

/**
 * Runs uploadFile (of either SDK) in callback form and, once `atBytes` have
 * been reported as sent, stops it through its ResumeCallback handle with
 * `how` ('cancel' or 'abort'). Resolves with `{err, result}`.
 */
function uploadStoppedAt(client, params, atBytes, how = 'cancel') {
  let handle;
  return uploadWithCallback(client, {
    ...params,
    ResumeCallback: (hd) => {
      handle = hd;
    },
    ProgressCallback: (transferred) => {
      if (transferred >= atBytes && handle) handle[how]();
    },
  });
}

module.exports = {
  useServer,
  uploadStoppedAt,
  MB,
  BUCKET,
  startServer,
  ObsClient,
  ReferenceClient,
  uniqueKey,
  tempDir,
  makeFile,
  clientFor,
  referenceClientFor,
  readBack,
  newUploads,
  markUploads,
  expectUploaded,
  isComplete,
  completes,
  partPuts,
  passOn,
  sealRecord,
  partsRecorded,
  slowParts,
  acceptedConnections,
  connectionsSince,
  faultsFired,
  mostInFlight,
  uploadWithCallback,
};
