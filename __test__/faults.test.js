'use strict';
// Transient faults are retried per request; faults that outlast the
// retries keep the record (with a checkpoint) or abort (without); a 4xx
// stops the upload. Faults come from the test server's front, in front of
// the real store.

const fs = require('node:fs');
const h = require('./helpers');

const { MB } = h;
const PART = 5 * MB;

const ctx = h.useServer();
let server;
let client;
let dir;

beforeAll(() => {
  ({ server, client, dir } = ctx);
});

const onPart = (n, action, times = 1) => ({ method: 'PUT', query: { partNumber: String(n) }, times, action });

function params(file, extra = {}) {
  return { Bucket: h.BUCKET, Key: h.uniqueKey('fault'), UploadFile: file, PartSize: PART, TaskNum: 2, ...extra };
}

test.each([
  ['503 with an XML error body', { status: 503, code: 'ServiceUnavailable', message: 'busy' }],
  ['500', { status: 500, code: 'InternalError', message: 'oops' }],
  ['429', { status: 429, code: 'SlowDown', message: 'slow down' }],
  ['a connection reset mid-body', { reset_after_bytes: 1024 * 1024 }],
])('a part that fails once with %s is retried and the upload succeeds', async (_, action) => {
  const file = h.makeFile(dir, 3 * PART + 1);
  const p = params(file, { EnableCheckpoint: true });
  await server.addFault(onPart(2, action));
  const result = await client.uploadFile(p);
  expect(result.CommonMsg.Status).toBe(200);
  const part2 = (await server.stats()).requests.filter((r) => r.method === 'PUT' && /partNumber=2&/.test(r.query));
  expect(part2).toHaveLength(2);
  await h.expectUploaded(server, p.Key, file);
});

test('initiate and complete are retried too', async () => {
  const file = h.makeFile(dir, PART + 1);
  const p = params(file);
  await server.addFault({ method: 'POST', query: { uploads: null }, action: { status: 503, code: 'ServiceUnavailable', message: 'x' } });
  await server.addFault({ method: 'POST', query: { uploadId: null }, action: { status: 500, code: 'InternalError', message: 'x' } });
  await client.uploadFile(p);
  await h.expectUploaded(server, p.Key, file);
  expect(await h.faultsFired(server)).toEqual([1, 1]);
});

// S3 may answer a CompleteMultipartUpload 200 and put the error (an
// InternalError, as a rule) in the body; that is retried as a 500 is. It
// used to end the call at the first such answer.
describe('a complete answered 200 with an <Error> body', () => {
  const onComplete = (times) => ({ method: 'POST', query: { uploadId: null }, times, action: { status: 200, code: 'InternalError', message: 'try again' } });

  test('once: retried, and the upload succeeds', async () => {
    const file = h.makeFile(dir, PART + 1);
    const p = params(file, { EnableCheckpoint: true });
    await server.resetStats();
    await server.addFault(onComplete(1));
    const result = await client.uploadFile(p);
    expect(result.CommonMsg.Status).toBe(200);
    expect(await h.completes(server)).toHaveLength(2);
    expect(fs.existsSync(`${file}.upload_record`)).toBe(false);
    await h.expectUploaded(server, p.Key, file);
  });

  test('every time: IncompletedUpload after the retries, record kept; the next call completes without sending a part again', async () => {
    const file = h.makeFile(dir, PART + 1);
    const p = params(file, { EnableCheckpoint: true });
    const c = h.clientFor(server, { max_retry_count: 1 });
    await server.resetStats();
    await server.addFault(onComplete(0));
    const { err } = await h.uploadWithCallback(c, p);
    expect(err.code).toBe('IncompletedUpload');
    expect(err.serviceCode).toBe('InternalError');
    expect(await h.completes(server)).toHaveLength(2);
    expect(fs.existsSync(`${file}.upload_record`)).toBe(true);

    await server.clearFaults();
    await server.resetStats();
    await c.uploadFile(p);
    expect(await h.partPuts(server)).toEqual([]);
    await h.expectUploaded(server, p.Key, file);
  });
});

