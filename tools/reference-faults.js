#!/usr/bin/env node
'use strict';
// What the REFERENCE SDK (esdk-obs-nodejs, the devDependency) does under the
// faults obs-native is tested against, measured by running it against the test
// server. Prints a Markdown table, one row per reference call:
//
//   CARGO_TARGET_DIR=/root/.cache/obs-native-target node tools/reference-faults.js [--only 1a,3,15]
//
// Every scenario mirrors an obs-native test (named in its first column): same
// sizes, part sizes, TaskNum, retries and fault timing. Each reference call runs
// in a child process of this script (`--child <json>`), so a crash or a hang is
// observed, not fatal; a call that has not called back after REF_CALL_TIMEOUT_S
// (default 60) seconds is reported as "never calls back". After its first
// callback the child waits GRACE_MS more to see whether the reference calls back
// again or throws. The parent sets faults, reads the server's request log,
// inspects the record and reads the object back (reference getObject) after
// every call.
//
// Some rows depend on races inside the reference SDK and vary from run to run
// (seen over three runs): 1a/1b/1d call 2 (two CompleteMultipartUploads race;
// the loser gets 403 or 500, so the first callback is `AccessDenied` or
// `IncompletedUpload:Status:500...`, the second is success), 8 call 1 (part 1
// done or not when the port stops), 10b and 12a call 1 (an early 403 on a part
// PUT reaches the SDK either as a 403 answer, then it aborts and reports the
// code, or as a broken pipe, then it reports IncompletedUpload). The essentials
// (object, upload, record, fails-forever) did not vary.
//
// Legend of the last column: p3 = UploadPart 3; `*` = the answer came from a
// fault rule; `∅` = no answer reached the client (reset, hang, dropped, killed),
// with the body bytes the server read; `auth:` counts how requests were signed.

const { spawn } = require('node:child_process');
const fs = require('node:fs');
const http = require('node:http');
const path = require('node:path');
const { controlCall } = require('../__test__/kit/server.js');

const MB = 1024 * 1024;
const PART = 5 * MB;
const BUCKET = 'test-bucket';
const CALL_TIMEOUT_MS = Number(process.env.REF_CALL_TIMEOUT_S || 60) * 1000;
const GRACE_MS = 600;

// ---------------------------------------------------------------------------
// Child: one reference uploadFile call.
// spec: {client, localAgentPort?, refresh?, params, trigger?, controlPort?, timeoutMs, graceMs}
// trigger: {atBytes, action: 'abort' | 'cancel' | 'control', method, route, body}
// Prints one line: RESULT <json {calls, timedOut, uncaught, triggered}>
// ---------------------------------------------------------------------------


async function childMain(spec) {
  const ObsClient = require('esdk-obs-nodejs');
  const out = { calls: [], timedOut: false, uncaught: [], triggered: null };
  let printed = false;
  const finish = () => {
    if (printed) return;
    printed = true;
    process.stdout.write(`RESULT ${JSON.stringify(out)}\n`, () => process.exit(0));
  };
  process.on('uncaughtException', (e) => out.uncaught.push(String((e && e.stack) || e).split('\n').slice(0, 3).join(' / ')));
  process.on('unhandledRejection', (e) => out.uncaught.push(`unhandledRejection ${String((e && e.stack) || e).split('\n')[0]}`));

  const options = { ...spec.client };
  if (spec.localAgentPort) {
    class LocalAgent extends http.Agent {
      createConnection(o, cb) {
        return super.createConnection({ ...o, host: '127.0.0.1', port: spec.localAgentPort }, cb);
      }
    }
    options.http_agent = new LocalAgent({ keepAlive: true });
  }
  const client = new ObsClient(options);
  await new Promise((r) => setImmediate(r));
  if (spec.refresh) client.refresh(...spec.refresh);

  const params = { ...spec.params };
  const t0 = Date.now();
  if (spec.trigger) {
    let handle;
    params.ResumeCallback = (hd) => {
      handle = hd;
    };
    params.ProgressCallback = (transferred) => {
      if (out.triggered || transferred < spec.trigger.atBytes) return;
      out.triggered = { atBytes: transferred, ms: Date.now() - t0 };
      if (spec.trigger.action === 'abort') handle.abort();
      else if (spec.trigger.action === 'cancel') handle.cancel();
      else if (spec.trigger.action === 'truncate') require('node:fs').truncateSync(spec.params.UploadFile, spec.trigger.size);
      else {
        controlCall(spec.controlPort, spec.trigger.method, spec.trigger.route, spec.trigger.body).catch((e) => {
          out.triggered.error = String(e);
        });
      }
    };
  }
  // Neither timer keeps the process alive: when the SDK has nothing left in
  // flight and has not called back, the event loop runs empty ('beforeExit'),
  // which a plain script would see as a silent exit with code 0.
  setTimeout(() => {
    if (out.calls.length === 0) out.timedOut = true;
    finish();
  }, spec.timeoutMs).unref();
  process.on('beforeExit', () => {
    if (out.calls.length === 0 && out.loopEmptied === undefined) out.loopEmptied = Date.now() - t0;
    finish();
  });
  client.uploadFile(params, (err, result) => {
    const cm = result && result.CommonMsg;
    const ir = result && result.InterfaceResult;
    out.calls.push({
      ms: Date.now() - t0,
      err: err === null || err === undefined ? null : String(err),
      errType: err === null || err === undefined ? null : typeof err,
      status: cm ? cm.Status : undefined,
      code: cm ? cm.Code : undefined,
      etag: ir ? ir.ETag : undefined,
      key: ir ? ir.Key : undefined,
    });
    if (out.calls.length === 1) setTimeout(finish, spec.graceMs).unref();
  });
}

if (process.argv[2] === '--child') {
  childMain(JSON.parse(process.argv[3])).catch((e) => {
    process.stdout.write(`RESULT ${JSON.stringify({ calls: [], crashed: String((e && e.stack) || e) })}\n`, () => process.exit(1));
  });
  return;
}

// ---------------------------------------------------------------------------
// Parent.
// ---------------------------------------------------------------------------

const h = require('../__test__/helpers');
const kit = require('../__test__/kit/server.js');

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const children = new Set();
let dir;
let s3;
let obs;

