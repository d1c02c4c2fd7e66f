'use strict';
// obs-native survives kill -9. A child process (fixtures/upload-child.js)
// runs uploadFile with a checkpoint and is killed with SIGKILL at moments a
// seeded PRNG picks; then it is run again until it reports success. Each
// object must read back byte for byte, no multipart upload may be left, the
// record must be gone, and the part bytes the server received may exceed the
// file size by at most TaskNum x PartSize per kill (the parts in flight).
//
// The seed is fixed below and can be changed with KILL_SEED=<n>; it is in
// every failure message. Kill moments are drawn from what the server has
// seen (part PUTs that arrived in this run), so they land mid-upload however
// fast the machine is; the exact timing still varies from run to run.
// KILL_VERBOSE=1 prints every round's runs.

const { spawn } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');
const h = require('./helpers');

jest.setTimeout(300000);

const { MB } = h;
const SEED = process.env.KILL_SEED !== undefined ? Number(process.env.KILL_SEED) >>> 0 : 0x5eed0b5;
const CHILD = path.join(__dirname, 'fixtures', 'upload-child.js');

const KILLS_PER_CASE = 7;
const MIN_KILLS_TOTAL = 20;
/** Every part PUT waits this long at the server before it is read, so that kills land mid-upload. */
const PART_DELAY_MS = 40;
/** After the chosen part PUT arrived, the kill waits 0..this many ms. */
const MAX_KILL_DELAY_MS = 60;
/** A run that takes longer than this is a run that never finishes. */
const RUN_TIMEOUT_MS = 60000;
/** Runs without a kill at the end of a round, until one reports DONE. */
const FINAL_ATTEMPTS = 3;
/** Rounds (each a new key) per case; a round ends early when a run completes before its kill. */
const MAX_ROUNDS = 8;
/** A round that needs more runs than this is going nowhere. */
const MAX_RUNS_PER_ROUND = 40;

const CASES = [
  { name: '40MiB+123 part 5MiB x4', size: 40 * MB + 123, partSize: 5 * MB, taskNum: 4 },
  { name: '33MiB part 6MiB x2', size: 33 * MB, partSize: 6 * MB, taskNum: 2 },
  // s3s-fs refuses non-last parts under 5 MiB.
  { name: '26MiB+1 part 5MiB x1', size: 26 * MB + 1, partSize: 5 * MB, taskNum: 1 },
];

