'use strict';
// How part bodies reach the socket. Over plain HTTP on Linux they go with
// sendfile on connections of obs-native's own; OBS_NATIVE_SENDFILE=0 (read
// when a client is made) sends them through buffers, the way HTTPS and
// proxies always do. Both must send the same bytes, keep connections
// safely, and fail the same way when the file changes under them.

const fs = require('node:fs');
const http = require('node:http');
const https = require('node:https');
const path = require('node:path');
const h = require('./helpers');

const { MB } = h;
const PART = 5 * MB;

const ctx = h.useServer();
let server;
let dir;

beforeAll(() => {
  ({ server, dir } = ctx);
});

const TRANSPORTS = [
  ['sendfile', '1'],
  ['buffered', '0'],
];

/**
 * Whether the part PUTs in the server's log came on connections apart from
 * the initiates' and completes' (sendfile's own), rather than on the HTTP
 * client's, which carries those too.
 */
async function partsApart() {
  const { requests } = await server.stats();
  const small = new Set(requests.filter((r) => r.method === 'POST').map((r) => r.connection));
  const parts = requests.filter((r) => r.method === 'PUT');
  expect(parts.length).toBeGreaterThan(0);
  return parts.every((r) => !small.has(r.connection));
}

/** A client made while OBS_NATIVE_SENDFILE is `value`. */
function clientWith(value, extra = {}) {
  const before = process.env.OBS_NATIVE_SENDFILE;
  process.env.OBS_NATIVE_SENDFILE = value;
  try {
    return h.clientFor(server, extra);
  } finally {
    if (before === undefined) delete process.env.OBS_NATIVE_SENDFILE;
    else process.env.OBS_NATIVE_SENDFILE = before;
  }
}

test('both transports store the same bytes with the same part ETags', async () => {
  const file = h.makeFile(dir, 3 * PART + 12345);
  const etags = {};
  for (const [name, value] of TRANSPORTS) {
    const key = h.uniqueKey(`transport-${name}`);
    await server.resetStats();
    const result = await clientWith(value).uploadFile({ Bucket: h.BUCKET, Key: key, UploadFile: file, PartSize: PART, TaskNum: 3 });
    expect(result.CommonMsg.Status).toBe(200);
    // The transport asked for is the one that carried the parts.
    expect(await partsApart()).toBe(name === 'sendfile');
    await h.expectUploaded(server, key, file);
    etags[name] = result.InterfaceResult.ETag;
  }
  // The multipart ETag is the MD5 of the parts' MD5s: same parts, same ETag.
  expect(etags.sendfile).toMatch(/^"[0-9a-f]{32}-4"$/);
  expect(etags.sendfile).toBe(etags.buffered);
});

test.each(TRANSPORTS)('%s: kept connections the server closed are not used again (no retries allowed)', async (_, value) => {
  const client = clientWith(value, { max_retry_count: 0 });
  const file = h.makeFile(dir, 2 * PART);
  const first = { Bucket: h.BUCKET, Key: h.uniqueKey('keepalive'), UploadFile: file, PartSize: PART, TaskNum: 2 };
  expect((await client.uploadFile(first)).CommonMsg.Status).toBe(200);
  // Kept: the same upload again opens no connection (one at most, which
  // the HTTP client may open in a race with a connection on its way back
  // to its pool; without keep-alive each of the 4 requests opens one).
  const kept = await h.acceptedConnections(server);
  expect((await client.uploadFile({ ...first, Key: h.uniqueKey('keepalive') })).CommonMsg.Status).toBe(200);
  expect((await h.connectionsSince(server, kept)).size).toBeLessThanOrEqual(1);
  // The restart closes every connection the client keeps for reuse.
  await server.stopS3();
  await server.startS3();
  const second = { ...first, Key: h.uniqueKey('keepalive') };
  const result = await client.uploadFile(second);
  expect(result.CommonMsg.Status).toBe(200);
  await h.expectUploaded(server, first.Key, file);
  await h.expectUploaded(server, second.Key, file);
});