/** Runs one child; `kill(child)` may be given to kill it. Resolves {res, code, signal, stderr, ms}. */
function runChild(spec, onSpawn) {
  return new Promise((resolve) => {
    const t0 = Date.now();
    const child = spawn(process.execPath, [__filename, '--child', JSON.stringify(spec)], { stdio: ['ignore', 'pipe', 'pipe'] });
    children.add(child);
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => {
      stdout += d;
    });
    child.stderr.on('data', (d) => {
      stderr = (stderr + d).slice(-2000);
    });
    const hard = setTimeout(() => child.kill('SIGKILL'), (spec.timeoutMs || CALL_TIMEOUT_MS) + 15000);
    child.on('close', (code, signal) => {
      clearTimeout(hard);
      children.delete(child);
      const line = stdout.split('\n').find((l) => l.startsWith('RESULT '));
      let res = null;
      if (line) {
        try {
          res = JSON.parse(line.slice(7));
        } catch (e) {
          res = null;
        }
      }
      resolve({ res, code, signal, stderr, ms: Date.now() - t0, child });
    });
    if (onSpawn) onSpawn(child);
  });
}

function childSpec(server, { client = {}, params, trigger, refresh, obsFront = false, timeoutMs = CALL_TIMEOUT_MS, graceMs = GRACE_MS }) {
  const base = obsFront
    ? { access_key_id: server.accessKey, secret_access_key: server.secretKey, server: `http://obs.test:${server.port}` }
    : { access_key_id: server.accessKey, secret_access_key: server.secretKey, server: server.endpoint };
  return {
    client: { ...base, ...client },
    localAgentPort: obsFront ? server.port : undefined,
    refresh,
    params,
    trigger,
    controlPort: server.control,
    timeoutMs,
    graceMs,
  };
}

const esc = (s) => String(s).replace(/\|/g, '\\|').replace(/\n/g, ' ');
const fmtBytes = (n) => (n >= MB ? `${(n / MB).toFixed(n % MB ? 2 : 0)} MiB` : `${n} B`);

/** The outcome column of one child run. */
function outcomeOf(run) {
  const { res } = run;
  if (!res) return `child died (exit ${run.code} ${run.signal || ''}) ${run.stderr.split('\n')[0] || ''}`.trim();
  if (res.crashed) return `child threw: ${res.crashed.split('\n')[0]}`;
  const parts = [];
  if (res.timedOut) parts.push(`never calls back (waited ${(CALL_TIMEOUT_MS / 1000).toFixed(0)} s)`);
  if (res.loopEmptied !== undefined) parts.push(`**never calls back**: after ${res.loopEmptied} ms the SDK has nothing pending and the event loop runs empty (a plain script just exits, code 0, no callback)`);
  const fmt = (c) => (c.err !== null ? `\`${c.err}\`${c.errType !== 'string' ? ` (a ${c.errType})` : ''}` : `success (Status ${c.status}, ETag ${c.etag})`);
  if (res.calls.length) parts.push(fmt(res.calls[0]));
  if (res.calls.length > 1) parts.push(`**then called back again** ${res.calls.slice(1).map((c) => `after ${c.ms} ms with ${fmt(c)}`).join(', ')}`);
  if (res.uncaught && res.uncaught.length) parts.push(`**uncaught in the SDK:** ${res.uncaught.join('; ')}`);
  return parts.join('; ');
}
const succeeded = (run) => !!(run.res && run.res.calls.length && run.res.calls[0].err === null);
const errOf = (run) => (run.res && run.res.calls.length ? run.res.calls[0].err : null);

const partNo = (r) => {
  const m = /(?:^|&)partNumber=(\d+)/.exec(r.query || '');
  return m ? Number(m[1]) : null;
};
const isPartPut = (r) => r.method === 'PUT' && partNo(r) !== null;

function labelOf(r) {
  const q = r.query || '';
  if (isPartPut(r)) return `p${partNo(r)}`;
  if (/apiversion/.test(q)) return 'HEAD ?apiversion';
  if (/(^|&)uploads(=|&|$)/.test(q)) return r.method === 'POST' ? 'initiate' : `${r.method} ?uploads`;
  if (/(^|&)uploadId=/.test(q)) return { POST: 'complete', DELETE: 'abort', GET: 'list-parts' }[r.method] || `${r.method} ?uploadId`;
  return `${r.method} object`;
}

/** "initiate 200, p1 200, p2 503*, complete ∅" for the requests of the given keys. */
function describeRequests(requests, keys, { auth = false } = {}) {
  const mine = requests.filter((r) => /apiversion/.test(r.query || '') || keys.some((k) => r.path.endsWith(`/${k}`)));
  // (HEAD object requests are this script's own polling, in scenario 16)
  if (keys.skipHeads) return describeRequests(requests.filter((r) => r.method !== 'HEAD'), keys.slice(), { auth });
  if (!mine.length) return 'no request';
  const items = mine.map((r) => {
    const status = r.status ? String(r.status) : `∅${r.body_bytes ? `(${fmtBytes(r.body_bytes)} read)` : ''}`;
    return `${labelOf(r)} ${status}${r.fault !== null && r.fault !== undefined ? '*' : ''}`;
  });
  let text = items.join(', ');
  if (auth) {
    const counts = {};
    for (const r of mine) counts[r.auth] = (counts[r.auth] || 0) + 1;
    const hosts = [...new Set(mine.map((r) => r.host))];
    text += `; auth: ${Object.entries(counts).map(([k, v]) => `${k}×${v}`).join(' ')}; host ${hosts.join(', ')}`;
  }
  return text;
}

async function objectState(server, key, file) {
  try {
    const got = await h.readBack(server, key);
    const want = fs.readFileSync(file);
    return got.equals(want) ? 'yes' : `**NO** (${got.length} bytes read back, file ${want.length})`;
  } catch (e) {
    return /404/.test(String(e)) ? 'no object' : `read failed: ${String(e).slice(0, 80)}`;
  }
}

function readRecord(recordPath) {
  try {
    return JSON.parse(fs.readFileSync(recordPath, 'utf8'));
  } catch (e) {
    return undefined;
  }
}

async function uploadState(server, record) {
  const base = new Set(server.uploadsBaseline || []);
  const open = (await server.uploads()).filter((id) => !base.has(id));
  const orphanBase = new Set(server.orphanBaseline || []);
  const orphans = (await server.orphanParts()).filter((id) => !orphanBase.has(id));
  const parts = [];
  if (open.length) {
    const recId = record && record.uploadId;
    const mine = open.filter((id) => id === recId).length;
    parts.push(`**yes** (${open.length} open${mine ? ', = the record\'s uploadId' : recId ? ', not the record\'s' : ''})`);
  } else parts.push('no');
  if (orphans.length) parts.push(`+ orphan part files of ${orphans.length} forgotten upload id(s)`);
  return parts.join(' ');
}

function recordState(recordPath, extra = '') {
  if (!fs.existsSync(recordPath)) return 'no';
  if (fs.statSync(recordPath).isDirectory()) return 'a folder (left alone)';
  const rec = readRecord(recordPath);
  if (!rec) return `**yes, unparseable** (${fs.statSync(recordPath).size} bytes)`;
  const done = Object.keys(rec.partsMeta || {}).filter((n) => rec.partsMeta[n] && rec.partsMeta[n].isCompleted);
  return `yes (parts done: ${done.join(',') || 'none'})${extra}`;
}

