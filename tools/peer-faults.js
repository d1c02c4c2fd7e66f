#!/usr/bin/env node
'use strict';
// How obs-native and its four peers cope with transient server faults: one
// resumable (multipart) upload per client and scenario against the test
// server in mode 'sink' (valid S3 multipart answers, no signature check, no
// storage; it remembers open upload ids), with one fault rule set for it.
// Prints a Markdown table (scenarios x clients) and the request counts.
//
//   CARGO_TARGET_DIR=/root/.cache/obs-native-target node tools/peer-faults.js \
//     [--only 1,3] [--clients obs-native,ali-oss] [--deadline 90]
//
// Every client gets the same file (15 MiB + 1234 bytes: 4 parts), 5 MiB parts,
// 3 at a time, and its own default retries and timeouts (what a user gets),
// made as the benchmark makes it (bench/sdks.js).
// Each call runs in a child process (`--child <json>`) so a crash or a hang is
// observed: no callback within --deadline seconds (default 90) is reported as
// such; after the first callback the child waits GRACE_MS for a second one or
// an uncaught exception. Fault rules match by the call's own key
// (path_contains), so a killed child's stragglers cannot use them up.

const { spawn } = require('node:child_process');
const crypto = require('node:crypto');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { CLIENTS, starterFor, describe } = require('../bench/sdks');

const MB = 1024 * 1024;
const PART = 5 * MB;
const PAR = 3;
const SIZE = 15 * MB + 1234;
const PART_SIZES = [PART, PART, PART, SIZE - 3 * PART];
const BUCKET = 'bench';
const GRACE_MS = 1500;

const p2 = { method: 'PUT', query: { partNumber: '2' } };
const SCENARIOS = [
  { id: 1, name: 'p2 PUT: 503 SlowDown once', focus: 'p2', rule: { ...p2, action: { status: 503, code: 'SlowDown', message: 'Please reduce your request rate.' } } },
  { id: 2, name: 'p2 PUT: connection reset after 1 MiB, once', focus: 'p2', rule: { ...p2, action: { reset_after_bytes: MB } } },
  { id: 3, name: 'initiate: 503 once', focus: 'init', rule: { method: 'POST', query: { uploads: null }, action: { status: 503, code: 'ServiceUnavailable' } } },
  { id: 4, name: 'complete: 500 InternalError once', focus: 'complete', rule: { method: 'POST', query: { uploadId: null }, action: { status: 500, code: 'InternalError' } } },
  { id: 5, name: 'complete: answer dropped once (sink completed it)', focus: 'complete', rule: { method: 'POST', query: { uploadId: null }, action: { drop_response: true } } },
  { id: 6, name: 'p2 PUT: hangs once (never answered)', focus: 'p2', rule: { ...p2, action: { hang: true } } },
  { id: 7, name: 'every part PUT: 500 forever', focus: 'parts', rule: { method: 'PUT', query: { partNumber: null }, times: 0, action: { status: 500, code: 'InternalError' } } },
];

async function childMain(spec) {
  const out = { calls: [], uncaught: [], timedOut: false };
  let printed = false;
  const finish = () => {
    if (printed) return;
    printed = true;
    process.stdout.write(`\nRESULT ${JSON.stringify(out)}\n`, () => process.exit(0));
  };
  const first = (e) => String((e && e.stack) || e).split('\n')[0].slice(0, 100);
  process.on('uncaughtException', (e) => out.uncaught.push(first(e)));
  process.on('unhandledRejection', (e) => out.uncaught.push(`unhandledRejection ${first(e)}`));
  const start = starterFor(spec.client, { endpoint: spec.endpoint, accessKey: spec.accessKey, secretKey: spec.secretKey, bucket: BUCKET });
  await new Promise((r) => setImmediate(r)); // esdk finishes its setup one tick later
  const t0 = Date.now();
  // Neither keeps the process alive: an SDK with nothing left in flight and no
  // callback given empties the event loop ('beforeExit').
  setTimeout(() => {
    out.timedOut = out.calls.length === 0;
    finish();
  }, spec.deadlineMs).unref();
  process.on('beforeExit', () => {
    if (out.calls.length === 0) out.loopEmptied = Date.now() - t0;
    finish();
  });
  start(spec.file, spec.key, { partSize: PART, taskNum: PAR }, (err) => {
    out.calls.push({ ms: Date.now() - t0, err: err === null ? null : describe(err) });
    if (out.calls.length === 1) setTimeout(finish, GRACE_MS).unref();
  });
}

if (process.argv[2] === '--child') {
  childMain(JSON.parse(process.argv[3])).catch((e) => {
    process.stdout.write(`\nRESULT ${JSON.stringify({ calls: [], uncaught: [], crashed: String((e && e.stack) || e) })}\n`, () => process.exit(1));
  });
  return;
}

// ---------------------------------------------------------------------------
// Parent.
// ---------------------------------------------------------------------------

const kit = require('../__test__/kit/server.js');