/** mulberry32: a tiny seeded PRNG; returns floats in [0, 1). */
function mulberry32(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** An integer in [lo, hi]. */
const between = (rng, lo, hi) => lo + Math.floor(rng() * (hi - lo + 1));
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const ctx = h.useServer();
let server;
let dir;
const children = new Set();
const killsLanded = {};

beforeAll(() => {
  ({ server, dir } = ctx);
});

afterAll(() => {
  for (const child of children) child.kill('SIGKILL');
});

const isPartPut = (r, key) => r.method === 'PUT' && /(^|&)partNumber=/.test(r.query) && r.path.endsWith(`/${key}`);
const partNumberOf = (r) => Number(/(?:^|&)partNumber=(\d+)/.exec(r.query)[1]);
const uploadIdOf = (r) => (/(?:^|&)uploadId=([^&]*)/.exec(r.query) || [])[1];

async function partPutsFor(key) {
  return (await server.stats()).requests.filter((r) => isPartPut(r, key));
}

/** Parts of the key's latest multipart upload that the server has answered with 200. */
async function partsOnServer(key) {
  const puts = await partPutsFor(key);
  if (puts.length === 0) return 0;
  const id = uploadIdOf(puts[puts.length - 1]);
  return new Set(puts.filter((r) => uploadIdOf(r) === id && r.status === 200).map(partNumberOf)).size;
}

function specFor(key, file, c) {
  return {
    endpoint: server.endpoint,
    accessKey: server.accessKey,
    secretKey: server.secretKey,
    bucket: h.BUCKET,
    key,
    file,
    partSize: c.partSize,
    taskNum: c.taskNum,
    maxRetryCount: 3,
  };
}

/**
 * Runs the child once. With `kill = {afterPuts, delayMs}`, SIGKILLs it
 * `delayMs` after the server has seen `afterPuts` more part PUTs for the key
 * than `kill.before`. Resolves `{out, stderr, code, signal, landed}`;
 * `landed` is true when the kill met a child that had not finished (and
 * printed nothing).
 */
function runChild(spec, kill) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CHILD, JSON.stringify(spec)], { stdio: ['ignore', 'pipe', 'pipe'] });
    children.add(child);
    let out = '';
    let stderr = '';
    let exited = false;
    child.stdout.on('data', (d) => {
      out += d;
    });
    child.stderr.on('data', (d) => {
      stderr = (stderr + d).slice(-4000);
    });
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`the child did not finish within ${RUN_TIMEOUT_MS} ms; output: ${JSON.stringify(out)} stderr: ${stderr}`));
    }, RUN_TIMEOUT_MS);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on('exit', () => {
      exited = true;
    });
    // After 'exit', once the pipes are drained.
    child.on('close', (code, signal) => {
      exited = true;
      clearTimeout(timer);
      children.delete(child);
      out = out.trim();
      resolve({ out, stderr, code, signal, landed: signal === 'SIGKILL' && out === '' });
    });
    if (!kill) return;
    (async () => {
      while (!exited) {
        const seen = (await partPutsFor(spec.key)).length - kill.before;
        if (seen >= kill.afterPuts) {
          if (kill.delayMs > 0) await sleep(kill.delayMs);
          if (!exited) child.kill('SIGKILL');
          return;
        }
        await sleep(3);
      }
    })().catch((e) => {
      child.kill('SIGKILL');
      reject(e);
    });
  });
}

/** The part PUTs after the first `before`, as part:status:bytes. */
async function putsSince(key, before) {
  const puts = (await partPutsFor(key)).slice(before);
  return puts.length ? puts.map((r) => `${partNumberOf(r)}:${r.status}:${r.body_bytes}`).join(' ') : '(none)';
}

/** What a failure message needs to reproduce the round. */
async function reproduction(ctx) {
  const lines = [`KILL_SEED=${SEED} case "${ctx.c.name}" round ${ctx.round} key ${ctx.key}`, ...ctx.log];
  const record = `${ctx.file}.upload_record`;
  lines.push(`record: ${fs.existsSync(record) ? fs.readFileSync(record, 'utf8') : '(none)'}`);
  try {
    const puts = await partPutsFor(ctx.key);
    lines.push(`upload ids of the part PUTs: ${JSON.stringify([...new Set(puts.map(uploadIdOf))])}`);
    const others = (await server.stats()).requests.filter((r) => r.path.endsWith(`/${ctx.key}`) && !isPartPut(r, ctx.key));
    lines.push(`other requests: ${others.map((r) => `${r.method} ?${r.query.replace(/uploadId=[^&]*/, 'uploadId=…')} -> ${r.status}`).join(' | ')}`);
    lines.push(`uploads open: ${JSON.stringify(await server.uploads())}, orphan parts: ${JSON.stringify(await server.orphanParts())}`);
  } catch (e) {
    lines.push(`(stats unavailable: ${e})`);
  }
  return lines.join('\n');
}

async function check(ctx, ok, what) {
  if (!ok) throw new Error(`${what}\n${await reproduction(ctx)}`);
}

/**
 * One round: a new key, kills until the case has its kills or a run
 * completes first, then runs without a kill until DONE; then the checks.
 * Returns the kills that landed.
 */