const rows = [];
function row(scenario, outcome, object, upload, record, happened) {
  rows.push(`| ${esc(scenario)} | ${esc(outcome)} | ${esc(object)} | ${esc(upload)} | ${esc(record)} | ${esc(happened)} |`);
  process.stderr.write(`  ${scenario}: ${outcome}\n`);
}

async function startScenario(server) {
  await server.clearFaults();
  await server.resetStats();
  server.uploadsBaseline = await server.uploads();
  server.orphanBaseline = await server.orphanParts();
}

/**
 * One reference call and its row. opts: {server, label, params, client, trigger,
 * refresh, obsFront, keys, record, note, auth}. Returns the run.
 */
async function call(opts) {
  const { server, label, params } = opts;
  await server.resetStats();
  const run = await runChild(childSpec(server, opts));
  await sleep(150); // let the server finish with whatever the child left in flight
  if (opts.afterRun) await opts.afterRun(run);
  const { requests } = await server.stats();
  const openNow = await server.uploads();
  const recordPath = opts.record || params.CheckpointFile || `${params.UploadFile}.upload_record`;
  const rec = readRecord(recordPath);
  const happened = describeRequests(requests, opts.keys || [params.Key], { auth: opts.auth }) + (opts.note ? `. ${opts.note(run, requests, openNow)}` : '');
  let outcome = outcomeOf(run);
  if (run.res && run.res.triggered) outcome += ` [trigger fired at ${fmtBytes(run.res.triggered.atBytes)}]`;
  row(
    label,
    outcome,
    await objectState(server, params.Key, params.UploadFile),
    await uploadState(server, rec),
    params.EnableCheckpoint ? recordState(recordPath) : fs.existsSync(recordPath) ? 'yes (!)' : 'no (no checkpoint)',
    happened,
  );
  return run;
}

/** Calls again with the same params (no trigger) until one succeeds, `max` calls in all. */
async function callsUntilOk(first, opts, max, what = 'same params') {
  let run = first;
  for (let i = 2; i <= max && !succeeded(run); i += 1) {
    run = await call({ ...opts, trigger: undefined, label: `${opts.base} — call ${i} (${what})` });
  }
  return run;
}

const onPart = (n, action, times = 1) => ({ method: 'PUT', query: { partNumber: String(n) }, times, action });
const COMPLETE = { method: 'POST', query: { uploadId: null } };
const p = (file, extra = {}) => ({ Bucket: BUCKET, Key: h.uniqueKey('ref'), UploadFile: file, PartSize: PART, TaskNum: 2, ...extra });
const partPutNumbers = (requests) => requests.filter((r) => isPartPut(r) && r.status === 200).map(partNo);

// ---------------------------------------------------------------------------
// Scenarios. Each mirrors the obs-native test named in its label.
// ---------------------------------------------------------------------------

const scenarios = [];
const scenario = (id, fn) => scenarios.push({ id, fn });

[
  ['1a', '503 with an XML error body', { status: 503, code: 'ServiceUnavailable', message: 'busy' }],
  ['1b', '500', { status: 500, code: 'InternalError', message: 'oops' }],
  ['1c', '429', { status: 429, code: 'SlowDown', message: 'slow down' }],
  ['1d', 'a connection reset after 1 MiB of body', { reset_after_bytes: 1024 * 1024 }],
].forEach(([id, what, action]) =>
  scenario(id, async () => {
    const server = s3;
    await startScenario(server);
    const file = h.makeFile(dir, 3 * PART + 1);
    const params = p(file, { EnableCheckpoint: true });
    await server.addFault(onPart(2, action));
    const base = `${id}. part 2 fails once with ${what}; 3×5 MiB+1, TaskNum 2, checkpoint [faults.test.js › "a part that fails once with %s is retried and the upload succeeds"]`;
    const first = await call({ server, params, label: `${base} — call 1`, note: (r, reqs) => `part 2 attempts: ${reqs.filter((q) => partNo(q) === 2).length}` });
    await callsUntilOk(first, { server, params, base }, 2, 'same params, fault used up');
  }),
);

scenario('2a', async () => {
  const server = s3;
  await startScenario(server);
  const file = h.makeFile(dir, PART + 1);
  const params = p(file);
  await server.addFault({ method: 'POST', query: { uploads: null }, action: { status: 503, code: 'ServiceUnavailable', message: 'x' } });
  await server.addFault({ ...COMPLETE, action: { status: 500, code: 'InternalError', message: 'x' } });
  const base = '2a. initiate fails once with 503 AND complete fails once with 500 (both rules armed before call 1, as in the test; a rule not yet used stays armed for the next call); 5 MiB+1, no checkpoint [faults.test.js › "initiate and complete are retried too"]';
  const first = await call({ server, params, label: `${base} — call 1` });
  await callsUntilOk(first, { server, params, base }, 3);
});

scenario('2b', async () => {
  const server = s3;
  await startScenario(server);
  const file = h.makeFile(dir, PART + 1);
  const params = p(file);
  await server.addFault({ ...COMPLETE, action: { status: 500, code: 'InternalError', message: 'x' } });
  const base = '2b. complete alone fails once with 500; 5 MiB+1, no checkpoint [faults.test.js › "initiate and complete are retried too"]';
  const first = await call({ server, params, label: `${base} — call 1` });
  await callsUntilOk(first, { server, params, base }, 2);
});

scenario('3', async () => {
  const server = s3;
  await startScenario(server);
  const file = h.makeFile(dir, 4 * PART);
  const params = p(file, { EnableCheckpoint: true });
  await server.addFault(onPart(3, { status: 503, code: 'ServiceUnavailable', message: 'down' }, 0));
  const base = '3. part 3 answers 503 forever; 4×5 MiB, TaskNum 2, checkpoint, max_retry_count 1 [faults.test.js › "a part that keeps failing: IncompletedUpload, record and upload kept; the next call finishes it"]';
  await call({
    server,
    params,
    client: { max_retry_count: 1 },
    label: `${base} — call 1`,
    note: (r, reqs) => `part 3 attempts: ${reqs.filter((q) => partNo(q) === 3).map((q) => q.status).join(',')}`,
  });
  await server.clearFaults();
  await call({
    server,
    params,
    client: { max_retry_count: 1 },
    label: `${base} — call 2 (faults cleared, same params)`,
    note: (r, reqs) => `part PUTs sent: [${partPutNumbers(reqs).join(',')}]`,
  });
});

