'use strict';
// obs-native inside the host's life: uploads from worker threads, a worker
// terminated mid-upload (its uploads stop as if cancelled: a record is kept
// for a later call, an upload without one is aborted on the server), a
// process whose only user of obs-native is a worker, process.exit() while
// uploads run, and many uploads at once in a process with few file
// descriptors.

const { execFile, spawn } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');
const { Worker } = require('node:worker_threads');
const h = require('./helpers');

jest.setTimeout(120000);

const { MB, BUCKET } = h;
const WORKER = path.join(__dirname, 'fixtures', 'upload-worker.js');
const WORKER_ONLY_CHILD = path.join(__dirname, 'fixtures', 'worker-only-child.js');
const EXIT_CHILD = path.join(__dirname, 'fixtures', 'exit-child.js');
const MANY_CHILD = path.join(__dirname, 'fixtures', 'many-uploads-child.js');
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const ctx = h.useServer();
let file;

beforeAll(() => {
  // 6 parts of 5 MiB: each part is held 200 ms at the server (below), so a
  // worker stopped after part 1 has most of its upload still to do.
  file = h.makeFile(ctx.dir, 30 * MB);
});

/** Every part PUT of `key` waits 200 ms at the server before it is read. */
const slowParts = (key) => h.slowParts(ctx.server, key, 200);

/** Starts an upload in a worker; with exitAtProgress the worker calls process.exit(9) once progressAt bytes were reported. */
function startWorker(params, progressAt, exitAtProgress = false) {
  const s = ctx.server;
  const worker = new Worker(WORKER, { workerData: { endpoint: s.endpoint, accessKey: s.accessKey, secretKey: s.secretKey, params, progressAt, exitAtProgress } });
  const messages = [];
  const waiters = [];
  // Listened for from the start: the exit may come right after a message.
  const exited = new Promise((r) => worker.once('exit', r));
  worker.on('message', (m) => {
    messages.push(m);
    for (const w of waiters.splice(0)) w();
  });
  const next = async (type) => {
    for (;;) {
      const m = messages.find((x) => x.type === type);
      if (m) return m;
      await new Promise((r) => waiters.push(r));
    }
  };
  return { worker, next, exited };
}

const requestsFor = async (key) => (await ctx.server.stats()).requests.filter((r) => r.path.endsWith(`/${key}`));
const partNumbersStored = (requests) =>
  requests.filter((r) => r.method === 'PUT' && r.status === 200 && /partNumber=/.test(r.query)).map((r) => Number(/partNumber=(\d+)/.exec(r.query)[1]));

async function until(what, check, ms = 10000) {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (await check()) return;
    await sleep(50);
  }
  throw new Error(`timed out waiting for: ${what}`);
}

test('two workers upload at once; both objects read back byte for byte', async () => {
  const keys = [h.uniqueKey('worker-a'), h.uniqueKey('worker-b')];
  const runs = keys.map((Key) => startWorker({ Bucket: BUCKET, Key, UploadFile: file, PartSize: 5 * MB, TaskNum: 3 }));
  const ends = await Promise.all(runs.map((r) => r.next('end')));
  await Promise.all(runs.map((r) => r.worker.terminate()));
  expect(ends).toEqual([
    { type: 'end', code: null, status: 200 },
    { type: 'end', code: null, status: 200 },
  ]);
  for (const key of keys) await h.expectUploaded(ctx.server, key, file);
});