async function round(c, rng, file, roundNo, wanted) {
  const key = h.uniqueKey('kill');
  const spec = specFor(key, file, c);
  const partCount = Math.ceil(c.size / c.partSize);
  const ctx = { c, round: roundNo, key, file, log: [] };
  let landed = 0;
  let done = null;
  let run = 0;
  while (!done && landed < wanted) {
    await check(ctx, run < MAX_RUNS_PER_ROUND, `${run} runs and the upload is still not done`);
    const missing = partCount - (await partsOnServer(key));
    if (missing <= 0) break; // nothing left to send: only the completion, which the final run does
    // Kills while the initiate request is in flight can orphan an upload id
    // the client never recorded (no client can avoid that), so no kill lands
    // before the first part PUT of a run: afterPuts >= 1.
    const before = (await partPutsFor(key)).length;
    const kill = { before, afterPuts: between(rng, 1, missing), delayMs: between(rng, 0, MAX_KILL_DELAY_MS) };
    run += 1;
    const r = await runChild(spec, kill);
    // Let the server finish with requests the dead child left behind (a part
    // whose body was all sent may still be stored), so the next count is right.
    await sleep(PART_DELAY_MS + 100);
    ctx.log.push(
      `run ${run}: ${missing} parts missing, kill after ${kill.afterPuts} part PUTs + ${kill.delayMs} ms -> ` +
        `${r.landed ? 'killed' : `exit ${r.code} ${r.signal || ''}`} ${JSON.stringify(r.out)}${r.stderr ? ` stderr: ${r.stderr}` : ''}; ` +
        `part PUTs ${await putsSince(key, before)}`,
    );
    if (r.landed && !fs.existsSync(`${file}.upload_record`)) {
      // The record is written before the upload is initiated and removed when
      // it ends, so this child had finished (its DONE line not yet printed):
      // the kill came too late. Any other reason would show in the checks below.
      ctx.log.push(`run ${run}: the record is gone: the upload had ended before the kill`);
      done = 'ENDED';
    } else if (r.landed) landed += 1;
    else if (r.out.startsWith('DONE ')) done = r.out;
  }
  for (let attempt = 1; !done && attempt <= FINAL_ATTEMPTS; attempt += 1) {
    const before = (await partPutsFor(key)).length;
    run += 1;
    const r = await runChild(spec, null);
    ctx.log.push(
      `run ${run}: no kill (attempt ${attempt}) -> exit ${r.code} ${r.signal || ''} ${JSON.stringify(r.out)}` +
        `${r.stderr ? ` stderr: ${r.stderr}` : ''}; part PUTs ${await putsSince(key, before)}`,
    );
    if (r.out.startsWith('DONE ')) done = r.out;
  }
  await check(ctx, done, `the upload did not end with DONE after ${FINAL_ATTEMPTS} runs without a kill`);
  if (done !== 'ENDED') {
    const result = JSON.parse(done.slice('DONE '.length));
    await check(ctx, result.Key === key && result.Bucket === h.BUCKET, `DONE names another object: ${done}`);
  }

  const got = await h.readBack(server, key);
  const want = fs.readFileSync(file);
  await check(ctx, got.length === want.length && got.equals(want), `object differs from the file (${got.length} bytes read back, ${want.length} in the file)`);
  const left = await h.newUploads(server);
  await check(ctx, left.length === 0, `multipart uploads left behind: ${JSON.stringify(left)}`);
  await check(ctx, !fs.existsSync(`${file}.upload_record`), 'the record file is still there');
  const leftovers = fs.readdirSync(dir).filter((n) => n.includes(`${path.basename(file)}.upload_record`));
  await check(ctx, leftovers.length === 0, `files the kills left beside the record: ${leftovers.join(' ')}`);
  const sent = (await partPutsFor(key)).reduce((sum, r) => sum + r.body_bytes, 0);
  const allowed = c.size + landed * c.taskNum * c.partSize;
  await check(ctx, sent <= allowed, `part bytes received ${sent} > file size ${c.size} + ${landed} kills x ${c.taskNum} x ${c.partSize} = ${allowed}`);
  if (process.env.KILL_VERBOSE) {
    process.stderr.write(`${await reproduction(ctx)}\npart bytes ${sent} of ${allowed} allowed (file ${c.size})\n\n`);
  }
  return landed;
}

