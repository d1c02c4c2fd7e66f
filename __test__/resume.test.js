'use strict';
// Interrupting and resuming: cancel and abort through ResumeCallback,
// resuming sends only the missing parts, and records written by either SDK
// resume in the other.

const fs = require('node:fs');
const path = require('node:path');
const { getEventListeners } = require('node:events');
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

function readRecord(file) {
  return JSON.parse(fs.readFileSync(file, 'utf8'));
}

function completedParts(record) {
  return Object.keys(record.partsMeta || {})
    .filter((n) => record.partsMeta[n].isCompleted)
    .map(Number)
    .sort((a, b) => a - b);
}

function partNumbersOf(puts) {
  return puts.map((r) => Number(/partNumber=(\d+)/.exec(r.query)[1])).sort((a, b) => a - b);
}

// Slows every part after the first few, so that a cancel lands mid-upload.
async function slowPartsFrom(first, last, ms) {
  for (let n = first; n <= last; n += 1) {
    await server.addFault({ method: 'PUT', query: { partNumber: String(n) }, times: 0, action: { delay_ms: ms } });
  }
}

/** Starts an upload with obs-native and cancels it once `parts` parts are sent. */
async function cancelledUpload(params, parts) {
  return (await h.uploadStoppedAt(client, params, parts * PART)).err;
}

test('cancel keeps record and upload; the next call sends only the missing parts', async () => {
  const file = h.makeFile(dir, 6 * PART + 77);
  const key = h.uniqueKey('resume');
  const params = { Bucket: h.BUCKET, Key: key, UploadFile: file, PartSize: PART, TaskNum: 1, EnableCheckpoint: true };
  await slowPartsFrom(4, 7, 300);

  const err = await cancelledUpload(params, 2);
  expect(err).toBeInstanceOf(Error);
  expect(err.code).toBe('Upload suspened');
  expect(String(err)).toBe('Upload suspened:The process of uploadFile is suspened, you can try again');
  const record = readRecord(`${file}.upload_record`);
  const done = completedParts(record);
  expect(done.length).toBeGreaterThanOrEqual(2);
  expect(done.length).toBeLessThan(7);
  expect(await h.newUploads(server)).toEqual([record.uploadId]);

  await server.clearFaults();
  await server.resetStats();
  const progress = [];
  const result = await client.uploadFile({ ...params, ProgressCallback: (t) => progress.push(t) });
  expect(result.CommonMsg.Status).toBe(200);
  const sent = partNumbersOf(await h.partPuts(server));
  expect(sent).toEqual([1, 2, 3, 4, 5, 6, 7].filter((n) => !done.includes(n)));
  // Progress on resume starts from the bytes the record already holds (the
  // reference SDK counts a full PartSize for every finished part, even the short last one).
  expect(progress[0]).toBeGreaterThan(done.length * PART);
  expect(progress[progress.length - 1]).toBe(6 * PART + 77);
  expect(fs.existsSync(`${file}.upload_record`)).toBe(false);
  await h.expectUploaded(server, key, file);
});

test('abort stops, aborts the upload on the server and removes the record', async () => {
  const file = h.makeFile(dir, 4 * PART);
  const key = h.uniqueKey('abort');
  await slowPartsFrom(2, 4, 500);
  const { err } = await h.uploadStoppedAt(
    client,
    { Bucket: h.BUCKET, Key: key, UploadFile: file, TaskNum: 1, EnableCheckpoint: true },
    PART,
    'abort',
  );
  expect(err.code).toBe('Upload isAbort');
  expect(String(err)).toBe('Upload isAbort:The process of uploadFile is isAbort');
  expect(fs.existsSync(`${file}.upload_record`)).toBe(false);
  expect(await h.newUploads(server)).toEqual([]);
});

test('cancel without a checkpoint leaves no multipart upload behind', async () => {
  const file = h.makeFile(dir, 4 * PART);
  await slowPartsFrom(2, 4, 500);
  const { err } = await h.uploadStoppedAt(client, { Bucket: h.BUCKET, Key: h.uniqueKey('cancel-nocp'), UploadFile: file, TaskNum: 1 }, PART);
  expect(err.code).toBe('Upload suspened');
  expect(await h.newUploads(server)).toEqual([]);
});