test.each(TRANSPORTS)('%s: a file that shrinks during the upload fails with FileReadError, then the record is found stale and a new upload sends what is there', async (_, value) => {
  const client = clientWith(value);
  const file = h.makeFile(dir, 3 * PART);
  const p = { Bucket: h.BUCKET, Key: h.uniqueKey('shrink'), UploadFile: file, PartSize: PART, TaskNum: 1, EnableCheckpoint: true };
  // Part 1 is stored but its answer held back; meanwhile the file loses
  // most of part 2 and all of part 3.
  await server.addFault({ method: 'PUT', query: { partNumber: '1' }, times: 1, action: { respond_after_ms: 800 } });
  const running = h.uploadWithCallback(client, p);
  let seen = false;
  for (let i = 0; i < 200 && !seen; i += 1) {
    const { requests } = await server.stats();
    seen = requests.some((r) => r.method === 'PUT' && /partNumber=1&/.test(r.query));
    if (!seen) await new Promise((r) => setTimeout(r, 10));
  }
  // Part 1 is at the server (its answer held back) before the file shrinks.
  expect(seen).toBe(true);
  fs.truncateSync(file, PART + 1000);
  const { err, result } = await running;
  expect(result).toBeUndefined();
  expect(err.code).toBe('FileReadError');
  expect(String(err)).toMatch(/^FileReadError:reading the file to upload failed: the file became shorter while it was being uploaded/);
  // The record no longer matches the file: as with the reference SDK, the
  // next call says so (and aborts the upload and drops the record), and
  // the one after uploads the file as it is now.
  const invalid = await h.uploadWithCallback(client, p);
  expect(invalid.err && invalid.err.code).toBe('CheckpointFileInvalid');
  const again = await client.uploadFile(p);
  expect(again.CommonMsg.Status).toBe(200);
  await h.expectUploaded(server, p.Key, file);
});

test.each(TRANSPORTS)('%s: an IPv6 literal endpoint in brackets is reached and signed (v4-mapped loopback, server on 127.0.0.1)', async (_, value) => {
  const port = new URL(server.endpoint).port;
  const client = clientWith(value, { server: `http://[::ffff:127.0.0.1]:${port}` });
  const file = h.makeFile(dir, 2 * PART + 7);
  const p = { Bucket: h.BUCKET, Key: h.uniqueKey('ipv6'), UploadFile: file, PartSize: PART, TaskNum: 2 };
  const result = await client.uploadFile(p);
  expect(result.CommonMsg.Status).toBe(200);
  await h.expectUploaded(server, p.Key, file);
});

test('a scheme written in capitals (HTTP://) is the same scheme', async () => {
  const client = h.clientFor(server, { server: server.endpoint.replace(/^http:/, 'HTTP:') });
  const file = h.makeFile(dir, 1000);
  const p = { Bucket: h.BUCKET, Key: h.uniqueKey('scheme-case'), UploadFile: file };
  expect((await client.uploadFile(p)).CommonMsg.Status).toBe(200);
  await h.expectUploaded(server, p.Key, file);
});

// Through a proxy, the connection made is the proxy's: a proxy that refuses
// is named as the proxy (it used to be reported as the S3 server refusing),
// and its credentials never appear.
test('a proxy that is not there is named in the error, without its password', async () => {
  const p = { Bucket: h.BUCKET, Key: h.uniqueKey('proxy'), UploadFile: h.makeFile(dir, 10) };
  const c = h.clientFor(server, { proxy: 'http://user:pr0xy-pw@127.0.0.1:1', max_retry_count: 0 });
  const { err } = await h.uploadWithCallback(c, p);
  expect(String(err)).toBe('InitiateMultipartUploadFailed:Error: connect ECONNREFUSED 127.0.0.1:1 (the proxy)');
  expect(String(err)).not.toContain('pr0xy-pw');
  expect(await h.newUploads(server)).toEqual([]);
});