scenario('4', async () => {
  const server = s3;
  await startScenario(server);
  const file = h.makeFile(dir, 2 * PART);
  const params = p(file);
  await server.addFault(onPart(1, { status: 500, code: 'InternalError', message: 'x' }, 0));
  await call({
    server,
    params,
    client: { max_retry_count: 0 },
    label: '4. part 1 answers 500 forever; 2×5 MiB, TaskNum 2, no checkpoint, max_retry_count 0 [faults.test.js › "without a checkpoint, parts that keep failing abort the upload"]',
  });
});

scenario('5', async () => {
  const server = s3;
  await startScenario(server);
  const file = h.makeFile(dir, 3 * PART);
  const params = p(file, { EnableCheckpoint: true, TaskNum: 1 });
  await server.addFault(onPart(2, { status: 400, code: 'InvalidArgument', message: 'refused' }));
  await call({
    server,
    params,
    label: '5. part 2 answers 400 once; 3×5 MiB, TaskNum 1, checkpoint [faults.test.js › "a 4xx on a part stops the upload, aborts it and removes the record"]',
  });
});

scenario('6', async () => {
  const server = s3;
  await startScenario(server);
  const file = h.makeFile(dir, 2 * PART);
  const params = p(file);
  await server.addFault(onPart(1, { hang: true }));
  await call({
    server,
    params,
    client: { timeout: 1 },
    graceMs: 3000,
    label: '6. part 1 never answered (hang, once); 2×5 MiB, TaskNum 2, no checkpoint, timeout: 1 [faults.test.js › "a response that never comes times out and is retried"]',
    note: (r) => `callback after ${r.res && r.res.calls[0] ? r.res.calls[0].ms : '?'} ms (watched 3 s more for a second callback)`,
  });
});

scenario('7', async () => {
  const server = s3;
  await startScenario(server);
  const file = h.makeFile(dir, 10);
  const params = p(file, { EnableCheckpoint: true });
  await call({
    server,
    params,
    client: { access_key_id: 'a', secret_access_key: 'b', server: 'http://127.0.0.1:1', max_retry_count: 1 },
    label: '7. server gone away (http://127.0.0.1:1); 10 B, checkpoint, max_retry_count 1 [faults.test.js › "the server gone away: initiate fails with the reference SDK code after retries"]',
    note: (r) => `callback after ${r.res && r.res.calls[0] ? r.res.calls[0].ms : '?'} ms`,
  });
});

scenario('8', async () => {
  const server = s3;
  await startScenario(server);
  const file = h.makeFile(dir, 4 * PART);
  const params = p(file, { EnableCheckpoint: true, TaskNum: 1 });
  await server.addFault(onPart(2, { delay_ms: 300 }));
  const base = '8. S3 port stopped once progress reaches 5 MiB (part 2 delayed 300 ms); 4×5 MiB, TaskNum 1, checkpoint, max_retry_count 1 [faults.test.js › "the server stopped mid-upload: IncompletedUpload, then the same call finishes once it is back"]';
  await call({
    server,
    params,
    client: { max_retry_count: 1 },
    trigger: { atBytes: PART, action: 'control', method: 'POST', route: '/stop' },
    label: `${base} — call 1`,
    // The object read-back needs the port: started again before the row is made.
    afterRun: () => server.startS3(),
  });
  await server.clearFaults();
  const second = await call({ server, params, client: { max_retry_count: 1 }, label: `${base} — call 2 (server back, same params)`, note: (r, reqs) => `part PUTs sent: [${partPutNumbers(reqs).join(',')}]` });
  await callsUntilOk(second, { server, params, client: { max_retry_count: 1 }, base }, 3);
});

scenario('9a', async () => {
  const server = s3;
  await startScenario(server);
  const file = h.makeFile(dir, 3 * PART + 9);
  const params = { Bucket: BUCKET, Key: h.uniqueKey('lost-complete'), UploadFile: file, EnableCheckpoint: true };
  await server.addFault({ ...COMPLETE, action: { drop_response: true } });
  const base = '9a. the answer to complete is lost once (drop_response); 3×5 MiB+9, default part size/TaskNum, checkpoint, default client [reliability.test.js › "the answer to CompleteMultipartUpload is lost: the retry finds the object complete and reports success"]';
  const first = await call({ server, params, label: `${base} — call 1` });
  await callsUntilOk(first, { server, params, base, note: (r, reqs) => `part PUTs sent: [${partPutNumbers(reqs).join(',')}]` }, 3);
});

scenario('9b', async () => {
  const server = s3;
  await startScenario(server);
  const file = h.makeFile(dir, 2 * PART + 1);
  const params = { Bucket: BUCKET, Key: h.uniqueKey('complete-then-kill'), UploadFile: file, EnableCheckpoint: true };
  await server.addFault({ ...COMPLETE, action: { drop_response: true } });
  const base = '9b. the answer to complete is lost once, max_retry_count 0 (record left after the store completed); 2×5 MiB+1, checkpoint [reliability.test.js › "killed after the object was completed but before the record was removed: the next call succeeds without sending parts"]';
  const first = await call({ server, params, client: { max_retry_count: 0 }, label: `${base} — call 1` });
  await callsUntilOk(first, { server, params, base, note: (r, reqs) => `part PUTs sent: [${partPutNumbers(reqs).join(',')}]` }, 3, 'same params, default client');
});

/** Leaves a record with every part sent and the upload open: complete answers 503 (reliability.test.js). */
async function allPartsSentNotCompleted(server, file, key, label) {
  await server.addFault({ ...COMPLETE, times: 0, action: { status: 503, code: 'ServiceUnavailable', message: 'x' } });
  const params = { Bucket: BUCKET, Key: key, UploadFile: file, PartSize: PART, EnableCheckpoint: true };
  await call({ server, params, client: { max_retry_count: 0 }, label });
  await server.clearFaults();
  return params;
}

async function abortBehind(server, params) {
  const rec = readRecord(`${params.UploadFile}.upload_record`);
  const ref = await h.referenceClientFor(server);
  const r = await ref.abortMultipartUpload({ Bucket: BUCKET, Key: params.Key, UploadId: rec.uploadId });
  return r.CommonMsg.Status;
}

scenario('10a', async () => {
  const server = s3;
  await startScenario(server);
  const file = h.makeFile(dir, 3 * PART);
  const base = '10a. upload aborted on the server behind the record (all parts sent; complete 503 forever, max_retry_count 0; then abortMultipartUpload by another client); 3×5 MiB [reliability.test.js › "the upload was aborted on the server behind the record: the next call starts a new upload and succeeds"]';
  const params = await allPartsSentNotCompleted(server, file, h.uniqueKey('aborted-behind'), `${base} — call 1 (leaves the record)`);
  const status = await abortBehind(server, params);
  const note = (r, reqs) => `part PUTs sent: [${partPutNumbers(reqs).join(',')}] (abort by the other client: ${status})`;
  let run;
  for (let i = 2; i <= 4; i += 1) {
    run = await call({ server, params, label: `${base} — call ${i} (same params, default client)`, note });
    if (succeeded(run)) break;
  }
});

