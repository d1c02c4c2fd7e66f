'use strict';
// The OBS protocol end to end: obs-native with default options (signature
// 'obs', negotiation, virtual-hosted requests) against the test server's OBS
// front, reached through the `proxy` option as no DNS knows `obs.test`.
// The reference SDK passes the same front, as a check on the front itself.
// Also: security tokens, and credentials that expire or rotate mid-upload.

const fs = require('node:fs');
const h = require('./helpers');
const kit = require('./kit/server.js');

const { MB } = h;
const PART = 5 * MB;
const DOMAIN = 'obs.test';

const ctx = h.useServer({ mode: 'obs', domain: DOMAIN });
let server;
let dir;

beforeAll(() => {
  ({ server, dir } = ctx);
});

/** obs-native with the options a user of Huawei OBS writes, plus the proxy. */
function obsClient(extra = {}) {
  return new h.ObsClient({
    access_key_id: server.accessKey,
    secret_access_key: server.secretKey,
    server: `http://${DOMAIN}:${server.port}`,
    proxy: server.endpoint,
    ...extra,
  });
}

/** The reference SDK with default options, its connections sent to the test server. */
async function referenceObsClient(extra = {}) {
  const c = new h.ReferenceClient({
    access_key_id: server.accessKey,
    secret_access_key: server.secretKey,
    server: `http://${DOMAIN}:${server.port}`,
    http_agent: server.localAgent(),
    ...extra,
  });
  await new Promise((r) => setImmediate(r));
  return c;
}

test('default options: negotiates OBS, signs every request the OBS way, and the object is byte-identical', async () => {
  const file = h.makeFile(dir, 2 * PART + 5);
  const key = h.uniqueKey('obs');
  const result = await obsClient().uploadFile({ Bucket: h.BUCKET, Key: key, UploadFile: file, EnableCheckpoint: true });
  expect(result.CommonMsg.Status).toBe(200);
  expect(result.InterfaceResult.RequestId).toEqual(expect.any(String));
  expect(result.InterfaceResult.RequestId.length).toBeGreaterThan(0);
  const { requests } = await server.stats();
  expect(requests[0]).toMatchObject({ method: 'HEAD', query: 'apiversion', auth: 'none' });
  expect(requests.slice(1).every((r) => r.auth === 'obs')).toBe(true);
  expect(requests.every((r) => r.host.startsWith(`${h.BUCKET}.${DOMAIN}`))).toBe(true);
  expect(requests.filter((r) => r.method === 'PUT')).toHaveLength(3);
  await h.expectUploaded(server, key, file);
});

test('the reference SDK passes the same front, and both give the same result keys and values', async () => {
  const file = h.makeFile(dir, PART + 1);
  const ref = await referenceObsClient();
  const theirs = await ref.uploadFile({ Bucket: h.BUCKET, Key: 'obs-ref', UploadFile: file, EnableCheckpoint: true });
  const ours = await obsClient().uploadFile({ Bucket: h.BUCKET, Key: 'obs-native', UploadFile: file, EnableCheckpoint: true });
  const shape = (r) =>
    Object.entries(r).map(([k, v]) => [k, ['RequestId', 'Id2', 'Date', 'Key'].includes(k) ? typeof v : v]);
  expect(shape(ours.CommonMsg)).toEqual(shape(theirs.CommonMsg));
  expect(shape(ours.InterfaceResult)).toEqual(shape(theirs.InterfaceResult));
  const { requests } = await server.stats();
  expect(requests.filter((r) => r.auth === 'obs').length).toBeGreaterThan(4);
  await h.expectUploaded(server, 'obs-native', file);
  await h.expectUploaded(server, 'obs-ref', file);
});

test('a wrong secret key gets the OBS error through both SDKs', async () => {
  const file = h.makeFile(dir, 10);
  const params = { Bucket: h.BUCKET, Key: h.uniqueKey(), UploadFile: file };
  const ref = await referenceObsClient({ secret_access_key: 'wrong' });
  const theirs = await new Promise((r) => ref.uploadFile(params, r));
  const ours = await obsClient({ secret_access_key: 'wrong' }).uploadFile(params).catch((e) => e);
  expect(ours.code).toBe('SignatureDoesNotMatch');
  expect(String(ours)).toBe(theirs);
});

test('a machine clock an hour behind the server\'s: the refusal (RequestTimeTooSkewed, in OBS\'s words) sets the client\'s clock, and the upload succeeds; the reference SDK fails', async () => {
  await server.setClock(3600);
  try {
    const file = h.makeFile(dir, 2 * PART + 5);
    const key = h.uniqueKey('obs-skewed');
    const result = await obsClient({ max_retry_count: 0 }).uploadFile({ Bucket: h.BUCKET, Key: key, UploadFile: file });
    expect(result.CommonMsg.Status).toBe(200);
    const { requests } = await server.stats();
    expect(requests.filter((r) => r.status === 403).map((r) => `${r.method} ${r.query} ${r.auth}`)).toEqual(['POST uploads obs']);
    expect(requests.slice(1).every((r) => r.auth === 'obs')).toBe(true);
    const { err } = await h.uploadWithCallback(await referenceObsClient(), { Bucket: h.BUCKET, Key: `${key}-ref`, UploadFile: file });
    expect(String(err)).toMatch(/^RequestTimeTooSkewed:/);
    await server.setClock(0);
    await h.expectUploaded(server, key, file);
  } finally {
    await server.setClock(0);
  }
});