// Many small uploads at once, one after another (a folder of small files,
// say): the connections the first round made are kept and used again by
// the next, on either transport, instead of a new connection per request.
// Over sendfile the HTTP client carries only initiates and completes; it
// used to keep two idle connections per host, so each later round of 12
// opened about 20 new connections. With a client made for each upload, the
// sendfile connections were each client's own, so each round opened 12 new
// ones for its parts.
test.each(TRANSPORTS.flatMap(([name, value]) => [[name, 'one client', value], [name, 'a client made for each upload', value]]))('%s: many small uploads at once keep their connections for the next ones (%s)', async (name, clients, value) => {
  const shared = clientWith(value);
  const clientFor = () => (clients === 'one client' ? shared : clientWith(value));
  const file = h.makeFile(dir, 64 * 1024);
  const round = async (label) => {
    const keys = Array.from({ length: 12 }, (_, i) => h.uniqueKey(`${label}-${i}`));
    const results = await Promise.all(keys.map((Key) => clientFor().uploadFile({ Bucket: h.BUCKET, Key, UploadFile: file })));
    for (const r of results) expect(r.CommonMsg.Status).toBe(200);
    for (const key of keys) await h.expectUploaded(server, key, file);
  };
  await round('warm');
  const before = await h.acceptedConnections(server);
  await server.resetStats();
  await round('again');
  const ours = (await server.stats()).requests.filter((r) => r.method !== 'GET');
  expect(ours).toHaveLength(3 * 12); // initiate, part and complete each
  expect(await partsApart()).toBe(name === 'sendfile');
  // A few at most: this round may have more requests in flight at once
  // than the first had.
  expect((await h.connectionsSince(server, before)).size).toBeLessThanOrEqual(3);
});

/**
 * A server on 127.0.0.1 in front of the test server: `answer(req, res)` may
 * answer a request itself, and then returns true; any other request is
 * passed on, where `to(req)` says (by default the same path on the test
 * server). HTTPS with the test certificate when `tls`. `front.origin` is
 * its `http(s)://127.0.0.1:port`.
 */
async function frontOf(answer, { tls = false, to } = {}) {
  const real = new URL(server.endpoint);
  const onward = to || ((req) => ({ host: real.hostname, port: real.port, path: req.url }));
  const handle = (req, res) => {
    if (!answer(req, res)) h.passOn(req, res, onward(req));
  };
  const certs = path.join(__dirname, 'fixtures', 'tls');
  const front = tls ? https.createServer({ cert: fs.readFileSync(path.join(certs, 'cert.pem')), key: fs.readFileSync(path.join(certs, 'key.pem')) }, handle) : http.createServer(handle);
  await new Promise((r) => front.listen(0, '127.0.0.1', r));
  front.origin = `${tls ? 'https' : 'http'}://127.0.0.1:${front.address().port}`;
  return front;
}

/** Answers `res` with `status` and no body, the request's body read and dropped. */
function answerWith(req, res, status, headers = {}) {
  req.resume();
  res.writeHead(status, { ...headers, 'Content-Length': 0 });
  res.end();
  return true;
}

/**
 * A front that answers every request with `status` and a Location of the
 * same path and query on `to()` (an origin such as `http://127.0.0.1:1234`).
 * Counts what it answered.
 */
async function redirector(status, to, options) {
  const front = await frontOf((req, res) => {
    front.answered += 1;
    return answerWith(req, res, status, { Location: `${to()}${req.url}` });
  }, options);
  front.answered = 0;
  return front;
}