scenario('10b', async () => {
  const server = s3;
  await startScenario(server);
  const file = h.makeFile(dir, 3 * PART);
  const base = '10b. partly sent upload whose id vanished (part 3 503 forever, max_retry_count 0; then aborted by another client); 3×5 MiB [reliability.test.js › "a partly sent upload whose id vanished starts over instead of failing forever"]';
  const params = { Bucket: BUCKET, Key: h.uniqueKey('vanished-partial'), UploadFile: file, PartSize: PART, EnableCheckpoint: true };
  await server.addFault(onPart(3, { status: 503, code: 'ServiceUnavailable', message: 'x' }, 0));
  await call({ server, params, client: { max_retry_count: 0 }, label: `${base} — call 1 (leaves the record)` });
  await server.clearFaults();
  const status = await abortBehind(server, params);
  const note = (r, reqs) => `part PUTs sent: [${partPutNumbers(reqs).join(',')}] (abort by the other client: ${status})`;
  for (let i = 2; i <= 4; i += 1) {
    const run = await call({ server, params, label: `${base} — call ${i} (same params, default client)`, note });
    if (succeeded(run) && i >= 3) break; // the test calls twice after the abort
  }
});

/** checkpoint.test.js leaveRecord: part 2 answers 503 forever, max_retry_count 0. */
async function leaveRecord(server, file, key, label, extra = {}) {
  await server.addFault(onPart(2, { status: 503, code: 'ServiceUnavailable', message: 'x' }, 0));
  const params = { Bucket: BUCKET, Key: key, UploadFile: file, PartSize: PART, EnableCheckpoint: true, ...extra };
  await call({ server, params, client: { max_retry_count: 0 }, label });
  await server.clearFaults();
  return params;
}

/** checkpoint.test.js expectInvalidThenClean: the call after the change, then again. */
async function invalidThenClean(server, params, base, extra = {}) {
  const rec = readRecord(params.CheckpointFile || `${params.UploadFile}.upload_record`);
  const id = rec && rec.uploadId;
  const mk = (i) => ({
    server,
    params,
    label: `${base} — call ${i}`,
    ...extra,
    note: (r, reqs, open) => `part PUTs sent: [${partPutNumbers(reqs).join(',')}]${id ? `; the recorded upload is ${open.includes(id) ? 'still open' : 'gone'}` : ''}`,
  });
  const first = await call(mk(2));
  const second = await call(mk(3));
  if (!succeeded(second)) await call(mk(4));
  return first;
}

[
  ['11a', 'the file grew (append "more")', (file) => fs.appendFileSync(file, 'more'), '"the file changed size since the record was written"'],
  [
    '11b',
    'the file was touched (mtime +5 s)',
    (file) => {
      const later = new Date(Date.now() + 5000);
      fs.utimesSync(file, later, later);
    },
    '"the file was touched (mtime changed) since the record was written"',
  ],
].forEach(([id, what, change, test]) =>
  scenario(id, async () => {
    const server = s3;
    await startScenario(server);
    const file = h.makeFile(dir, 3 * PART);
    const base = `${id}. ${what} after a record was left (part 2 503 forever); 3×5 MiB [checkpoint.test.js › ${test}]`;
    const params = await leaveRecord(server, file, h.uniqueKey(), `${base} — call 1 (leaves the record)`);
    change(file);
    await invalidThenClean(server, params, base);
  }),
);

/**
 * A record with a whole-file checkSum. First as the test does it (call 1 with
 * EnableCheckSum); if the reference leaves no record that way, a record left
 * without EnableCheckSum gets `uploadFileStat.checkSum` (the file's MD5, base64,
 * as obs-native writes it; the record's md5 does not cover uploadFileStat).
 */
async function recordWithCheckSum(server, file, base) {
  const key = h.uniqueKey();
  let params = await leaveRecord(server, file, key, `${base} — call 1 (EnableCheckSum, meant to leave the record)`, { EnableCheckSum: true });
  const recordPath = `${file}.upload_record`;
  if (readRecord(recordPath)) return params;
  params = await leaveRecord(server, file, key, `${base} — call 1b (no record was left: the same call without EnableCheckSum, then checkSum added to the record)`);
  const rec = readRecord(recordPath);
  rec.uploadFileStat.checkSum = require('node:crypto').createHash('md5').update(fs.readFileSync(file)).digest('base64');
  fs.writeFileSync(recordPath, JSON.stringify(rec));
  return { ...params, EnableCheckSum: true };
}

scenario('11c', async () => {
  const server = s3;
  await startScenario(server);
  const file = h.makeFile(dir, 3 * PART);
  const base = '11c. EnableCheckSum: content changed under the same size and mtime; 3×5 MiB [checkpoint.test.js › "with EnableCheckSum, content changed under the same size and mtime is caught"]';
  const params = await recordWithCheckSum(server, file, base);
  const { mtime } = fs.statSync(file);
  const fd = fs.openSync(file, 'r+');
  fs.writeSync(fd, Buffer.from('changed!'), 0, 8, PART + 10);
  fs.closeSync(fd);
  fs.utimesSync(file, mtime, mtime);
  await call({ server, params, label: `${base} — call 2 (content changed, EnableCheckSum)`, note: (r, reqs) => `part PUTs sent: [${partPutNumbers(reqs).join(',')}]` });
});

scenario('11d', async () => {
  const server = s3;
  await startScenario(server);
  const file = h.makeFile(dir, 3 * PART);
  const base = '11d. EnableCheckSum, file unchanged; 3×5 MiB [checkpoint.test.js › "with EnableCheckSum and an unchanged file, the upload resumes"]';
  const params = await recordWithCheckSum(server, file, base);
  await call({ server, params, label: `${base} — call 2 (EnableCheckSum)`, note: (r, reqs) => `part PUTs sent: [${partPutNumbers(reqs).join(',')}]` });
});

scenario('11e', async () => {
  const server = s3;
  await startScenario(server);
  const file = h.makeFile(dir, 3 * PART);
  const base = '11e. record edited (part 1 etag → "0000", md5 NOT recomputed); 3×5 MiB [checkpoint.test.js › "a record whose fields were edited fails its digest"]';
  const params = await leaveRecord(server, file, h.uniqueKey(), `${base} — call 1 (leaves the record)`);
  const rec = readRecord(`${file}.upload_record`);
  rec.partsMeta['1'].etag = '"0000"';
  fs.writeFileSync(`${file}.upload_record`, JSON.stringify(rec));
  await invalidThenClean(server, params, base);
});