function arg(name) {
  const i = process.argv.indexOf(name);
  return i > 0 ? process.argv[i + 1] : undefined;
}
const DEADLINE_S = Number(arg('--deadline') || 90);

function runChild(spec) {
  return new Promise((resolve) => {
    const t0 = Date.now();
    const child = spawn(process.execPath, [__filename, '--child', JSON.stringify(spec)], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr = (stderr + d).slice(-2000)));
    const hard = setTimeout(() => child.kill('SIGKILL'), spec.deadlineMs + 15000);
    child.on('close', (code, signal) => {
      clearTimeout(hard);
      const line = stdout.split('\n').find((l) => l.startsWith('RESULT '));
      let res = null;
      try {
        res = line ? JSON.parse(line.slice(7)) : null;
      } catch (e) {
        res = null;
      }
      resolve({ res, code, signal, stderr, ms: Date.now() - t0 });
    });
  });
}

/** What kind of request: init, pN, complete, abort, list (uploads or parts), other. */
function kindOf(r) {
  const q = new URLSearchParams(r.query || '');
  if (r.method === 'PUT' && q.has('partNumber')) return `p${q.get('partNumber')}`;
  if (r.method === 'POST' && q.has('uploads')) return 'init';
  if (r.method === 'POST' && q.has('uploadId')) return 'complete';
  if (r.method === 'DELETE' && q.has('uploadId')) return 'abort';
  if (r.method === 'GET' && (q.has('uploads') || q.has('uploadId'))) return 'list';
  return 'other';
}

function countKinds(requests) {
  const n = { init: 0, part: 0, complete: 0, abort: 0, list: 0, other: 0, byPart: {} };
  for (const r of requests) {
    const k = kindOf(r);
    if (k.startsWith('p')) {
      n.part++;
      n.byPart[k] = (n.byPart[k] || 0) + 1;
    } else n[k]++;
  }
  return n;
}

/**
 * Whether the sink really completed an upload whose 4 parts all arrived whole
 * (a 200 PUT with the part's full size under the completed upload id). The
 * sink checks no part list, so a client could complete with a part missing.
 */
function objectWhole(requests, faultActions) {
  const reached = (r) => r.fault === null || r.fault === undefined ? r.status === 200 : faultActions[r.fault] === 'drop_response';
  const completes = requests.filter((r) => kindOf(r) === 'complete' && reached(r));
  for (const c of completes) {
    const id = new URLSearchParams(c.query).get('uploadId');
    const ok = PART_SIZES.every((size, i) =>
      requests.some((r) => kindOf(r) === `p${i + 1}` && r.status === 200 && r.body_bytes === size && new URLSearchParams(r.query).get('uploadId') === id && r.at_ms <= c.at_ms),
    );
    if (ok) return true;
  }
  return false;
}

const secs = (ms) => `${(ms / 1000).toFixed(ms < 1000 ? 2 : 1)} s`;

function cellOf(s, run, n, left, fired, whole) {
  const { res } = run;
  const bits = [];
  if (!res) bits.push(`child died (exit ${run.code} ${run.signal || ''})`);
  else if (res.crashed) bits.push(`script threw: ${res.crashed.split('\n')[0].slice(0, 60)}`);
  else if (res.timedOut) bits.push(`**no callback in ${DEADLINE_S} s**`);
  else if (res.loopEmptied !== undefined) bits.push(`**no callback; loop emptied after ${secs(res.loopEmptied)}**`);
  else {
    const c = res.calls[0];
    bits.push(c.err === null ? `ok ${secs(c.ms)}` : `fails (${c.err}) ${secs(c.ms)}`);
    if (c.err === null && !whole) bits.push('**but no whole object completed**');
  }
  if (res && res.calls.length > 1) bits.push(`**${res.calls.length} callbacks** (then ${res.calls.slice(1).map((c) => c.err || 'ok').join(', ')})`);
  if (res && res.uncaught.length) bits.push(`**uncaught: ${res.uncaught[0]}**`);
  if (s.focus === 'p2') bits.push(`p2 sent ${n.byPart.p2 || 0}x`);
  if (s.focus === 'init') bits.push(`init sent ${n.init}x`);
  if (s.focus === 'complete') bits.push(`complete sent ${n.complete}x`);
  if (s.focus === 'parts') bits.push(`${n.part} part PUTs (max ${Math.max(0, ...Object.values(n.byPart))}/part)`);
  if (n.abort) bits.push(`abort ${n.abort}x`);
  const pending = res && (res.timedOut || res.loopEmptied !== undefined);
  if (left) bits.push(pending ? `${left} upload open when killed` : `**${left} upload${left > 1 ? 's' : ''} left open**`);
  if (!fired) bits.push('(fault never fired)');
  return bits.join(', ');
}

/** The kit's faults must fire in sink mode; checked once with a plain request. */
async function selfCheck(server) {
  await server.addFault({ method: 'PUT', path_contains: 'peer-faults-selfcheck', action: { status: 503, code: 'SlowDown' } });
  const res = await fetch(`${server.endpoint}/${BUCKET}/peer-faults-selfcheck`, { method: 'PUT', body: 'x' });
  await res.arrayBuffer();
  const [rule] = await server.faults();
  await server.clearFaults();
  if (res.status !== 503 || !rule || rule.fired !== 1) {
    throw new Error(`fault rules do not fire in sink mode (status ${res.status}, rule ${JSON.stringify(rule)}): stopping`);
  }
}