test('a record written by esdk-obs-nodejs resumes in obs-native', async () => {
  const file = h.makeFile(dir, 5 * PART + 5);
  const key = h.uniqueKey('ref-to-native');
  const params = { Bucket: h.BUCKET, Key: key, UploadFile: file, PartSize: PART, TaskNum: 1, EnableCheckpoint: true };
  await slowPartsFrom(3, 6, 300);
  const ref = await h.referenceClientFor(server);
  const refErr = (await h.uploadStoppedAt(ref, params, 2 * PART)).err;
  expect(String(refErr)).toMatch(/^Upload suspened/);
  // The reference may still finish a part it had in flight and write it to
  // its record after calling back; wait for it to settle.
  await new Promise((r) => setTimeout(r, 1500));
  const record = readRecord(`${file}.upload_record`);
  const done = completedParts(record);
  expect(done.length).toBeGreaterThanOrEqual(1);

  // The reference does not stop parts in flight when cancelled: the server
  // may hold parts its record does not list. obs-native adopts those (their
  // bytes match) and sends only the parts the server lacks.
  const listed = await ref.listParts({ Bucket: h.BUCKET, Key: key, UploadId: record.uploadId });
  const onServer = listed.InterfaceResult.Parts.map((p) => Number(p.PartNumber));
  expect(onServer).toEqual(expect.arrayContaining(done));

  await server.clearFaults();
  await server.resetStats();
  const result = await client.uploadFile(params);
  expect(result.CommonMsg.Status).toBe(200);
  expect(partNumbersOf(await h.partPuts(server))).toEqual([1, 2, 3, 4, 5, 6].filter((n) => !onServer.includes(n)));
  await h.expectUploaded(server, key, file);
});

// The reference copies ContentType, ACL, WebsiteRedirectLocation, SseKms...
// into its record as given, so a number or a boolean lands there as one.
// Such a record resumes too (it used to fail to parse, and was removed
// while its upload stayed on the server).
test('a record the reference wrote from parameters that are not strings resumes in obs-native', async () => {
  const file = h.makeFile(dir, 3 * PART);
  const key = h.uniqueKey('ref-odd-types');
  const params = { Bucket: h.BUCKET, Key: key, UploadFile: file, PartSize: PART, TaskNum: 1, EnableCheckpoint: true, ContentType: 9, WebsiteRedirectLocation: 0, SseKms: false, Metadata: { n: 1 } };
  await server.addFault({ method: 'PUT', query: { partNumber: '3' }, times: 0, action: { status: 503, code: 'ServiceUnavailable', message: 'x' } });
  const ref = await h.referenceClientFor(server, { max_retry_count: 0 });
  expect(String((await h.uploadWithCallback(ref, params)).err)).toMatch(/^IncompletedUpload/);
  const record = readRecord(`${file}.upload_record`);
  expect([record.contentType, record.websiteRedirectLocation, record.sseKms]).toEqual([9, 0, false]);
  const done = completedParts(record);
  expect(done).toEqual([1, 2]);

  await server.clearFaults();
  await server.resetStats();
  const result = await client.uploadFile(params);
  expect(result.CommonMsg.Status).toBe(200);
  expect(partNumbersOf(await h.partPuts(server))).toEqual([3]);
  await h.expectUploaded(server, key, file);
  const meta = await ref.getObjectMetadata({ Bucket: h.BUCKET, Key: key });
  expect(meta.InterfaceResult.ContentType).toBe('9');
  expect(meta.InterfaceResult.Metadata).toEqual({ n: '1' });
});

test('a record written by obs-native resumes in esdk-obs-nodejs', async () => {
  const file = h.makeFile(dir, 5 * PART + 5);
  const key = h.uniqueKey('native-to-ref');
  const params = { Bucket: h.BUCKET, Key: key, UploadFile: file, PartSize: PART, TaskNum: 1, EnableCheckpoint: true };
  await slowPartsFrom(3, 6, 300);
  const err = await cancelledUpload(params, 2);
  expect(err.code).toBe('Upload suspened');
  const done = completedParts(readRecord(`${file}.upload_record`));

  await server.clearFaults();
  await server.resetStats();
  const ref = await h.referenceClientFor(server);
  const result = await ref.uploadFile(params);
  expect(result.CommonMsg.Status).toBe(200);
  expect(partNumbersOf(await h.partPuts(server))).toEqual([1, 2, 3, 4, 5, 6].filter((n) => !done.includes(n)));
  await h.expectUploaded(server, key, file);
});