scenario('11f', async () => {
  const server = s3;
  await startScenario(server);
  const file = h.makeFile(dir, 3 * PART);
  const base = '11f. record edited AND resealed (md5 by the reference rule): claims part 2 done with etag "000…0" the server lacks; 3×5 MiB [reliability.test.js › "a record that claims a part the server lacks: that part is sent again"]';
  const params = await leaveRecord(server, file, h.uniqueKey('claims-missing'), `${base} — call 1 (leaves the record)`);
  const rec = readRecord(`${file}.upload_record`);
  rec.partsMeta['2'] = { offset: PART, partSize: PART, etag: `"${'0'.repeat(32)}"`, isCompleted: true };
  fs.writeFileSync(`${file}.upload_record`, JSON.stringify(h.sealRecord(rec)));
  const note = (r, reqs) => `part PUTs sent: [${partPutNumbers(reqs).join(',')}]`;
  for (let i = 2; i <= 4; i += 1) {
    const run = await call({ server, params, label: `${base} — call ${i} (same params)`, note });
    if (succeeded(run)) break;
  }
});

scenario('11g', async () => {
  const server = s3;
  await startScenario(server);
  const file = h.makeFile(dir, 3 * PART);
  const base = '11g. resealed record missing part 2 that the server holds (all parts sent, complete 503 forever first); 3×5 MiB [reliability.test.js › "a record that missed parts the server holds" › "the part is adopted when its size and ETag match the local bytes"]';
  const params = await allPartsSentNotCompleted(server, file, h.uniqueKey('adopt'), `${base} — call 1 (leaves the record)`);
  const rec = readRecord(`${file}.upload_record`);
  delete rec.partsMeta['2'];
  fs.writeFileSync(`${file}.upload_record`, JSON.stringify(h.sealRecord(rec)));
  await call({ server, params, label: `${base} — call 2`, note: (r, reqs) => `part PUTs sent: [${partPutNumbers(reqs).join(',')}]` });
});

scenario('11h', async () => {
  const server = s3;
  await startScenario(server);
  const file = h.makeFile(dir, 3 * PART);
  const base = '11h. the record was left for another key; 3×5 MiB [checkpoint.test.js › "a record for another key is not used"]';
  const first = await leaveRecord(server, file, h.uniqueKey(), `${base} — call 1 (leaves the record, key A)`);
  const params = { ...first, Key: h.uniqueKey('other') };
  await invalidThenClean(server, params, `${base} (calls with key B)`, { keys: [first.Key, params.Key] });
});

[
  ['11i', 'garbage', 'not json at all {'],
  ['11j', 'empty', ''],
  ['11k', 'truncated', '{"bucketName":"test-bucket","objectKey":"k","uploadFile":"f","partSi'],
  ['11l', 'JSON of the wrong shape', '[1,2,3]'],
].forEach(([id, what, content]) =>
  scenario(id, async () => {
    const server = s3;
    await startScenario(server);
    const file = h.makeFile(dir, PART + 1);
    const params = { Bucket: BUCKET, Key: h.uniqueKey(), UploadFile: file, EnableCheckpoint: true };
    fs.writeFileSync(`${file}.upload_record`, content);
    const base = `${id}. a ${what} record (${JSON.stringify(content)}); 5 MiB+1 [checkpoint.test.js › "a %s record: ParseCheckpointFileError, then a clean start"]`;
    const first = await call({ server, params, label: `${base} — call 1` });
    await callsUntilOk(first, { server, params, base }, 3);
  }),
);

scenario('11m', async () => {
  const server = s3;
  await startScenario(server);
  const file = h.makeFile(dir, 10);
  const folder = path.join(dir, h.uniqueKey('record-folder'));
  fs.mkdirSync(folder);
  const params = { Bucket: BUCKET, Key: h.uniqueKey(), UploadFile: file, EnableCheckpoint: true, CheckpointFile: folder };
  const base = '11m. CheckpointFile is an (empty) folder; 10 B [checkpoint.test.js › "a record path that is a folder is an InvalidArgument and the folder is left alone"]';
  const note = () => `folder ${fs.existsSync(folder) && fs.statSync(folder).isDirectory() ? `still a folder, ${fs.readdirSync(folder).length} entr${fs.readdirSync(folder).length === 1 ? 'y' : 'ies'}` : 'GONE'}`;
  await call({ server, params, label: `${base} — call 1`, note });
  await call({ server, params, label: `${base} — call 2`, note });
});

for (const [id, variant] of [
  ['12a', 'v2'],
  ['12b', 'obs'],
]) {
  scenario(id, async () => {
    const server = await obsServer();
    await startScenario(server);
    const file = h.makeFile(dir, 5 * PART);
    const params = { Bucket: BUCKET, Key: h.uniqueKey('rotate'), UploadFile: file, TaskNum: 1, EnableCheckpoint: true };
    const obsFront = variant === 'obs';
    const base = `${id}. credentials rotated once progress reaches 10 MiB (${variant === 'obs' ? 'OBS front, default options, bucket.obs.test via http_agent' : 'server = IP endpoint, V2'}); 5×5 MiB, TaskNum 1, checkpoint; then refresh("new-ak","new-sk") and the same call [obs.test.js › "credentials rotated mid-upload (${variant}): record and upload kept, refresh() resumes"]`;
    try {
      await call({
        server,
        params,
        obsFront,
        auth: true,
        trigger: { atBytes: 2 * PART, action: 'control', method: 'POST', route: '/credentials', body: { access_key: 'new-ak', secret_key: 'new-sk' } },
        label: `${base} — call 1`,
        // The child rotated the keys; the parent's read-back must use the new ones.
        afterRun: () => {
          server.accessKey = 'new-ak';
          server.secretKey = 'new-sk';
        },
      });
      await call({
        server,
        params,
        obsFront,
        auth: true,
        client: { access_key_id: kit.DEFAULT_ACCESS_KEY, secret_access_key: kit.DEFAULT_SECRET_KEY },
        refresh: ['new-ak', 'new-sk'],
        label: `${base} — call 2 (client built with the old keys, then refresh(new))`,
        note: (r, reqs) => `part PUTs sent: [${partPutNumbers(reqs).join(',')}]`,
      });
    } finally {
      await server.setCredentials({ accessKey: kit.DEFAULT_ACCESS_KEY, secretKey: kit.DEFAULT_SECRET_KEY, securityToken: null });
    }
  });
}