test('a worker terminated mid-upload with a checkpoint: the upload stops and keeps its record; the main thread resumes it, sending only the parts not stored', async () => {
  const key = h.uniqueKey('worker-cp');
  const record = path.join(ctx.dir, `${key}.record`);
  await slowParts(key);
  const params = { Bucket: BUCKET, Key: key, UploadFile: file, PartSize: 5 * MB, TaskNum: 2, EnableCheckpoint: true, CheckpointFile: record };
  const run = startWorker(params);
  await until('a part recorded as done', () => h.partsRecorded(record) >= 1);
  await run.worker.terminate();

  // Long enough for the 5 parts left to be stored and completed (about 0.6 s)
  // had the upload gone on without its worker.
  await sleep(1500);
  const before = await requestsFor(key);
  expect(before.filter(h.isComplete)).toEqual([]);
  const stored = JSON.parse(fs.readFileSync(record, 'utf8'));
  expect(await h.newUploads(ctx.server)).toEqual([stored.uploadId]);
  const done = Object.entries(stored.partsMeta).filter(([, p]) => p.isCompleted).map(([n]) => Number(n));
  expect(done.length).toBeGreaterThanOrEqual(1);
  expect(done.length).toBeLessThan(6);
  // Nothing more is sent once the record was read: the upload is at rest.
  await sleep(500);
  expect((await requestsFor(key)).length).toBe(before.length);

  // A part dropped by the cancel after its whole body had reached the server
  // can be stored without being recorded: the resume finds it in the list.
  const ref = await h.referenceClientFor(ctx.server);
  const listed = await ref.listParts({ Bucket: BUCKET, Key: key, UploadId: stored.uploadId });
  const onServer = listed.InterfaceResult.Parts.map((p) => Number(p.PartNumber));
  expect(onServer).toEqual(expect.arrayContaining(done));

  await ctx.server.resetStats();
  const result = await ctx.client.uploadFile(params);
  expect(result.CommonMsg.Status).toBe(200);
  const resent = partNumbersStored(await requestsFor(key));
  expect(resent.filter((n) => onServer.includes(n))).toEqual([]);
  expect([...onServer, ...resent].sort((a, b) => a - b)).toEqual([1, 2, 3, 4, 5, 6]);
  expect(fs.existsSync(record)).toBe(false);
  await h.expectUploaded(ctx.server, key, file);
});

test.each([
  ['terminated', 'terminate'],
  ['that calls process.exit()', 'exit'],
])('a worker %s mid-upload without a checkpoint: its multipart upload is aborted and no object is made', async (_name, how) => {
  const key = h.uniqueKey('worker-nocp');
  await slowParts(key);
  const run = startWorker({ Bucket: BUCKET, Key: key, UploadFile: file, PartSize: 5 * MB, TaskNum: 2 }, 5 * MB + 1, how === 'exit');
  await run.next('progress');
  if (how === 'terminate') await run.worker.terminate();
  else expect(await run.exited).toBe(9);
  await until('the upload aborted', async () => (await requestsFor(key)).some((r) => r.method === 'DELETE' && r.status === 204));
  await sleep(1000);
  expect(await h.newUploads(ctx.server)).toEqual([]);
  expect((await requestsFor(key)).filter(h.isComplete)).toEqual([]);
  await expect(h.readBack(ctx.server, key)).rejects.toThrow(/404/);
});