describe('credentials', () => {
  afterEach(async () => {
    await server.setCredentials({ accessKey: kit.DEFAULT_ACCESS_KEY, secretKey: kit.DEFAULT_SECRET_KEY, securityToken: null });
  });

  test('a security token is sent with every request', async () => {
    await server.setCredentials({ accessKey: 'temp-ak', secretKey: 'temp-sk', securityToken: 'the-token' });
    const file = h.makeFile(dir, PART + 1);
    const params = { Bucket: h.BUCKET, Key: h.uniqueKey('token'), UploadFile: file };
    const without = await obsClient({ access_key_id: 'temp-ak', secret_access_key: 'temp-sk' }).uploadFile(params).catch((e) => e);
    expect(without.status).toBe(403);
    await obsClient({ access_key_id: 'temp-ak', secret_access_key: 'temp-sk', security_token: 'the-token' }).uploadFile(params);
    await h.expectUploaded(server, params.Key, file);
  });

  // A temporary token running out mid-upload: the upload stops but keeps
  // its record and its multipart upload; after refresh() the same call
  // resumes and sends only what is missing.
  test.each([
    ['obs', () => obsClient()],
    ['v2', () => h.clientFor(server)],
  ])('credentials rotated mid-upload (%s): record and upload kept, refresh() resumes', async (_, make) => {
    const c = make();
    const file = h.makeFile(dir, 5 * PART);
    const key = h.uniqueKey('rotate');
    const params = { Bucket: h.BUCKET, Key: key, UploadFile: file, TaskNum: 1, EnableCheckpoint: true };
    let rotated;
    const { err } = await h.uploadWithCallback(c, {
      ...params,
      ProgressCallback: (t) => {
        if (t >= 2 * PART && !rotated) {
          rotated = server.setCredentials({ accessKey: 'new-ak', secretKey: 'new-sk' });
        }
      },
    });
    await rotated;
    expect(err.status).toBe(403);
    expect(['InvalidAccessKeyId', 'SignatureDoesNotMatch', 'NotSignedUp']).toContain(err.code);
    const record = JSON.parse(fs.readFileSync(`${file}.upload_record`, 'utf8'));
    const done = Object.keys(record.partsMeta).filter((n) => record.partsMeta[n].isCompleted).map(Number);
    expect(done.length).toBeGreaterThanOrEqual(2);
    expect(await h.newUploads(server)).toEqual([record.uploadId]);

    await server.resetStats();
    c.refresh('new-ak', 'new-sk');
    const result = await c.uploadFile(params);
    expect(result.CommonMsg.Status).toBe(200);
    const sent = (await h.partPuts(server)).map((r) => Number(/partNumber=(\d+)/.exec(r.query)[1]));
    expect(sent.sort()).toEqual([1, 2, 3, 4, 5].filter((n) => !done.includes(n)));
    await h.expectUploaded(server, key, file);
  });
});

// The reference SDK negotiates per bucket whatever `signature` says (unless
// negotiation is off); so does obs-native, except for 'v4' with a region.
test.each([
  ['v2', {}, 'obs'],
  ['v4 without a region', { signature: 'v4' }, 'obs'],
  ['v2, negotiation off', { is_signature_negotiation: false }, 'v2'],
])("signature '%s' signs as the reference SDK does", async (_, extra, expected) => {
  const options = { signature: 'v2', ...extra };
  const file = h.makeFile(dir, 10);
  for (const c of [obsClient(options), await referenceObsClient(options)]) {
    await server.resetStats();
    const key = h.uniqueKey('sig');
    const { err } = await h.uploadWithCallback(c, { Bucket: h.BUCKET, Key: key, UploadFile: file });
    expect(err).toBeFalsy();
    const signed = (await server.stats()).requests.filter((r) => r.auth !== 'none').map((r) => r.auth);
    expect([...new Set(signed)]).toEqual([expected]);
    await h.expectUploaded(server, key, file);
  }
});