scenario('13', async () => {
  const server = await obsServer();
  await startScenario(server);
  const file = h.makeFile(dir, 12 * MB + 5);
  const params = { Bucket: BUCKET, Key: h.uniqueKey('obs'), UploadFile: file, EnableCheckpoint: true };
  await call({
    server,
    params,
    obsFront: true,
    auth: true,
    label: '13. OBS front, default options (server http://obs.test:port, http_agent → test server); 12 MiB+5, checkpoint [obs.test.js › "default options: negotiates OBS, signs every request the OBS way, and the object is byte-identical" (which uses 2×5 MiB+5)]',
  });
});

/** faults.test.js abortedUpload: part 2 delayed 500 ms, handle.abort() once progress reaches 5 MiB. */
async function abortedUpload(server, params, client, label, extra = {}) {
  await server.addFault(onPart(2, { delay_ms: 500 }));
  return call({ server, params, client, trigger: { atBytes: PART, action: 'abort' }, label, graceMs: 1500, ...extra });
}

scenario('14a', async () => {
  const server = s3;
  await startScenario(server);
  const file = h.makeFile(dir, 3 * PART);
  await server.addFault({ method: 'DELETE', action: { status: 503, code: 'ServiceUnavailable', message: 'x' } });
  const params = p(file, { EnableCheckpoint: true, TaskNum: 1 });
  await abortedUpload(server, params, {}, '14a. handle.abort() at 5 MiB, DELETE answers 503 once; 3×5 MiB, TaskNum 1, checkpoint, default client [faults.test.js › "faults on abort" › "an abort that fails once is retried: upload aborted, record removed"]');
});

scenario('14b', async () => {
  const server = s3;
  await startScenario(server);
  const file = h.makeFile(dir, 3 * PART);
  await server.addFault({ method: 'DELETE', times: 0, action: { status: 503, code: 'ServiceUnavailable', message: 'down' } });
  const params = p(file, { EnableCheckpoint: true, TaskNum: 1 });
  const base = '14b. handle.abort() at 5 MiB, DELETE answers 503 forever; 3×5 MiB, TaskNum 1, checkpoint, max_retry_count 1 [faults.test.js › "faults on abort" › "an abort that keeps failing keeps the record, so the upload is not lost track of"]';
  await abortedUpload(server, params, { max_retry_count: 1 }, `${base} — call 1`);
  await server.clearFaults();
  const again = { Bucket: BUCKET, Key: params.Key, UploadFile: file, EnableCheckpoint: true, TaskNum: 1 };
  await call({ server, params: again, client: { max_retry_count: 1 }, label: `${base} — call 2 (healthy server, same Bucket/Key/file, default PartSize)`, note: (r, reqs) => `part PUTs sent: [${partPutNumbers(reqs).join(',')}]` });
});

// ---------------------------------------------------------------------------
// 15, 16: kill -9 of a child running the reference uploadFile (kill.test.js).
// ---------------------------------------------------------------------------

let respondAfterSupported = null;
async function probeRespondAfter(server) {
  if (respondAfterSupported !== null) return respondAfterSupported;
  try {
    const id = await server.addFault({ method: 'POST', path_contains: '/__probe__', query: { uploadId: null }, action: { respond_after_ms: 0 } });
    respondAfterSupported = id !== undefined;
  } catch (e) {
    respondAfterSupported = false;
  }
  await server.clearFaults();
  return respondAfterSupported;
}

function killSpec(server, key, file, partSize, taskNum) {
  return childSpec(server, {
    client: { max_retry_count: 3 },
    params: { Bucket: BUCKET, Key: key, UploadFile: file, PartSize: partSize, TaskNum: taskNum, EnableCheckpoint: true },
    graceMs: 0,
  });
}

async function partPutsFor(server, key) {
  return (await server.stats()).requests.filter((r) => isPartPut(r) && r.path.endsWith(`/${key}`));
}

/** Runs the kill child; kills it once `afterPuts` more part PUTs for the key have arrived. */
async function runKillChild(server, spec, afterPuts, delayMs = 0) {
  const before = (await partPutsFor(server, spec.params.Key)).length;
  let killedByUs = false;
  const run = await runChild(spec, (child) => {
    if (!afterPuts) return;
    (async () => {
      while (child.exitCode === null && child.signalCode === null) {
        if ((await partPutsFor(server, spec.params.Key)).length - before >= afterPuts) {
          if (delayMs) await sleep(delayMs);
          if (child.exitCode === null && child.signalCode === null) {
            killedByUs = true;
            child.kill('SIGKILL');
          }
          return;
        }
        await sleep(3);
      }
    })().catch(() => child.kill('SIGKILL'));
  });
  await sleep(200);
  const puts = (await partPutsFor(server, spec.params.Key)).slice(before);
  return { run, killed: killedByUs && run.signal === 'SIGKILL', puts };
}

const putsText = (puts) => puts.map((r) => `p${partNo(r)}:${r.status || '∅'}`).join(' ') || 'none';

const KILL_SEQUENCES = [
  { name: 'A', ks: [2, 4, 6] },
  { name: 'B', ks: [6, 6, 6] },
  { name: 'C', ks: [1, 8, 3] },
];

for (const seq of KILL_SEQUENCES) {
  scenario(`15${seq.name}`, async () => {
    const server = s3;
    await startScenario(server);
    const size = 40 * MB + 123;
    const file = h.makeFile(dir, size);
    const key = h.uniqueKey('kill');
    const record = `${file}.upload_record`;
    await server.addFault({ method: 'PUT', query: { partNumber: null }, times: 0, action: { delay_ms: 40 } });
    const ra = await probeRespondAfter(server);
    if (ra) await server.addFault({ ...COMPLETE, times: 0, action: { respond_after_ms: 0 } });
    const spec = killSpec(server, key, file, 5 * MB, 4);
    const log = [];
    let done = null;
    let runs = 0;
    let kills = 0;
    const errors = [];
    for (const k of seq.ks) {
      runs += 1;
      const { run, killed, puts } = await runKillChild(server, spec, k);
      const recNow = fs.existsSync(record) ? (readRecord(record) ? 'record ok' : 'RECORD UNPARSEABLE') : 'no record';
      if (killed) kills += 1;
      log.push(`run ${runs} kill@${k}: ${killed ? 'killed' : outcomeOf(run)} [${putsText(puts)}] ${recNow}`);
      if (!killed && succeeded(run)) {
        done = run;
        break;
      }
      if (!killed && errOf(run)) errors.push(errOf(run));
    }
    for (let attempt = 1; !done && attempt <= 5; attempt += 1) {
      runs += 1;
      const { run, puts } = await runKillChild(server, spec, 0);
      log.push(`run ${runs} no kill: ${outcomeOf(run)} [${putsText(puts)}]`);
      if (succeeded(run)) done = run;
      else if (errOf(run)) errors.push(errOf(run));
    }
    const all = await partPutsFor(server, key);
    const sent = all.reduce((s, r) => s + r.body_bytes, 0);
    const ids = new Set(all.map((r) => (/(?:^|&)uploadId=([^&]*)/.exec(r.query) || [])[1]));
    const outcome = done ? `finished on run ${runs} (${kills} kills landed): ${outcomeOf(done)}` : `**did not finish** in ${runs} runs (${kills} kills landed); last errors: ${errors.slice(-2).join(' / ')}`;
    row(
      `15${seq.name}. kill -9 after k part PUTs, k = ${seq.ks.join(', ')} in successive runs, then up to 5 runs without a kill; 40 MiB+123, PartSize 5 MiB, TaskNum 4, max_retry_count 3, 40 ms delay on every part PUT${ra ? ', complete with respond_after_ms 0 as in the test' : ''} [kill.test.js › "kill -9 at seeded moments, then run again until done" › "40MiB+123 part 5MiB x4"]`,
      outcome,
      await objectState(server, key, file),
      await uploadState(server, readRecord(record)),
      recordState(record),
      `${log.join(' → ')}. Part bytes received in all: ${fmtBytes(sent)} (${(sent / size).toFixed(2)}× the file; ${all.length} part PUTs, ${ids.size} upload id(s))`,
    );
  });
}