test('a process whose only user of obs-native is a worker: the terminated worker\'s upload is still aborted, and a later worker uploads', async () => {
  const s = ctx.server;
  const first = h.uniqueKey('only-worker-1');
  const second = h.uniqueKey('only-worker-2');
  await slowParts(first);
  const spec = {
    endpoint: s.endpoint,
    accessKey: s.accessKey,
    secretKey: s.secretKey,
    first: { Bucket: BUCKET, Key: first, UploadFile: file, PartSize: 5 * MB, TaskNum: 2 },
    second: { Bucket: BUCKET, Key: second, UploadFile: file, PartSize: 5 * MB, TaskNum: 2 },
    progressAt: 5 * MB + 1,
  };
  const child = spawn(process.execPath, [WORKER_ONLY_CHILD, JSON.stringify(spec)], { stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  let stderr = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (stderr += d));
  const exited = new Promise((resolve) => child.on('close', (code, signal) => resolve({ code, signal })));
  const lines = () => out.split('\n').filter(Boolean).map((l) => JSON.parse(l));
  try {
    await until('the second upload', () => lines().some((l) => l.step === 'second' || l.step === 'failed'), 60000);
    expect(lines()).toEqual([{ step: 'terminated' }, { step: 'second', code: null, status: 200 }]);
    // The process lives on (its stdin is open), and so does the upload's runtime.
    await until('the first upload aborted', async () => (await requestsFor(first)).some((r) => r.method === 'DELETE' && r.status === 204));
    expect(await h.newUploads(s)).toEqual([]);
    await expect(h.readBack(s, first)).rejects.toThrow(/404/);
    await h.expectUploaded(s, second, file);
  } finally {
    child.stdin.end();
    let timer;
    const end = await Promise.race([exited, new Promise((r) => (timer = setTimeout(r, 10000, 'still running')))]);
    clearTimeout(timer);
    if (end === 'still running') child.kill('SIGKILL');
    expect({ end, stderr }).toEqual({ end: { code: 0, signal: null }, stderr: '' });
  }
});

test('process.exit() while four uploads run ends the process with that code, not a crash; the records left resume', async () => {
  const s = ctx.server;
  const keys = [0, 1, 2, 3].map((i) => h.uniqueKey(`exit-${i}`));
  const records = keys.map((k, i) => (i % 2 === 0 ? path.join(ctx.dir, `${k}.record`) : null));
  for (const key of keys) await slowParts(key);
  const spec = { endpoint: s.endpoint, accessKey: s.accessKey, secretKey: s.secretKey, bucket: BUCKET, keys, file, records, exitAt: 5 * MB + 1 };
  const child = spawn(process.execPath, [EXIT_CHILD, JSON.stringify(spec)], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let stderr = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (stderr += d));
  const end = await new Promise((resolve) => child.on('close', (code, signal) => resolve({ code, signal })));
  expect({ end, out, stderr }).toEqual({ end: { code: 7, signal: null }, out: '', stderr: '' });

  for (const [i, key] of keys.entries()) {
    if (!records[i]) continue;
    expect(fs.existsSync(records[i])).toBe(true);
    const result = await ctx.client.uploadFile({ Bucket: BUCKET, Key: key, UploadFile: file, PartSize: 5 * MB, EnableCheckpoint: true, CheckpointFile: records[i] });
    expect(result.CommonMsg.Status).toBe(200);
    expect(fs.existsSync(records[i])).toBe(false);
    const got = await h.readBack(s, key);
    expect(got.equals(fs.readFileSync(file))).toBe(true);
  }
});

// 60 uploads at once (half with a checkpoint record), 2 parts each, TaskNum
// 4, in a process limited to 64 file descriptors, of which Node itself holds
// about 20: they need more than that at once (a file and a lock each, a
// connection per part in flight). Every one completes: what needs a
// descriptor waits for one, and uploads past an eighth of the limit wait
// their turn before they open anything.
describe.each([
  ['HTTP', null],
  ['HTTPS', { cert: path.join(__dirname, 'fixtures', 'tls', 'cert.pem'), key: path.join(__dirname, 'fixtures', 'tls', 'key.pem') }],
])('many uploads at once in a process with few file descriptors (%s)', (_name, tls) => {
  let server;
  beforeAll(async () => {
    server = await h.startServer({ tls: tls || undefined });
  });
  afterAll(() => server.close());

  test('60 uploads under `ulimit -n 64` all complete and read back; no upload or record is left', async () => {
    const small = h.makeFile(ctx.dir, 5 * MB + 4096);
    const keys = Array.from({ length: 60 }, (_, i) => h.uniqueKey(`fds-${i}`));
    const recordDir = fs.mkdtempSync(path.join(ctx.dir, 'records-'));
    const spec = { endpoint: server.endpoint, accessKey: server.accessKey, secretKey: server.secretKey, bucket: BUCKET, keys, file: small, partSize: 5 * MB, taskNum: 4, recordDir };
    const out = await new Promise((resolve, reject) =>
      execFile('bash', ['-c', 'ulimit -n 64 && exec "$0" "$@"', process.execPath, MANY_CHILD, JSON.stringify(spec)], { encoding: 'utf8', timeout: 90000 }, (err, stdout, stderr) =>
        err ? reject(new Error(`${err.message}\n${stdout}\n${stderr}`)) : resolve(stdout),
      ),
    );
    const errors = JSON.parse(out.trim().split('\n').pop());
    expect(errors).toEqual(keys.map(() => null));
    const want = fs.readFileSync(small);
    for (const key of keys) expect((await h.readBack(server, key)).equals(want)).toBe(true);
    expect(await server.uploads()).toEqual([]);
    expect(fs.readdirSync(recordDir)).toEqual([]);
  });
});