// On resume, a ListParts answered 200 with an <Error> body used to read as
// "no parts on the server", and the whole file was sent again.
test('a resume whose ListParts keeps answering 200 with an <Error> body: IncompletedUpload, nothing sent, record kept; later the missing parts only', async () => {
  const file = h.makeFile(dir, 3 * PART);
  const p = params(file, { EnableCheckpoint: true, TaskNum: 1 });
  await server.addFault(onPart(2, { delay_ms: 500 }));
  expect((await h.uploadStoppedAt(client, p, PART + 1, 'cancel')).err.code).toBe('Upload suspened');
  const record = fs.readFileSync(`${file}.upload_record`, 'utf8');
  await server.clearFaults();
  await server.resetStats();
  await server.addFault({ method: 'GET', query: { uploadId: null }, times: 0, action: { status: 200, code: 'InternalError', message: 'try again' } });
  const { err } = await h.uploadWithCallback(h.clientFor(server, { max_retry_count: 1 }), p);
  expect(err.code).toBe('IncompletedUpload');
  expect(err.serviceCode).toBe('InternalError');
  const lists = (await server.stats()).requests.filter((r) => r.method === 'GET' && /uploadId=/.test(r.query));
  expect(lists).toHaveLength(2);
  expect(await h.partPuts(server)).toEqual([]);
  expect(fs.readFileSync(`${file}.upload_record`, 'utf8')).toBe(record);

  await server.clearFaults();
  await server.resetStats();
  await client.uploadFile(p);
  expect((await h.partPuts(server)).map((r) => Number(/partNumber=(\d+)/.exec(r.query)[1])).sort()).toEqual([2, 3]);
  await h.expectUploaded(server, p.Key, file);
});

test('a part that keeps failing: IncompletedUpload, record and upload kept; the next call finishes it', async () => {
  const file = h.makeFile(dir, 4 * PART);
  const p = params(file, { EnableCheckpoint: true });
  const c = h.clientFor(server, { max_retry_count: 1 });
  await server.addFault(onPart(3, { status: 503, code: 'ServiceUnavailable', message: 'down' }, 0));
  const { err } = await h.uploadWithCallback(c, p);
  expect(err.code).toBe('IncompletedUpload');
  expect(String(err)).toBe('IncompletedUpload:UploadFile finished with error, you can retry with the same parameters');
  const record = JSON.parse(fs.readFileSync(`${file}.upload_record`, 'utf8'));
  expect(record.partsMeta['3'].isCompleted).toBe(false);
  expect(await h.newUploads(server)).toEqual([record.uploadId]);
  // Two attempts (one retry) of part 3, each answered 503.
  const attempts = (await server.stats()).requests.filter((r) => /partNumber=3&/.test(r.query));
  expect(attempts.map((r) => r.status)).toEqual([503, 503]);

  await server.clearFaults();
  await server.resetStats();
  await c.uploadFile(p);
  const sent = (await h.partPuts(server)).map((r) => /partNumber=(\d+)/.exec(r.query)[1]);
  expect(sent).toEqual(['3']);
  await h.expectUploaded(server, p.Key, file);
});

test('without a checkpoint, parts that keep failing abort the upload', async () => {
  const file = h.makeFile(dir, 2 * PART);
  const c = h.clientFor(server, { max_retry_count: 0 });
  await server.addFault(onPart(1, { status: 500, code: 'InternalError', message: 'x' }, 0));
  const { err } = await h.uploadWithCallback(c, params(file));
  expect(err.code).toBe('UploadFileFailed');
  expect(String(err)).toBe('UploadFileFailed:UploadFile finished with error!');
  expect(await h.newUploads(server)).toEqual([]);
});

test('a 4xx on a part stops the upload, aborts it and removes the record', async () => {
  const file = h.makeFile(dir, 3 * PART);
  const p = params(file, { EnableCheckpoint: true, TaskNum: 1 });
  await server.addFault(onPart(2, { status: 400, code: 'InvalidArgument', message: 'refused' }));
  const { err } = await h.uploadWithCallback(client, p);
  expect(err.code).toBe('InvalidArgument');
  expect(err.status).toBe(400);
  expect(String(err)).toBe('InvalidArgument:refused');
  expect(fs.existsSync(`${file}.upload_record`)).toBe(false);
  expect(await h.newUploads(server)).toEqual([]);
  const parts = (await server.stats()).requests.filter((r) => r.method === 'PUT');
  expect(parts.map((r) => r.status)).toEqual([200, 400]);
});