// The reference SDK follows a redirect (a 3xx with a Location) for every
// request, parts included: the same request, signed again, to the host,
// port and scheme the Location names, counted as a retry. obs-native used to
// leave it to its HTTP client, which dropped the signature on the way to
// another host (AccessDenied) and did not follow at all on the sendfile path.
describe('redirects', () => {
  const origin = () => server.endpoint.replace(/\/$/, '');

  test.each([
    ['sendfile', 307, 'v2', '1'],
    ['buffered', 307, 'v2', '0'],
    ['sendfile', 301, 'v4', '1'],
    ['buffered', 308, 'v4', '0'],
  ])('%s: every request redirected (%i) to the real server is followed there, signed %s, as the reference SDK does', async (name, status, signature, value) => {
    const front = await redirector(status, origin);
    try {
      const file = h.makeFile(dir, 2 * PART + 5);
      const p = { Bucket: h.BUCKET, Key: h.uniqueKey('redirect'), UploadFile: file, PartSize: PART, TaskNum: 2 };
      // v4 signs the Host, so it is signed again for where it is sent.
      const options = { server: front.origin, signature, region: 'us-east-1' };
      const ours = clientWith(value, options);
      const result = await ours.uploadFile(p);
      expect(result.CommonMsg.Status).toBe(200);
      await h.expectUploaded(server, p.Key, file);
      // Initiate, 3 parts and the complete: each answered once by each server.
      expect(front.answered).toBe(5);
      const reached = (await server.stats()).requests.filter((r) => r.method !== 'GET');
      expect(reached.map((r) => [r.method, r.status, r.auth])).toEqual([
        ['POST', 200, signature],
        ...Array(3).fill(['PUT', 200, signature]),
        ['POST', 200, signature],
      ]);
      // The reference SDK, through the same redirects.
      const ref = await h.referenceClientFor(server, options);
      const refKey = h.uniqueKey('redirect-ref');
      const theirs = await h.uploadWithCallback(ref, { ...p, Key: refKey });
      expect(theirs.err).toBeFalsy();
      expect(theirs.result.CommonMsg.Status).toBe(200);
      await h.expectUploaded(server, refKey, file);
    } finally {
      front.close();
    }
  });

  test('a redirect back to itself ends after max_retry_count redirects, with the 3xx as the answer; nothing is made', async () => {
    const front = await redirector(307, () => front.origin);
    try {
      const p = { Bucket: h.BUCKET, Key: h.uniqueKey('redirect-loop'), UploadFile: h.makeFile(dir, 1000) };
      const { err } = await h.uploadWithCallback(clientWith('1', { server: front.origin, max_retry_count: 2 }), p);
      expect(String(err)).toBe('HttpStatus307:');
      expect(front.answered).toBe(3);
      expect((await server.stats()).requests).toEqual([]);
    } finally {
      front.close();
    }
  });

  test('a redirect from HTTPS to plain HTTP is not followed: the signature would go in the clear', async () => {
    const front = await redirector(307, origin, { tls: true });
    try {
      const p = { Bucket: h.BUCKET, Key: h.uniqueKey('redirect-down'), UploadFile: h.makeFile(dir, 1000) };
      const c = h.clientFor(server, { server: front.origin, ssl_verify: path.join(__dirname, 'fixtures', 'tls', 'ca.pem') });
      const { err } = await h.uploadWithCallback(c, p);
      expect(String(err)).toBe('HttpStatus307:');
      expect(front.answered).toBe(1);
      expect((await server.stats()).requests).toEqual([]);
    } finally {
      front.close();
    }
  });
});

// Any server may send interim answers (1xx) unasked, before it has read the
// request's body (RFC 9110 15.2). Over sendfile they used to be taken for an
// early final answer: the part was cut off and retried into the same
// interim answer, and the upload failed. The reference SDK completes.
test.each([
  ['100 Continue', (res) => res.writeContinue()],
  ['103 Early Hints', (res) => res.writeEarlyHints({ link: '</x>; rel=preload' })],
])('a server that sends %s on every request before reading it: both transports complete, as the reference SDK does', async (_, interim) => {
  // In front of the real server: the interim answer at once, then the
  // request passed on and its answer passed back.
  const front = await frontOf((req, res) => {
    interim(res);
    return false;
  });
  try {
    const endpoint = front.origin;
    // Parts of 5 MiB: more than the socket takes before the server reads.
    const file = h.makeFile(dir, 2 * PART + 11);
    for (const [name, value] of TRANSPORTS) {
      const p = { Bucket: h.BUCKET, Key: h.uniqueKey(`interim-${name}`), UploadFile: file, PartSize: PART, TaskNum: 2 };
      const result = await clientWith(value, { server: endpoint, max_retry_count: 0 }).uploadFile(p);
      expect(result.CommonMsg.Status).toBe(200);
      await h.expectUploaded(server, p.Key, file);
    }
    const ref = await h.referenceClientFor(server, { server: endpoint });
    const p = { Bucket: h.BUCKET, Key: h.uniqueKey('interim-ref'), UploadFile: file, PartSize: PART, TaskNum: 2 };
    const theirs = await h.uploadWithCallback(ref, p);
    expect(theirs.err).toBeFalsy();
    await h.expectUploaded(server, p.Key, file);
    expect(await h.newUploads(server)).toEqual([]);
  } finally {
    front.close();
  }
});