async function main() {
  const only = arg('--only') ? arg('--only').split(',').map(Number) : null;
  const clients = arg('--clients') ? arg('--clients').split(',') : CLIENTS;
  for (const c of clients) if (!CLIENTS.includes(c)) throw new Error(`unknown client ${c}`);
  const scenarios = SCENARIOS.filter((s) => !only || only.includes(s.id));
  const t0 = Date.now();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'peer-faults-'));
  const file = path.join(dir, 'upload.bin');
  fs.writeFileSync(file, crypto.randomBytes(SIZE));
  const server = await kit.startServer({ mode: 'sink', buckets: [BUCKET] });
  const runId = Date.now().toString(36);
  const cells = {};
  const counts = [];
  try {
    await selfCheck(server);
    for (const s of scenarios) {
      for (const client of clients) {
        const key = `pf-${runId}-s${s.id}-${client}`;
        await server.clearFaults();
        await server.resetStats();
        const before = new Set(await server.uploads());
        await server.addFault({ times: 1, ...s.rule, path_contains: key });
        process.stderr.write(`scenario ${s.id} ${client} (at ${((Date.now() - t0) / 1000).toFixed(0)} s) ... `);
        const spec = { client, endpoint: server.endpoint, accessKey: server.accessKey, secretKey: server.secretKey, file, key, deadlineMs: DEADLINE_S * 1000 };
        const run = await runChild(spec);
        const [rule] = await server.faults();
        await server.clearFaults();
        const { requests } = await server.stats();
        // COS lists uploads with the key in the query only (`GET /?uploads&prefix=`).
        const mine = requests.filter((r) => r.path.includes(key) || (r.query || '').includes(encodeURIComponent(key)));
        const left = (await server.uploads()).filter((id) => !before.has(id)).length;
        const n = countKinds(mine);
        const faultActions = { [rule.id]: s.rule.action.drop_response ? 'drop_response' : 'other' };
        const cell = cellOf(s, run, n, left, rule.fired, objectWhole(mine, faultActions));
        cells[`${s.id}/${client}`] = cell;
        counts.push({ s: s.id, client, n, fired: rule.fired });
        process.stderr.write(`${cell}\n`);
        if (!run.res && run.stderr) process.stderr.write(`  child stderr: ${run.stderr.split('\n').slice(-3).join(' / ')}\n`);
      }
    }
  } finally {
    await server.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
  const versions = clients
    .map((c) => {
      const pkg = c === 'obs-native' ? '../package.json' : `${c === 'lib-storage' ? '@aws-sdk/lib-storage' : c}/package.json`;
      return `${c} ${require(pkg).version}`;
    })
    .join(', ');
  const esc = (t) => String(t).replace(/\|/g, '\\|');
  console.log(`Peers under transient faults (sink mode): ${versions}; Node ${process.version}. ${(Date.now() - t0) / 1000 | 0} s in all.`);
  console.log(`File ${SIZE} bytes (4 parts of 5 MiB, 3 at a time), each SDK's default retries and timeouts, deadline ${DEADLINE_S} s per call.`);
  console.log('');
  console.log(`| scenario | ${clients.join(' | ')} |`);
  console.log(`|---|${clients.map(() => '---').join('|')}|`);
  for (const s of scenarios) console.log(`| ${s.id}. ${esc(s.name)} | ${clients.map((c) => esc(cells[`${s.id}/${c}`])).join(' | ')} |`);
  console.log('');
  console.log(`Legend: ok / fails (the error's status and code, or message, as the SDK reports it), seconds to the first callback or settle; "pN / init / complete sent Nx" = such requests the server saw in this call (a retry makes 2x); "abort Nx" = AbortMultipartUpload requests; "upload left open" = initiated, neither completed nor aborted when the SDK gave up (billed storage on a real server); "open when killed" = still pending at the deadline; "no callback in N s" = neither callback nor settle by the deadline; "N callbacks" = called back again within ${GRACE_MS} ms; "no whole object completed" = success, yet no complete reached the server after all 4 parts arrived whole; "(fault never fired)" = the SDK sent no request the rule matched.`);
  console.log('');
  console.log('Requests seen per call (init / part PUTs / complete / abort / list / other; fault fired):');
  console.log('');
  console.log(`| scenario | ${clients.join(' | ')} |`);
  console.log(`|---|${clients.map(() => '---').join('|')}|`);
  for (const s of scenarios) {
    const row = clients.map((c) => {
      const { n, fired } = counts.find((x) => x.s === s.id && x.client === c);
      return `${n.init} / ${n.part} / ${n.complete} / ${n.abort} / ${n.list} / ${n.other}; ${fired}`;
    });
    console.log(`| ${s.id} | ${row.join(' | ')} |`);
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