describe('kill -9 at seeded moments, then run again until done', () => {
  beforeEach(async () => {
    // Each part waits at the server, so the upload lasts long enough to be killed in.
    await server.addFault({ method: 'PUT', query: { partNumber: null }, times: 0, action: { delay_ms: PART_DELAY_MS } });
  });

  test.each(CASES.map((c, i) => [c.name, c, i]))('%s', async (_name, c, i) => {
    const rng = mulberry32((SEED + Math.imul(i + 1, 0x9e3779b9)) >>> 0);
    const file = h.makeFile(dir, c.size);
    let landed = 0;
    let rounds = 0;
    while (landed < KILLS_PER_CASE && rounds < MAX_ROUNDS) {
      rounds += 1;
      landed += await round(c, rng, file, rounds, KILLS_PER_CASE - landed);
    }
    killsLanded[c.name] = landed;
    if (landed < KILLS_PER_CASE) {
      throw new Error(`KILL_SEED=${SEED} case "${c.name}": only ${landed} kills landed in ${rounds} rounds`);
    }
  });

  test(`at least ${MIN_KILLS_TOTAL} kills landed in all`, () => {
    const total = Object.values(killsLanded).reduce((a, b) => a + b, 0);
    if (total < MIN_KILLS_TOTAL) {
      throw new Error(`KILL_SEED=${SEED}: ${total} kills landed (${JSON.stringify(killsLanded)})`);
    }
  });
});

// A kill while the complete is under way: the record on disk names every
// part but the last to finish (its write waits for the complete, which
// removes the record when it succeeds). The next call finds that part in the server's
// list, or, when the store completed the object, in the object, hashing the
// file's bytes for the parts the record misses; it sends no part again.
const KILLED_DURING_COMPLETE = [
  // The store completes the object at once and holds its answer 3 s.
  { name: 'after the store completed; it lists the upload as having no parts', completed: true, fault: { respond_after_ms: 3000 } },
  // S3 and OBS answer NoSuchUpload for a completed upload.
  { name: 'after the store completed; it answers NoSuchUpload', completed: true, fault: { respond_after_ms: 3000 }, listing: { status: 404, code: 'NoSuchUpload', message: 'gone' } },
  // The complete never reaches the store: nothing completed.
  { name: 'before the store completed', completed: false, fault: { hang: true } },
];

