#!/usr/bin/env node
'use strict';
// How slow a link each client survives at a given `timeout`: one part sent to
// the test server while it reads the body at a fixed rate (the fault action
// `read_bytes_per_sec`), by obs-native and by the reference SDK, over HTTP and
// HTTPS. Prints a Markdown table.
//
//   sudo CARGO_TARGET_DIR=/root/.cache/obs-native-target node tools/slow-link.js [http|https]
//
// On loopback the kernel would hold megabytes of each connection (loopback's
// 64 KiB segments size the send buffer to match), so every client would look
// idle for seconds whatever it does itself. This script therefore sets the TCP
// buffer limits of a long-distance link (net.ipv4.tcp_wmem / tcp_rmem, maximum
// 64 KiB) for its run, for the whole network namespace, and puts them back
// when it ends (or is interrupted, killed or hung up): it needs root, and
// nothing else should be running. Not part of `npm test` for that reason.
//
// A client gives a request up when it sees no bytes move for `timeout`
// seconds; what it holds back from the socket goes unseen. A row fails when
// the client gives up while the server is still reading.

process.env.CARGO_TARGET_DIR = process.env.CARGO_TARGET_DIR || '/root/.cache/obs-native-target';
const fs = require('node:fs');
const path = require('node:path');
const h = require('../__test__/helpers.js');

const WMEM = '/proc/sys/net/ipv4/tcp_wmem';
const RMEM = '/proc/sys/net/ipv4/tcp_rmem';
const TLS = path.join(__dirname, '..', '__test__', 'fixtures', 'tls');

// [bytes a second the server reads, timeout in seconds, part size]
const CASES = [
  [200_000, 3, 4_000_000],
  [200_000, 2, 4_000_000],
  [200_000, 1, 4_000_000],
  [100_000, 2, 2_000_000],
  [100_000, 1, 2_000_000],
];

async function one(server, who, [rate, timeout, size], dir) {
  const file = h.makeFile(dir, size);
  await server.clearFaults();
  await server.resetStats();
  await server.addFault({ method: 'PUT', query: { partNumber: null }, times: 0, action: { read_bytes_per_sec: rate } });
  const options = { timeout, max_retry_count: 1 };
  const client = who === 'obs-native' ? h.clientFor(server, options) : await h.referenceClientFor(server, options);
  const started = Date.now();
  const params = { Bucket: h.BUCKET, Key: h.uniqueKey('slow'), UploadFile: file, PartSize: size, TaskNum: 1 };
  const { err } = await h.uploadWithCallback(client, params);
  const seconds = (Date.now() - started) / 1000;
  const puts = (await server.stats()).requests.filter((r) => r.method === 'PUT');
  if (!err && !(await h.readBack(server, params.Key)).equals(fs.readFileSync(file))) throw new Error(`${who}: the object read back differs from the file`);
  fs.rmSync(file);
  const read = puts.map((r) => `${r.status || 'given up'} after ${(r.body_bytes / 1e6).toFixed(2)} MB`).join(', ');
  return `| ${who} | ${server.endpoint.split(':')[0]} | ${rate / 1000} KB/s | ${timeout} s | ${size / 1e6} MB | ${err ? `fails (${String(err).split(':')[0]})` : 'ok'} | ${seconds.toFixed(1)} s | ${read} |`;
}

async function main() {
  const saved = [fs.readFileSync(WMEM, 'utf8').trim(), fs.readFileSync(RMEM, 'utf8').trim()];
  const restore = () => {
    fs.writeFileSync(WMEM, saved[0]);
    fs.writeFileSync(RMEM, saved[1]);
  };
  // `exit` runs on process.exit and on a normal end; signals exit first.
  process.on('exit', restore);
  for (const [signal, code] of [['SIGINT', 130], ['SIGTERM', 143], ['SIGHUP', 129]]) process.on(signal, () => process.exit(code));
  fs.writeFileSync(WMEM, '4096 16384 65536');
  try {
    fs.writeFileSync(RMEM, '4096 65536 65536');
    console.log('| client | scheme | server reads | timeout | part | result | time | PUTs (server read) |');
    console.log('|---|---|---|---|---|---|---|---|');
    const only = process.argv[2];
    for (const tls of [false, true].filter((t) => !only || only === (t ? 'https' : 'http'))) {
      const server = await h.startServer(tls ? { tls: { cert: path.join(TLS, 'cert.pem'), key: path.join(TLS, 'key.pem') } } : {});
      const dir = h.tempDir();
      try {
        for (const c of CASES) {
          for (const who of ['obs-native', 'esdk-obs-nodejs']) console.log(await one(server, who, c, dir));
        }
      } finally {
        await server.close();
        fs.rmSync(dir, { recursive: true, force: true });
      }
    }
  } finally {
    restore();
  }
}

main().then(
  () => process.exit(0),
  (e) => {
    console.error(e);
    process.exit(1);
  },
);
