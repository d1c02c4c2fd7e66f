'use strict';
// HTTPS, as real OBS endpoints are reached: a TLS front (Node's https
// server, with a test certificate from __test__/fixtures/tls, signed by a
// test CA) in front of the test server. ssl_verify as the reference SDK
// defines it: false (default) accepts any certificate, true checks against
// the system roots, a path checks against that CA bundle.

const fs = require('node:fs');
const http = require('node:http');
const https = require('node:https');
const net = require('node:net');
const path = require('node:path');
const h = require('./helpers');

const TLS = path.join(__dirname, 'fixtures', 'tls');
const ctx = h.useServer();
let tls;
let endpoint;
// The cipher suite of each connection the TLS server accepted.
const ciphers = [];

beforeAll(async () => {
  // honorCipherOrder: false, so that the client's order of cipher suites decides.
  const options = { key: fs.readFileSync(path.join(TLS, 'key.pem')), cert: fs.readFileSync(path.join(TLS, 'cert.pem')), honorCipherOrder: false };
  tls = https.createServer(options, (req, res) => h.passOn(req, res, { host: '127.0.0.1', port: ctx.server.port, path: req.url }));
  tls.on('secureConnection', (socket) => ciphers.push(socket.getCipher().standardName));
  await new Promise((r) => tls.listen(0, '127.0.0.1', r));
  endpoint = `https://127.0.0.1:${tls.address().port}`;
});

afterAll(async () => {
  await new Promise((r) => tls.close(r));
});

function httpsClient(extra) {
  return new h.ObsClient({ access_key_id: ctx.server.accessKey, secret_access_key: ctx.server.secretKey, server: endpoint, ...extra });
}

test('https with the default ssl_verify (false): uploads', async () => {
  const file = h.makeFile(ctx.dir, 5 * h.MB + 3);
  const key = h.uniqueKey('tls');
  const result = await httpsClient({}).uploadFile({ Bucket: h.BUCKET, Key: key, UploadFile: file, EnableCheckpoint: true });
  expect(result.CommonMsg.Status).toBe(200);
  await h.expectUploaded(ctx.server, key, file);
});

test('ssl_verify: a CA bundle that signed the certificate: uploads', async () => {
  const file = h.makeFile(ctx.dir, 1000);
  const key = h.uniqueKey('tls-ca');
  await httpsClient({ ssl_verify: path.join(TLS, 'ca.pem') }).uploadFile({ Bucket: h.BUCKET, Key: key, UploadFile: file });
  await h.expectUploaded(ctx.server, key, file);
});

test("TLS picks AES-128-GCM where the server follows the client (with Node's defaults the reference SDK gets AES-256-GCM)", async () => {
  const file = h.makeFile(ctx.dir, 1000);
  const key = h.uniqueKey('tls-cipher');
  ciphers.length = 0;
  // A timeout of its own: a connection pool of its own, so new connections.
  await httpsClient({ ssl_verify: path.join(TLS, 'ca.pem'), timeout: 59 }).uploadFile({ Bucket: h.BUCKET, Key: key, UploadFile: file });
  await h.expectUploaded(ctx.server, key, file);
  expect(ciphers.length).toBeGreaterThan(0);
  expect(new Set(ciphers)).toEqual(new Set(['TLS_AES_128_GCM_SHA256']));
  ciphers.length = 0;
  const ref = await h.referenceClientFor(ctx.server, { server: endpoint });
  const r = await ref.putObject({ Bucket: h.BUCKET, Key: h.uniqueKey('tls-cipher-ref'), Body: 'x' });
  expect(r.CommonMsg.Status).toBe(200);
  // Node's first TLS 1.3 suite (AES-256-GCM unless configured otherwise).
  expect(new Set(ciphers)).toEqual(new Set([require('node:tls').DEFAULT_CIPHERS.split(':')[0]]));
});

test('ssl_verify: true refuses a certificate no system root signed, with a clear error', async () => {
  const file = h.makeFile(ctx.dir, 1000);
  const err = await httpsClient({ ssl_verify: true, max_retry_count: 0 })
    .uploadFile({ Bucket: h.BUCKET, Key: h.uniqueKey(), UploadFile: file })
    .catch((e) => e);
  expect(err.code).toBe('InitiateMultipartUploadFailed');
  expect(String(err)).toMatch(/certificate|UnknownIssuer|invalid peer/i);
  expect((await ctx.server.stats()).requests).toEqual([]);
});