test('the record holds no credentials and is private to its owner', async () => {
  const file = h.makeFile(dir, 3 * PART);
  const record = path.join(dir, 'nested', 'deeper', 'custom.record');
  await slowPartsFrom(2, 3, 400);
  const params = {
    Bucket: h.BUCKET,
    Key: h.uniqueKey('private'),
    UploadFile: file,
    TaskNum: 1,
    EnableCheckpoint: true,
    CheckpointFile: record,
    SseCKey: 'K'.repeat(32),
  };
  // Under a umask that takes nothing away, so that the mode is the one the
  // record was created with.
  const umask = process.umask(0);
  try {
    await h.uploadStoppedAt(client, params, PART);
  } finally {
    process.umask(umask);
  }
  const text = fs.readFileSync(record, 'utf8');
  expect(text).not.toContain(server.secretKey);
  expect(text).not.toContain(server.accessKey);
  expect(text).not.toContain('K'.repeat(32));
  expect(fs.statSync(record).mode & 0o777).toBe(0o600);
  // Clean up the upload this test left for resuming.
  const { uploadId } = JSON.parse(text);
  const ref = await h.referenceClientFor(server);
  await ref.abortMultipartUpload({ Bucket: h.BUCKET, Key: JSON.parse(text).objectKey, UploadId: uploadId });
});