// The initiate is a POST without a body. Some front ends (nginx among them,
// by default) refuse a POST that gives no length with 411 Length Required;
// the reference SDK sends Content-Length: 0, and obs-native did not.
test.each(TRANSPORTS)('%s: behind a front that refuses a POST without a length (411), the upload goes through, as with the reference SDK', async (_, value) => {
  const refused = [];
  const front = await frontOf((req, res) => {
    if (req.method !== 'POST' || req.headers['content-length'] !== undefined || req.headers['transfer-encoding'] !== undefined) return false;
    refused.push(req.url);
    return answerWith(req, res, 411);
  });
  try {
    const endpoint = front.origin;
    const file = h.makeFile(dir, PART + 9);
    const p = { Bucket: h.BUCKET, Key: h.uniqueKey('length'), UploadFile: file, PartSize: PART };
    const result = await clientWith(value, { server: endpoint }).uploadFile(p);
    expect(result.CommonMsg.Status).toBe(200);
    await h.expectUploaded(server, p.Key, file);
    const ref = await h.referenceClientFor(server, { server: endpoint });
    const refKey = h.uniqueKey('length-ref');
    const theirs = await h.uploadWithCallback(ref, { ...p, Key: refKey });
    expect(theirs.err).toBeFalsy();
    await h.expectUploaded(server, refKey, file);
    expect(refused).toEqual([]);
  } finally {
    front.close();
  }
});

// A plain-HTTP proxy that wants credentials: those in the proxy's URL go
// with every request as Basic auth; without them it answers 407, which ends
// the call and sends nothing on to the server.
test('a proxy that asks for credentials gets those in its URL with every request, and 407 without them', async () => {
  const want = `Basic ${Buffer.from('user:pr0xy-pw').toString('base64')}`;
  const seen = [];
  // A proxy is asked for absolute URLs; it passes them on without its own
  // credentials.
  const onward = (req) => {
    const to = new URL(req.url);
    const headers = { ...req.headers };
    delete headers['proxy-authorization'];
    return { host: to.hostname, port: to.port, path: to.pathname + to.search, headers };
  };
  const proxy = await frontOf((req, res) => {
    seen.push(req.headers['proxy-authorization']);
    return req.headers['proxy-authorization'] !== want && answerWith(req, res, 407, { 'Proxy-Authenticate': 'Basic realm="test"' });
  }, { to: onward });
  try {
    const at = proxy.origin.replace('http://', '');
    const file = h.makeFile(dir, PART + 9);
    const p = { Bucket: h.BUCKET, Key: h.uniqueKey('proxy-auth'), UploadFile: file, PartSize: PART };
    const result = await h.clientFor(server, { proxy: `http://user:pr0xy-pw@${at}` }).uploadFile(p);
    expect(result.CommonMsg.Status).toBe(200);
    await h.expectUploaded(server, p.Key, file);
    expect(seen).toEqual(Array(4).fill(want)); // initiate, 2 parts, complete
    seen.length = 0;
    await server.resetStats();
    const { err } = await h.uploadWithCallback(h.clientFor(server, { proxy: `http://${at}`, max_retry_count: 0 }), { ...p, Key: h.uniqueKey('proxy-no-auth') });
    expect(String(err)).toBe('HttpStatus407:');
    expect(seen).toEqual([undefined]);
    expect((await server.stats()).requests).toEqual([]);
  } finally {
    proxy.close();
  }
});