scenario('16', async () => {
  const server = s3;
  await startScenario(server);
  const label = '16. killed after the store completed the object, before the record was removed (complete answered after respond_after_ms 3000); 2×5 MiB+1, PartSize 5 MiB, TaskNum 2 [kill.test.js › "killed between CompleteMultipartUpload and the removal of the record: the next call succeeds without uploading again"]';
  if (!(await probeRespondAfter(server))) {
    row(label, 'skipped: this test server rejects respond_after_ms', '', '', '', '');
    return;
  }
  const file = h.makeFile(dir, 2 * PART + 1);
  const key = h.uniqueKey('kill-complete');
  const record = `${file}.upload_record`;
  await server.addFault({ ...COMPLETE, action: { respond_after_ms: 3000 } });
  const spec = killSpec(server, key, file, 5 * MB, 2);
  const ref = await h.referenceClientFor(server);
  let completed = false;
  const run = await runChild(spec, (child) => {
    (async () => {
      const deadline = Date.now() + 30000;
      while (!completed && Date.now() < deadline && child.exitCode === null) {
        const { requests } = await server.stats();
        if (requests.some((r) => r.method === 'POST' && /(^|&)uploadId=/.test(r.query) && r.path.endsWith(`/${key}`))) {
          const head = await ref.getObjectMetadata({ Bucket: BUCKET, Key: key });
          completed = head.CommonMsg.Status === 200;
        }
        if (!completed) await sleep(10);
      }
      child.kill('SIGKILL');
    })().catch(() => child.kill('SIGKILL'));
  });
  await sleep(200);
  const { requests } = await server.stats();
  row(
    `${label} — run 1 (killed)`,
    run.signal === 'SIGKILL' && !run.res ? `killed (the store had completed the object: ${completed})` : outcomeOf(run),
    await objectState(server, key, file),
    await uploadState(server, readRecord(record)),
    recordState(record),
    describeRequests(requests, Object.assign([key], { skipHeads: true })),
  );
  await server.clearFaults();
  const params = spec.params;
  for (let i = 2; i <= 4; i += 1) {
    const r = await call({ server, params, client: { max_retry_count: 3 }, label: `${label} — run ${i} (same call, not killed)`, note: (x, reqs) => `part PUTs sent: [${partPutNumbers(reqs).join(',')}]` });
    if (succeeded(r)) break;
  }
});

scenario('17', async () => {
  const server = s3;
  await startScenario(server);
  const file = h.makeFile(dir, 3 * PART);
  const params = p(file, { EnableCheckpoint: true, TaskNum: 1 });
  // Part 1 is stored but its answer held back; the file is cut to 5 MiB +
  // 1000 bytes at the first progress report, before parts 2 and 3 are read.
  await server.addFault(onPart(1, { respond_after_ms: 800 }));
  const base = '17. the file shrinks during the upload (cut to 5 MiB+1000 while part 1 is in flight); 3×5 MiB, TaskNum 1, checkpoint [transport.test.js › "%s: a file that shrinks during the upload fails with FileReadError, ..."]';
  const first = await call({ server, params, trigger: { atBytes: 1, action: 'truncate', size: PART + 1000 }, label: `${base} — call 1`, note: (r, reqs) => `part PUTs sent: [${partPutNumbers(reqs).join(',')}]` });
  await callsUntilOk(first, { server, params, base }, 3, 'same params, file as it is now');
});

// ---------------------------------------------------------------------------

async function obsServer() {
  if (!obs) obs = await h.startServer({ mode: 'obs', domain: 'obs.test' });
  return obs;
}

async function main() {
  const onlyArg = process.argv.indexOf('--only');
  const only = onlyArg > 0 ? process.argv[onlyArg + 1].split(',') : null;
  const t0 = Date.now();
  dir = h.tempDir();
  s3 = await h.startServer({ mode: 's3' });
  try {
    for (const s of scenarios) {
      if (only && !only.some((o) => s.id === o || s.id.startsWith(o))) continue;
      process.stderr.write(`scenario ${s.id} (at ${((Date.now() - t0) / 1000).toFixed(0)} s)\n`);
      try {
        await s.fn();
      } catch (e) {
        row(`${s.id}. (scenario failed in this script)`, esc(String((e && e.stack) || e).split('\n').slice(0, 2).join(' ')), '', '', '', '');
        try {
          await s3.startS3();
        } catch (_) {
          /* already running */
        }
      }
    }
  } finally {
    for (const c of children) c.kill('SIGKILL');
    await s3.close();
    if (obs) await obs.close();
  }
  const esdk = require('esdk-obs-nodejs/package.json').version;
  console.log(`Reference SDK: esdk-obs-nodejs ${esdk}, Node ${process.version}; test server obs-testkit (s3s-fs). Measured in ${((Date.now() - t0) / 1000).toFixed(0)} s.`);
  console.log('Legend (last column): pN = UploadPart N; * = answered by the fault rule; ∅ = no answer reached the client (with the body bytes the server read); "part PUTs sent" = parts answered 200 in that call; in 15, a part cut off by the kill shows the status the server logged for it (500).');
  console.log('');
  console.log('| scenario | reference SDK outcome (callback error string or success) | object correct? | multipart upload left on server? | record left? | what happened (requests seen) |');
  console.log('|---|---|---|---|---|---|');
  for (const r of rows) console.log(r);
}

main().catch((e) => {
  for (const c of children) c.kill('SIGKILL');
  console.error(e);
  process.exit(1);
});