describe('AbortSignal', () => {
  test('aborting the signal cancels: record and upload kept, AbortError; the next call resumes', async () => {
    const file = h.makeFile(dir, 4 * PART);
    const key = h.uniqueKey('signal');
    const params = { Bucket: h.BUCKET, Key: key, UploadFile: file, TaskNum: 1, EnableCheckpoint: true };
    await slowPartsFrom(2, 4, 300);
    const controller = new AbortController();
    const reason = new Error('user closed the page');
    const err = await client
      .uploadFile({
        ...params,
        AbortSignal: controller.signal,
        ProgressCallback: (t) => {
          if (t >= PART) controller.abort(reason);
        },
      })
      .catch((e) => e);
    expect(err.name).toBe('AbortError');
    expect(err.code).toBe('Upload suspened');
    expect(err.cause).toBe(reason);
    const record = readRecord(`${file}.upload_record`);
    expect(await h.newUploads(server)).toEqual([record.uploadId]);
    await server.clearFaults();
    await client.uploadFile(params);
    await h.expectUploaded(server, key, file);
  });

  // One signal for a batch is the usual pattern: it gets one listener, not
  // one per upload (Node warned past 10: MaxListenersExceededWarning). That
  // warning comes from Node itself, on the process jest's sandbox does not
  // show to a test, so the listener count is what is checked; obs-native's
  // own warnings go through the sandbox's process.emitWarning.
  test('one signal cancels 12 uploads at once without a warning, and is let go after', async () => {
    const warn = jest.spyOn(process, 'emitWarning');
    try {
      await server.addFault({ method: 'PUT', query: { partNumber: null }, times: 0, action: { delay_ms: 2000 } });
      const controller = new AbortController();
      const uploads = [];
      for (let i = 0; i < 12; i += 1) {
        const file = h.makeFile(dir, 1000 + i);
        uploads.push({ Bucket: h.BUCKET, Key: h.uniqueKey('batch'), UploadFile: file, EnableCheckpoint: true });
      }
      const started = uploads.map((p) => client.uploadFile({ ...p, AbortSignal: controller.signal }).catch((e) => e));
      expect(getEventListeners(controller.signal, 'abort')).toHaveLength(1);
      await new Promise((r) => setTimeout(r, 300));
      controller.abort();
      const errors = await Promise.all(started);
      expect(errors.map((e) => e.name)).toEqual(Array(12).fill('AbortError'));
      expect(getEventListeners(controller.signal, 'abort')).toHaveLength(0);
      await server.clearFaults();
      await Promise.all(uploads.map((p) => client.uploadFile(p)));
      for (const p of uploads) await h.expectUploaded(server, p.Key, p.UploadFile);
      // Calls that end on their own let the signal go too.
      const shared = new AbortController();
      await Promise.all(uploads.map((p) => client.uploadFile({ ...p, Key: h.uniqueKey('batch-again'), AbortSignal: shared.signal })));
      expect(getEventListeners(shared.signal, 'abort')).toHaveLength(0);
      await new Promise((r) => setImmediate(r));
      expect(warn).not.toHaveBeenCalled();
    } finally {
      warn.mockRestore();
    }
  });

  // The whole-file MD5 of EnableCheckSum comes before the upload exists; a
  // stop during it used to wait for the hash, then create an upload anyway.
  test('aborting the signal while EnableCheckSum hashes the file sends nothing and leaves nothing', async () => {
    const file = path.join(dir, h.uniqueKey('hashing'));
    fs.writeFileSync(file, 'x');
    fs.truncateSync(file, 2048 * MB); // sparse: about 4 s of MD5
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 100);
    const params = { Bucket: h.BUCKET, Key: h.uniqueKey('hashing'), UploadFile: file, EnableCheckpoint: true, EnableCheckSum: true, AbortSignal: controller.signal };
    const { err } = await h.uploadWithCallback(client, params);
    expect(err.name).toBe('AbortError');
    expect(err.code).toBe('Upload suspened');
    // Before, the hash ran to its end and an upload was initiated.
    expect((await server.stats()).requests).toEqual([]);
    expect(await h.newUploads(server)).toEqual([]);
    expect(fs.existsSync(`${file}.upload_record`)).toBe(false);
    fs.rmSync(file);
  });

  test('aborting the signal while a resumed record is checked against the file (EnableCheckSum) keeps record and upload', async () => {
    const file = path.join(dir, h.uniqueKey('rehash'));
    fs.writeFileSync(file, 'y');
    fs.truncateSync(file, 512 * MB); // sparse: about 1 s of MD5
    const params = { Bucket: h.BUCKET, Key: h.uniqueKey('rehash'), UploadFile: file, PartSize: 512 * MB, EnableCheckpoint: true, EnableCheckSum: true };
    // A first call that leaves a record with the file's checksum and an upload.
    await server.addFault({ method: 'PUT', query: { partNumber: '1' }, times: 1, action: { status: 503, code: 'ServiceUnavailable', message: 'x' } });
    const first = await h.uploadWithCallback(h.clientFor(server, { max_retry_count: 0 }), params);
    expect(first.err.code).toBe('IncompletedUpload');
    const recordPath = `${file}.upload_record`;
    const before = fs.readFileSync(recordPath, 'utf8');
    expect(JSON.parse(before).uploadFileStat.checkSum).toBeTruthy();
    const { uploadId } = JSON.parse(before);
    await server.resetStats();

    const controller = new AbortController();
    setTimeout(() => controller.abort(), 100);
    const { err } = await h.uploadWithCallback(client, { ...params, AbortSignal: controller.signal });
    expect(err.name).toBe('AbortError');
    expect(err.code).toBe('Upload suspened');
    expect((await server.stats()).requests).toEqual([]);
    expect(fs.readFileSync(recordPath, 'utf8')).toBe(before);
    expect(await h.newUploads(server)).toEqual([uploadId]);

    const result = await client.uploadFile(params);
    expect(result.CommonMsg.Status).toBe(200);
    await h.expectUploaded(server, params.Key, file);
    fs.rmSync(file);
  }, 60000);

  test('an already aborted signal sends nothing', async () => {
    const file = h.makeFile(dir, 10);
    const signal = AbortSignal.abort();
    const { err } = await h.uploadWithCallback(client, { Bucket: h.BUCKET, Key: 'never', UploadFile: file, EnableCheckpoint: true, AbortSignal: signal });
    expect(err.name).toBe('AbortError');
    expect((await server.stats()).requests).toEqual([]);
    expect(fs.existsSync(`${file}.upload_record`)).toBe(false);
  });

  test('a signal that is not an AbortSignal is an InvalidArgument', async () => {
    const file = h.makeFile(dir, 10);
    const { err } = await h.uploadWithCallback(client, { Bucket: h.BUCKET, Key: 'k', UploadFile: file, AbortSignal: { aborted: false } });
    expect(String(err)).toBe('InvalidArgument:AbortSignal must be an AbortSignal');
  });
});