test('ssl_verify: a CA file replaced in place is read anew by the next client', async () => {
  const file = h.makeFile(ctx.dir, 1000);
  const ca = path.join(ctx.dir, `rotating-ca-${process.pid}.pem`);
  // First the wrong certificate (the server's own, which is no CA) ...
  fs.copyFileSync(path.join(TLS, 'cert.pem'), ca);
  const refused = await httpsClient({ ssl_verify: ca, max_retry_count: 0 })
    .uploadFile({ Bucket: h.BUCKET, Key: h.uniqueKey(), UploadFile: file })
    .catch((e) => e);
  expect(refused.code).toBe('InitiateMultipartUploadFailed');
  expect(String(refused)).toMatch(/certificate|UnknownIssuer|invalid peer/i);
  // ... then the CA that signed it, at the same path.
  fs.copyFileSync(path.join(TLS, 'ca.pem'), ca);
  const key = h.uniqueKey('tls-rotated-ca');
  await httpsClient({ ssl_verify: ca, max_retry_count: 0 }).uploadFile({ Bucket: h.BUCKET, Key: key, UploadFile: file });
  await h.expectUploaded(ctx.server, key, file);
});

test('ssl_verify: a CA bundle that does not exist is an InvalidArgument at construction', () => {
  expect(() => httpsClient({ ssl_verify: path.join(TLS, 'missing.pem') })).toThrow(expect.objectContaining({ code: 'InvalidArgument' }));
});

describe("the test server's own HTTPS port (rustls on both sides, as the benchmark uses it)", () => {
  const direct = h.useServer({ tls: { cert: path.join(TLS, 'cert.pem'), key: path.join(TLS, 'key.pem') } });

  test('a multi-part upload over kept-alive TLS connections: same bytes, same ETag as the reference SDK', async () => {
    expect(direct.server.endpoint).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
    const file = h.makeFile(direct.dir, 3 * 5 * h.MB + 17);
    const ours = h.uniqueKey('tls-direct');
    const theirs = h.uniqueKey('tls-direct-ref');
    const options = { PartSize: 5 * h.MB, TaskNum: 2 };
    const a = await h
      .clientFor(direct.server, { ssl_verify: path.join(TLS, 'ca.pem') })
      .uploadFile({ Bucket: h.BUCKET, Key: ours, UploadFile: file, ...options });
    const ref = await h.referenceClientFor(direct.server);
    const b = await new Promise((resolve) =>
      ref.uploadFile({ Bucket: h.BUCKET, Key: theirs, UploadFile: file, ...options }, (err, r) => resolve(err || r)),
    );
    expect(a.CommonMsg.Status).toBe(200);
    expect(b.CommonMsg.Status).toBe(200);
    expect(a.InterfaceResult.ETag).toBe(b.InterfaceResult.ETag);
    await h.expectUploaded(direct.server, ours, file);
    await h.expectUploaded(direct.server, theirs, file);
    // Four parts from each client, every one answered over TLS.
    const puts = await h.partPuts(direct.server);
    expect(puts.length).toBe(8);
  });

  test('kept TLS connections the server closed are not used again (no retries allowed)', async () => {
    const client = h.clientFor(direct.server, { ssl_verify: path.join(TLS, 'ca.pem'), max_retry_count: 0 });
    const file = h.makeFile(direct.dir, 2 * 5 * h.MB);
    const first = { Bucket: h.BUCKET, Key: h.uniqueKey('tls-keepalive'), UploadFile: file, PartSize: 5 * h.MB, TaskNum: 2 };
    expect((await client.uploadFile(first)).CommonMsg.Status).toBe(200);
    // Kept: the same upload again opens no connection (one at most, which
    // the HTTP client may open in a race with a connection on its way back
    // to its pool; without keep-alive each of the 4 requests opens one).
    const kept = await h.acceptedConnections(direct.server);
    expect((await client.uploadFile({ ...first, Key: h.uniqueKey('tls-keepalive') })).CommonMsg.Status).toBe(200);
    expect((await h.connectionsSince(direct.server, kept)).size).toBeLessThanOrEqual(1);
    // The restart closes every connection the client keeps for reuse.
    await direct.server.stopS3();
    await direct.server.startS3();
    const second = { ...first, Key: h.uniqueKey('tls-keepalive') };
    expect((await client.uploadFile(second)).CommonMsg.Status).toBe(200);
    await h.expectUploaded(direct.server, first.Key, file);
    await h.expectUploaded(direct.server, second.Key, file);
  });

  test('a client that refuses the certificate (ssl_verify: true) sends nothing', async () => {
    const file = h.makeFile(direct.dir, 1000);
    const err = await h
      .clientFor(direct.server, { ssl_verify: true, max_retry_count: 0 })
      .uploadFile({ Bucket: h.BUCKET, Key: h.uniqueKey(), UploadFile: file })
      .catch((e) => e);
    expect(err.code).toBe('InitiateMultipartUploadFailed');
    expect((await direct.server.stats()).requests).toEqual([]);
  });
});