test('a response that never comes times out and is retried', async () => {
  const file = h.makeFile(dir, 2 * PART);
  const p = params(file);
  const c = h.clientFor(server, { timeout: 1 });
  await server.addFault(onPart(1, { hang: true }));
  await c.uploadFile(p);
  await h.expectUploaded(server, p.Key, file);
  expect(await h.faultsFired(server)).toEqual([1]);
});

test('TaskNum is a sliding window: later parts go on while an early one is slow', async () => {
  const file = h.makeFile(dir, 6 * PART);
  const p = params(file, { TaskNum: 2 });
  await server.addFault(onPart(1, { delay_ms: 2500 }));
  const upload = client.uploadFile(p);
  // While part 1 is held, parts 2..6 all pass through the other slot.
  const deadline = Date.now() + 2000;
  let done = [];
  while (Date.now() < deadline) {
    const { requests } = await server.stats();
    done = requests.filter((r) => r.method === 'PUT' && r.status === 200).map((r) => /partNumber=(\d+)/.exec(r.query)[1]);
    if (done.length === 5) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  expect(done.sort()).toEqual(['2', '3', '4', '5', '6']);
  await upload;
  await h.expectUploaded(server, p.Key, file);
});

test('the server gone away: initiate fails with the reference SDK code after retries', async () => {
  const file = h.makeFile(dir, 10);
  const c = new h.ObsClient({ access_key_id: 'a', secret_access_key: 'b', server: 'http://127.0.0.1:1', max_retry_count: 1 });
  const { err, result } = await h.uploadWithCallback(c, params(file, { EnableCheckpoint: true }));
  expect(result).toBeUndefined();
  expect(err.code).toBe('InitiateMultipartUploadFailed');
  expect(String(err)).toBe('InitiateMultipartUploadFailed:Error: connect ECONNREFUSED 127.0.0.1:1');
  expect(fs.existsSync(`${file}.upload_record`)).toBe(false);
});

test('the server stopped mid-upload: IncompletedUpload, then the same call finishes once it is back', async () => {
  const file = h.makeFile(dir, 4 * PART);
  const p = params(file, { EnableCheckpoint: true, TaskNum: 1 });
  const c = h.clientFor(server, { max_retry_count: 1 });
  await server.addFault(onPart(2, { delay_ms: 300 }));
  const first = h.uploadWithCallback(c, {
    ...p,
    ProgressCallback: (t) => {
      if (t >= PART && !first.stopping) {
        first.stopping = server.stopS3();
      }
    },
  });
  const { err } = await first;
  await first.stopping;
  expect(err.code).toBe('IncompletedUpload');
  expect(fs.existsSync(`${file}.upload_record`)).toBe(true);
  await server.startS3();
  await server.clearFaults();
  await c.uploadFile(p);
  await h.expectUploaded(server, p.Key, file);
});

describe('faults on abort', () => {
  async function abortedUpload(c, file, extra = {}) {
    await server.addFault(onPart(2, { delay_ms: 500 }));
    return h.uploadStoppedAt(c, { ...params(file, { EnableCheckpoint: true, TaskNum: 1 }), ...extra }, PART, 'abort');
  }

  test('an abort that fails once is retried: upload aborted, record removed', async () => {
    const file = h.makeFile(dir, 3 * PART);
    await server.addFault({ method: 'DELETE', action: { status: 503, code: 'ServiceUnavailable', message: 'x' } });
    const { err } = await abortedUpload(client, file);
    expect(String(err)).toBe('Upload isAbort:The process of uploadFile is isAbort');
    expect(fs.existsSync(`${file}.upload_record`)).toBe(false);
    expect(await h.newUploads(server)).toEqual([]);
    const deletes = (await server.stats()).requests.filter((r) => r.method === 'DELETE').map((r) => r.status);
    expect(deletes).toEqual([503, 204]);
  });

  // 503: the server is down. 403: a policy that allows uploading and
  // reading the bucket but not AbortMultipartUpload (a separate permission
  // in OBS and S3); the upload is still there, so the record stays.
  test.each([
    [503, 'ServiceUnavailable', 'down'],
    [403, 'AccessDenied', 'no abort for you'],
  ])('an abort that keeps failing (%s) keeps the record, so the upload is not lost track of', async (status, code, message) => {
    const file = h.makeFile(dir, 3 * PART);
    const c = h.clientFor(server, { max_retry_count: 1 });
    await server.addFault({ method: 'DELETE', times: 0, action: { status, code, message } });
    const { err } = await abortedUpload(c, file);
    expect(err.code).toBe('Upload isAbort');
    expect(err.message).toContain(`could not be aborted (Status:${status},Code:${code},Message:${message}), the record is kept`);
    const record = JSON.parse(fs.readFileSync(`${file}.upload_record`, 'utf8'));
    expect(await h.newUploads(server)).toEqual([record.uploadId]);
    // The same call with the server healthy finishes the upload.
    await server.clearFaults();
    await c.uploadFile({ Bucket: h.BUCKET, Key: record.objectKey, UploadFile: file, EnableCheckpoint: true, TaskNum: 1 });
    await h.expectUploaded(server, record.objectKey, file);
  });

  // The record no longer fits the file, and its upload cannot be aborted:
  // removing the record would leave that upload on the server with nothing
  // pointing at it. The reference SDK keeps the record too.
  test('a stale record whose upload cannot be aborted is kept (CheckpointFileInvalid); the next call aborts it and removes it', async () => {
    const file = h.makeFile(dir, 3 * PART);
    const c = h.clientFor(server, { max_retry_count: 0 });
    await server.addFault(onPart(2, { delay_ms: 500 }));
    const p = params(file, { EnableCheckpoint: true, TaskNum: 1 });
    expect((await h.uploadStoppedAt(c, p, PART, 'cancel')).err.code).toBe('Upload suspened');
    const record = JSON.parse(fs.readFileSync(`${file}.upload_record`, 'utf8'));
    const later = new Date(Date.now() + 10000);
    fs.utimesSync(file, later, later);
    await server.clearFaults();
    await server.addFault({ method: 'DELETE', times: 0, action: { status: 503, code: 'ServiceUnavailable', message: 'down' } });

    const first = await h.uploadWithCallback(c, p);
    expect(first.err.code).toBe('CheckpointFileInvalid');
    expect(first.err.message).toMatch(/could not be aborted \(Status:503,Code:ServiceUnavailable,Message:down\), the record is kept/);
    expect(first.err.uploadId).toBe(record.uploadId);
    expect(fs.existsSync(`${file}.upload_record`)).toBe(true);
    expect(await h.newUploads(server)).toEqual([record.uploadId]);

    await server.clearFaults();
    const second = await h.uploadWithCallback(c, p);
    expect(String(second.err)).toBe('CheckpointFileInvalid:CheckpointFile is invalid!');
    expect(fs.existsSync(`${file}.upload_record`)).toBe(false);
    expect(await h.newUploads(server)).toEqual([]);

    await c.uploadFile(p);
    await h.expectUploaded(server, p.Key, file);
  });
});

test('max_connections bounds the requests in flight, whatever TaskNum asks for', async () => {
  const file = h.makeFile(dir, 6 * PART);
  const p = params(file, { TaskNum: 6 });
  const c = h.clientFor(server, { max_connections: 2 });
  await server.addFault({ method: 'PUT', query: { partNumber: null }, times: 0, action: { delay_ms: 150 } });
  const upload = c.uploadFile(p);
  const most = await h.mostInFlight(server, upload, (r) => r.method === 'PUT');
  await upload;
  expect(most).toBeGreaterThan(0);
  expect(most).toBeLessThanOrEqual(2);
  await h.expectUploaded(server, p.Key, file);
});