// A new client (a restarted process) negotiates the protocol before it
// resumes; the server being away then is the same fault as during the
// parts, and gets the same answer: the upload stays resumable.
test('a resume by a new client while the server is away: IncompletedUpload with the upload id, record kept; the same call finishes once it is back', async () => {
  const file = h.makeFile(dir, 3 * PART);
  const p = { Bucket: h.BUCKET, Key: h.uniqueKey('away'), UploadFile: file, PartSize: PART, TaskNum: 1, EnableCheckpoint: true };
  await server.addFault({ method: 'PUT', query: { partNumber: '2' }, times: 1, action: { delay_ms: 500 } });
  // Past PART, not at it: progress counts part 1's bytes as the socket takes
  // them, before the server has answered for it, and a cancel then drops it.
  // One byte more is part 2's, sent only once part 1 is done (TaskNum 1).
  expect((await h.uploadStoppedAt(obsClient(), p, PART + 1, 'cancel')).err.code).toBe('Upload suspened');
  const record = JSON.parse(fs.readFileSync(`${file}.upload_record`, 'utf8'));
  await server.clearFaults();
  await server.stopS3();
  try {
    const { err } = await h.uploadWithCallback(obsClient({ max_retry_count: 0 }), p);
    expect(err.code).toBe('IncompletedUpload');
    expect(err.message).toMatch(/ECONNREFUSED/);
    expect(err.uploadId).toBe(record.uploadId);
    expect(JSON.parse(fs.readFileSync(`${file}.upload_record`, 'utf8'))).toEqual(record);
  } finally {
    await server.startS3();
  }
  await server.resetStats();
  await obsClient().uploadFile(p);
  await h.expectUploaded(server, p.Key, file);
  const { requests } = await server.stats();
  expect(requests.some((r) => r.method === 'HEAD' && /apiversion/.test(r.query))).toBe(true);
  const sent = (await h.partPuts(server)).map((r) => Number(/partNumber=(\d+)/.exec(r.query)[1]));
  expect(sent.sort()).toEqual([2, 3]);
});

// Each bucket is negotiated under its own lock: a bucket whose negotiation
// hangs holds up only the uploads to that bucket.
test('a slow negotiation of one bucket does not hold up uploads to a bucket already negotiated', async () => {
  const c = obsClient();
  const file = h.makeFile(dir, PART + 1);
  const first = { Bucket: h.BUCKET, Key: h.uniqueKey('neg'), UploadFile: file };
  await c.uploadFile(first);
  await server.addFault({ method: 'HEAD', query: { apiversion: null }, times: 0, action: { delay_ms: 3000 } });
  const order = [];
  const slow = h.uploadWithCallback(c, { Bucket: 'no-such-bucket', Key: 'k', UploadFile: file }).then((r) => {
    order.push('slow bucket');
    return r;
  });
  await new Promise((r) => setTimeout(r, 100));
  const second = { ...first, Key: h.uniqueKey('neg') };
  await c.uploadFile(second);
  order.push('negotiated bucket');
  expect((await slow).err.code).toBe('NoSuchBucket');
  expect(order).toEqual(['negotiated bucket', 'slow bucket']);
  await h.expectUploaded(server, second.Key, file);
});

// A stale record is removed only once its upload is aborted; a record whose
// bucket no longer exists (404 at negotiation) can hold no upload, so it
// goes at once instead of failing every later call.
test('a stale record for a bucket that no longer exists is removed: CheckpointFileInvalid, then a clean start', async () => {
  const file = h.makeFile(dir, 3 * PART);
  const p = { Bucket: h.BUCKET, Key: h.uniqueKey('gone'), UploadFile: file, PartSize: PART, TaskNum: 1, EnableCheckpoint: true };
  await server.addFault({ method: 'PUT', query: { partNumber: '2' }, times: 1, action: { delay_ms: 500 } });
  expect((await h.uploadStoppedAt(obsClient(), p, PART, 'cancel')).err.code).toBe('Upload suspened');
  await server.clearFaults();
  const recordPath = `${file}.upload_record`;
  const record = JSON.parse(fs.readFileSync(recordPath, 'utf8'));
  fs.writeFileSync(recordPath, JSON.stringify({ ...record, bucketName: 'bucket-deleted-since' }));

  const { err } = await h.uploadWithCallback(obsClient(), p);
  expect(String(err)).toBe('CheckpointFileInvalid:CheckpointFile is invalid!');
  expect(fs.existsSync(recordPath)).toBe(false);
  // The upload the record pointed to is in a bucket that exists; a deleted
  // bucket would have taken it along. Take it away as that would.
  const ref = await referenceObsClient();
  const aborted = await ref.abortMultipartUpload({ Bucket: h.BUCKET, Key: p.Key, UploadId: record.uploadId });
  expect(aborted.CommonMsg.Status).toBeLessThan(300);
  await obsClient().uploadFile(p);
  await h.expectUploaded(server, p.Key, file);
});

// Negotiation asks the bucket; a 404 there has no body. The reference SDK
// reports ':' (empty code and message); obs-native names it.
test('an unknown bucket is NoSuchBucket at negotiation', async () => {
  const file = h.makeFile(dir, 100);
  const params = { Bucket: 'no-such-bucket', Key: 'k', UploadFile: file, EnableCheckpoint: true };
  const ref = await referenceObsClient();
  const theirs = await new Promise((r) => ref.uploadFile(params, r));
  expect(theirs).toBe(':');
  const err = await obsClient().uploadFile(params).catch((e) => e);
  expect(err.code).toBe('NoSuchBucket');
  expect(err.status).toBe(404);
  expect(String(err)).toBe('NoSuchBucket:The specified bucket does not exist');
  expect(fs.existsSync(`${file}.upload_record`)).toBe(false);
});