// HTTPS through an HTTP proxy: the client asks the proxy for a tunnel
// (CONNECT) and speaks TLS with the endpoint inside it. The proxy here is a
// few lines of Node that count the tunnels and pipe bytes both ways.
describe('HTTPS through a proxy (CONNECT tunnel)', () => {
  let proxy;
  let proxyUrl;
  const tunnels = [];
  // The Proxy-Authorization each tunnel was asked with.
  const auths = [];

  beforeAll(async () => {
    proxy = http.createServer((req, res) => res.writeHead(405).end());
    proxy.on('connect', (req, client, head) => {
      tunnels.push(req.url);
      auths.push(req.headers['proxy-authorization']);
      const [host, port] = req.url.split(':');
      const upstream = net.connect(Number(port), host, () => {
        client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
        upstream.write(head);
        upstream.pipe(client);
        client.pipe(upstream);
      });
      upstream.on('error', () => client.destroy());
      client.on('error', () => upstream.destroy());
    });
    await new Promise((r) => proxy.listen(0, '127.0.0.1', r));
    proxyUrl = `http://user:pr0xy-pw@127.0.0.1:${proxy.address().port}`;
  });

  afterAll(async () => {
    proxy.closeAllConnections();
    await new Promise((r) => proxy.close(r));
  });

  test('uploads through the tunnel: same bytes, every request tunnelled to the endpoint', async () => {
    tunnels.length = 0;
    auths.length = 0;
    const file = h.makeFile(ctx.dir, 2 * 5 * h.MB + 9);
    const key = h.uniqueKey('tls-proxy');
    const result = await httpsClient({ proxy: proxyUrl, ssl_verify: path.join(TLS, 'ca.pem') }).uploadFile({ Bucket: h.BUCKET, Key: key, UploadFile: file, PartSize: 5 * h.MB, TaskNum: 2 });
    expect(result.CommonMsg.Status).toBe(200);
    await h.expectUploaded(ctx.server, key, file);
    expect(tunnels.length).toBeGreaterThan(0);
    expect(new Set(tunnels)).toEqual(new Set([new URL(endpoint).host]));
    // The credentials in the proxy's URL, as Basic auth, on every tunnel.
    expect(new Set(auths)).toEqual(new Set([`Basic ${Buffer.from('user:pr0xy-pw').toString('base64')}`]));
  });

  // The tunnel is made; the certificate inside it is the endpoint's, so the
  // error names the endpoint, not the proxy.
  test("a certificate refused inside the tunnel is the endpoint's error, not the proxy's", async () => {
    const file = h.makeFile(ctx.dir, 1000);
    const err = await httpsClient({ proxy: proxyUrl, ssl_verify: true, max_retry_count: 0 })
      .uploadFile({ Bucket: h.BUCKET, Key: h.uniqueKey(), UploadFile: file })
      .catch((e) => e);
    expect(err.code).toBe('InitiateMultipartUploadFailed');
    expect(String(err)).toMatch(/certificate|UnknownIssuer|invalid peer/i);
    expect(String(err)).toContain(new URL(endpoint).host);
    expect(String(err)).not.toContain('(the proxy)');
    expect(String(err)).not.toContain('pr0xy-pw');
  });
});
