'use strict';
// HTTPS, as real OBS endpoints are reached: a TLS front (Node's https
// server, with a test certificate from __test__/fixtures/tls, signed by a
// test CA) in front of the test server. ssl_verify as the reference SDK
// defines it: false (default) accepts any certificate, true checks against
// the system roots, a path checks against that CA bundle.

const fs = require('node:fs');
const http = require('node:http');
const https = require('node:https');
const path = require('node:path');
const h = require('./helpers');

const TLS = path.join(__dirname, 'fixtures', 'tls');
const ctx = h.useServer();
let tls;
let endpoint;

beforeAll(async () => {
  tls = https.createServer({ key: fs.readFileSync(path.join(TLS, 'key.pem')), cert: fs.readFileSync(path.join(TLS, 'cert.pem')) }, (req, res) => {
    const upstream = http.request(
      { host: '127.0.0.1', port: ctx.server.port, method: req.method, path: req.url, headers: req.headers },
      (answer) => {
        res.writeHead(answer.statusCode, answer.headers);
        answer.pipe(res);
      },
    );
    upstream.on('error', () => res.destroy());
    req.pipe(upstream);
  });
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

test('ssl_verify: true refuses a certificate no system root signed, with a clear error', async () => {
  const file = h.makeFile(ctx.dir, 1000);
  const err = await httpsClient({ ssl_verify: true, max_retry_count: 0 })
    .uploadFile({ Bucket: h.BUCKET, Key: h.uniqueKey(), UploadFile: file })
    .catch((e) => e);
  expect(err.code).toBe('InitiateMultipartUploadFailed');
  expect(String(err)).toMatch(/certificate|UnknownIssuer|invalid peer/i);
  expect((await ctx.server.stats()).requests).toEqual([]);
});

test('ssl_verify: a CA bundle that does not exist is an InvalidArgument at construction', () => {
  expect(() => httpsClient({ ssl_verify: path.join(TLS, 'missing.pem') })).toThrow(expect.objectContaining({ code: 'InvalidArgument' }));
});