test.each(KILLED_DURING_COMPLETE)('killed during CompleteMultipartUpload, $name: the next call succeeds without sending a part again', async (v) => {
  const c = { partSize: 5 * MB, taskNum: 2 };
  const size = 2 * c.partSize + 1;
  const file = h.makeFile(dir, size);
  const key = h.uniqueKey('kill-complete');
  const spec = specFor(key, file, c);
  const record = `${file}.upload_record`;
  const ctx = { c: { name: `kill during complete, ${v.name}` }, round: 1, key, file, log: [] };
  await server.addFault({ method: 'POST', path_contains: key, query: { uploadId: null }, action: v.fault });
  const ref = await h.referenceClientFor(server);
  const child = spawn(process.execPath, [CHILD, JSON.stringify(spec)], { stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  let out = '';
  child.stdout.on('data', (d) => {
    out += d;
  });
  const exited = new Promise((resolve) => child.on('close', (code, signal) => resolve({ code, signal })));
  const deadline = Date.now() + 30000;
  let ready = false;
  while (!ready && Date.now() < deadline && child.exitCode === null) {
    const { requests } = await server.stats();
    const arrived = requests.some((r) => h.isComplete(r) && r.path.endsWith(`/${key}`));
    if (arrived && v.completed) {
      const head = await ref.getObjectMetadata({ Bucket: h.BUCKET, Key: key });
      ready = head.CommonMsg.Status === 200;
    } else {
      ready = arrived;
    }
    if (!ready) await sleep(10);
  }
  // Any record write under way when the complete left has ended by now.
  if (ready) await sleep(200);
  const onDisk = fs.existsSync(record) ? JSON.parse(fs.readFileSync(record, 'utf8')) : null;
  child.kill('SIGKILL');
  children.delete(child);
  const first = await exited;
  ctx.log.push(`run 1: killed during the complete -> ${JSON.stringify(first)} ${JSON.stringify(out)}; record then: ${JSON.stringify(onDisk)}`);
  await check(ctx, ready, v.completed ? 'the store never completed the object' : 'the complete never arrived');
  await check(ctx, first.signal === 'SIGKILL' && out === '', 'the child finished before it was killed');
  await check(ctx, onDisk !== null && onDisk.uploadId, 'no record naming the upload after the kill');
  const named = Object.values(onDisk.partsMeta || {}).filter((p) => p.isCompleted).length;
  await check(ctx, named === 2, `the record named ${named} of the 3 parts while the complete was under way, not all but the last to finish`);

  await server.clearFaults();
  if (v.listing) await server.addFault({ method: 'GET', path_contains: key, query: { uploadId: null }, action: v.listing });
  await server.resetStats();
  const second = await runChild(spec, null);
  await server.clearFaults();
  ctx.log.push(`run 2: ${JSON.stringify(second)}`);
  await check(ctx, second.out.startsWith('DONE '), 'the second call did not report success');
  const result = JSON.parse(second.out.slice('DONE '.length));
  await check(ctx, result.Key === key && /^"?[0-9a-f]{32}-3"?$/.test(result.ETag), `unexpected result ${second.out}`);
  const puts = await partPutsFor(key);
  await check(ctx, puts.length === 0, `the second call sent ${puts.length} parts again`);
  const completes = (await server.stats()).requests.filter((r) => h.isComplete(r) && r.path.endsWith(`/${key}`));
  await check(ctx, completes.length === (v.completed ? 0 : 1), `the second call sent ${completes.length} completes`);
  await check(ctx, !fs.existsSync(record), 'the record is still there');
  const got = await h.readBack(server, key);
  await check(ctx, got.equals(fs.readFileSync(file)), 'object differs from the file');
  const left = await h.newUploads(server);
  await check(ctx, left.length === 0, `multipart uploads left behind: ${JSON.stringify(left)}`);
});

test('a record another process is uploading with is refused (CheckpointFileInUse); once that process is killed, the record resumes at once', async () => {
  const c = { partSize: 5 * MB, taskNum: 1 };
  const file = h.makeFile(dir, 3 * c.partSize);
  const key = h.uniqueKey('kill-held');
  const spec = specFor(key, file, c);
  const record = `${file}.upload_record`;
  const ctx = { c: { name: 'record held by another process' }, round: 1, key, file, log: [] };
  // The child's part 2 waits at the server, so it is surely mid-upload.
  await server.addFault({ method: 'PUT', path_contains: key, query: { partNumber: '2' }, action: { delay_ms: 20000 } });
  const child = spawn(process.execPath, [CHILD, JSON.stringify(spec)], { stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  const exited = new Promise((resolve) => child.on('close', (code, signal) => resolve({ code, signal })));
  const deadline = Date.now() + 30000;
  while ((await partsOnServer(key)) < 1 && Date.now() < deadline && child.exitCode === null) await sleep(10);
  await check(ctx, (await partsOnServer(key)) === 1 && child.exitCode === null, 'the child did not get to part 2');

  const client = h.clientFor(server);
  const params = { Bucket: h.BUCKET, Key: key, UploadFile: file, PartSize: c.partSize, EnableCheckpoint: true };
  const refused = await h.uploadWithCallback(client, params);
  expect(refused.err && refused.err.code).toBe('CheckpointFileInUse');

  child.kill('SIGKILL');
  children.delete(child);
  ctx.log.push(`child: ${JSON.stringify(await exited)}`);
  await server.clearFaults();
  const before = (await partPutsFor(key)).length;
  const resumed = await client.uploadFile(params);
  expect(resumed.CommonMsg.Status).toBe(200);
  const sent = (await partPutsFor(key)).slice(before).map(partNumberOf).sort();
  expect(sent).toEqual([2, 3]);
  await h.expectUploaded(server, key, file);
  expect(fs.existsSync(record)).toBe(false);
  expect(fs.readdirSync(dir).filter((n) => n.includes(path.basename(record)))).toEqual([]);
});
