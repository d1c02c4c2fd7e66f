'use strict';
// The checkpoint record on resume: a record that no longer fits the file or
// the call, or that cannot be read, gets a clear error code, and the next
// call starts clean; the file and the stored object are never damaged.

const { execFile, execFileSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');
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

/** Leaves a record behind: the upload's part 2 keeps failing. */
async function leaveRecord(file, key, extra = {}) {
  const c = h.clientFor(server, { max_retry_count: 0 });
  await server.addFault({ method: 'PUT', query: { partNumber: '2' }, times: 0, action: { status: 503, code: 'ServiceUnavailable', message: 'x' } });
  const params = { Bucket: h.BUCKET, Key: key, UploadFile: file, PartSize: PART, EnableCheckpoint: true, ...extra };
  const { err } = await h.uploadWithCallback(c, params);
  expect(err.code).toBe('IncompletedUpload');
  await server.clearFaults();
  const record = params.CheckpointFile || `${file}.upload_record`;
  return { params, record, json: JSON.parse(fs.readFileSync(record, 'utf8')) };
}

/**
 * Plants a folder at the temporary name of the record `r.upload_record` in
 * `folder`: every write of that record fails from then on (obs-native
 * writes a record there, then renames it over the record), but a new
 * record's first, which goes through its lock file. Returns its path.
 */
function blockRecordWrites(folder) {
  const planted = path.join(folder, '.r.upload_record.obs-tmp');
  fs.mkdirSync(planted);
  return planted;
}


async function expectInvalidThenClean(params, code, uploadId) {
  const first = await h.uploadWithCallback(client, params);
  expect(first.err.code).toBe(code);
  if (uploadId) expect(await server.uploads()).not.toContain(uploadId);
  await server.resetStats();
  const result = await client.uploadFile(params);
  expect(result.CommonMsg.Status).toBe(200);
  await h.expectUploaded(server, params.Key, params.UploadFile);
}

test('the file changed size since the record was written', async () => {
  const file = h.makeFile(dir, 3 * PART);
  const { params, json } = await leaveRecord(file, h.uniqueKey());
  fs.appendFileSync(file, 'more');
  await expectInvalidThenClean(params, 'CheckpointFileInvalid', json.uploadId);
});

test('the file was touched (mtime changed) since the record was written', async () => {
  const file = h.makeFile(dir, 3 * PART);
  const { params, json } = await leaveRecord(file, h.uniqueKey());
  const later = new Date(Date.now() + 5000);
  fs.utimesSync(file, later, later);
  await expectInvalidThenClean(params, 'CheckpointFileInvalid', json.uploadId);
});

test('with EnableCheckSum, content changed under the same size and mtime is caught', async () => {
  const file = h.makeFile(dir, 3 * PART);
  const { params, json } = await leaveRecord(file, h.uniqueKey(), { EnableCheckSum: true });
  expect(json.uploadFileStat.checkSum).toMatch(/^[A-Za-z0-9+/]{22}==$/);
  const { mtime } = fs.statSync(file);
  const fd = fs.openSync(file, 'r+');
  fs.writeSync(fd, Buffer.from('changed!'), 0, 8, PART + 10);
  fs.closeSync(fd);
  fs.utimesSync(file, mtime, mtime);
  await expectInvalidThenClean(params, 'CheckpointFileInvalid', json.uploadId);
});

test('with EnableCheckSum and an unchanged file, the upload resumes', async () => {
  const file = h.makeFile(dir, 3 * PART);
  const { params } = await leaveRecord(file, h.uniqueKey(), { EnableCheckSum: true });
  await server.resetStats();
  await client.uploadFile(params);
  expect((await h.partPuts(server)).length).toBe(1);
  await h.expectUploaded(server, params.Key, file);
});

test('a record whose fields were edited fails its digest', async () => {
  const file = h.makeFile(dir, 3 * PART);
  const { params, record, json } = await leaveRecord(file, h.uniqueKey());
  json.partsMeta['1'].etag = '"0000"';
  fs.writeFileSync(record, JSON.stringify(json));
  await expectInvalidThenClean(params, 'CheckpointFileInvalid', json.uploadId);
});

test('a record for another key is not used', async () => {
  const file = h.makeFile(dir, 3 * PART);
  const { params, json } = await leaveRecord(file, h.uniqueKey());
  await expectInvalidThenClean({ ...params, Key: h.uniqueKey('other') }, 'CheckpointFileInvalid', json.uploadId);
});

test.each([
  ['garbage', 'not json at all {'],
  ['empty', ''],
  ['truncated', '{"bucketName":"test-bucket","objectKey":"k","uploadFile":"f","partSi'],
  ['JSON of the wrong shape', '[1,2,3]'],
])('a %s record: ParseCheckpointFileError, then a clean start', async (_, content) => {
  const file = h.makeFile(dir, PART + 1);
  const params = { Bucket: h.BUCKET, Key: h.uniqueKey(), UploadFile: file, EnableCheckpoint: true };
  fs.writeFileSync(`${file}.upload_record`, content);
  await expectInvalidThenClean(params, 'ParseCheckpointFileError');
});

// The reference SDK would read the file as a record, fail to parse it and
// delete it: the user's data.
test('a record path that is the file to upload (or a link to it) is an InvalidArgument and the file is left alone', async () => {
  const file = h.makeFile(dir, PART + 1);
  const link = path.join(dir, h.uniqueKey('record-link'));
  fs.symlinkSync(file, link);
  const before = fs.readFileSync(file);
  for (const record of [file, link]) {
    const params = { Bucket: h.BUCKET, Key: h.uniqueKey(), UploadFile: file, EnableCheckpoint: true, CheckpointFile: record };
    const { err } = await h.uploadWithCallback(client, params);
    expect(String(err)).toBe('InvalidArgument:CheckpointFile is the file to upload');
  }
  expect(fs.readFileSync(file).equals(before)).toBe(true);
  expect(await h.newUploads(server)).toEqual([]);
});

test('a record path holding a file larger than any record is an InvalidArgument and the file is left alone', async () => {
  const file = h.makeFile(dir, 10);
  const big = path.join(dir, h.uniqueKey('not-a-record'));
  fs.writeFileSync(big, 'x');
  fs.truncateSync(big, 65 * 1024 * 1024); // sparse
  const params = { Bucket: h.BUCKET, Key: h.uniqueKey(), UploadFile: file, EnableCheckpoint: true, CheckpointFile: big };
  const { err } = await h.uploadWithCallback(client, params);
  expect(String(err)).toBe(`InvalidArgument:CheckpointFile is not an upload record (${65 * 1024 * 1024} bytes, more than any record holds)`);
  expect(fs.statSync(big).size).toBe(65 * 1024 * 1024);
  expect(await h.newUploads(server)).toEqual([]);
  fs.rmSync(big);
});

test('a record path that is a folder is an InvalidArgument and the folder is left alone', async () => {
  const file = h.makeFile(dir, 10);
  const folder = path.join(dir, h.uniqueKey('record-folder'));
  fs.mkdirSync(folder);
  const params = { Bucket: h.BUCKET, Key: h.uniqueKey(), UploadFile: file, EnableCheckpoint: true, CheckpointFile: folder };
  for (let i = 0; i < 2; i += 1) {
    const { err } = await h.uploadWithCallback(client, params);
    expect(err.code).toBe('InvalidArgument');
    expect(String(err)).toBe('InvalidArgument:CheckpointFile is a directory!');
  }
  expect(fs.statSync(folder).isDirectory()).toBe(true);
  expect(await h.newUploads(server)).toEqual([]);
});

test('a record path that is a FIFO or a device (through a link) is an InvalidArgument, never read or removed', async () => {
  const file = h.makeFile(dir, 10);
  const fifo = path.join(dir, h.uniqueKey('record-fifo'));
  execFileSync('mkfifo', [fifo]);
  const device = path.join(dir, h.uniqueKey('record-device'));
  fs.symlinkSync('/dev/null', device);
  for (const record of [fifo, device]) {
    const params = { Bucket: h.BUCKET, Key: h.uniqueKey(), UploadFile: file, EnableCheckpoint: true, CheckpointFile: record };
    const { err } = await h.uploadWithCallback(client, params);
    expect(String(err)).toBe('InvalidArgument:CheckpointFile is not a regular file');
  }
  expect(fs.lstatSync(fifo).isFIFO()).toBe(true);
  expect(fs.lstatSync(device).isSymbolicLink()).toBe(true);
  expect(fs.statSync('/dev/null').isCharacterDevice()).toBe(true);
  expect(await h.newUploads(server)).toEqual([]);
});

test('a record path that is a link (to a file that is not a record, or to nothing) is an InvalidArgument; the link and its target are left alone', async () => {
  const file = h.makeFile(dir, 10);
  const log = path.join(dir, h.uniqueKey('app-log'));
  fs.writeFileSync(log, 'not a record\n');
  const toLog = path.join(dir, h.uniqueKey('record-link'));
  fs.symlinkSync(log, toLog);
  const dangling = path.join(dir, h.uniqueKey('record-dangling'));
  fs.symlinkSync(path.join(dir, 'nothing-here'), dangling);
  for (const record of [toLog, dangling]) {
    const params = { Bucket: h.BUCKET, Key: h.uniqueKey(), UploadFile: file, EnableCheckpoint: true, CheckpointFile: record };
    const { err } = await h.uploadWithCallback(client, params);
    expect(String(err)).toBe("InvalidArgument:CheckpointFile is a symbolic link; give the record's own path");
    expect(fs.lstatSync(record).isSymbolicLink()).toBe(true);
  }
  expect(fs.readFileSync(log, 'utf8')).toBe('not a record\n');
  expect(fs.existsSync(path.join(dir, 'nothing-here'))).toBe(false);
  expect(await h.newUploads(server)).toEqual([]);
});

test("a record path with the name of obs-native's own lock or temporary file is an InvalidArgument", async () => {
  const file = h.makeFile(dir, 10);
  for (const name of ['.r.upload_record.obs-lock', '.r.upload_record.obs-tmp']) {
    const record = path.join(dir, name);
    fs.writeFileSync(record, 'x');
    const params = { Bucket: h.BUCKET, Key: h.uniqueKey(), UploadFile: file, EnableCheckpoint: true, CheckpointFile: record };
    const { err } = await h.uploadWithCallback(client, params);
    expect(String(err)).toBe('InvalidArgument:CheckpointFile is a name obs-native keeps for its own files');
    expect(fs.readFileSync(record, 'utf8')).toBe('x');
    fs.rmSync(record);
  }
  expect(await h.newUploads(server)).toEqual([]);
});

test('a record whose name is as long as a file name may be (255 bytes) is written, resumed and removed', async () => {
  const file = h.makeFile(dir, 3 * PART);
  const folder = fs.mkdtempSync(path.join(dir, 'long-'));
  const record = path.join(folder, 'r'.repeat(255));
  const { params, json } = await leaveRecord(file, h.uniqueKey(), { CheckpointFile: record });
  expect(json.uploadId).toBeTruthy();
  const result = await client.uploadFile(params);
  expect(result.CommonMsg.Status).toBe(200);
  await h.expectUploaded(server, params.Key, file);
  expect(fs.readdirSync(folder)).toEqual([]);
});

// A record is worth a synced write only once it can point to an upload. The
// reference SDK also writes one before the initiate, and obs-native did: a
// third synced write and a new file for every call (a quarter of the CPU of
// small uploads with records).
test('a new record is first written once its upload exists: none while the initiate is under way, then one with its uploadId', async () => {
  const file = h.makeFile(dir, 2 * PART);
  const key = h.uniqueKey('first-write');
  const record = `${file}.upload_record`;
  await server.addFault({ method: 'POST', path_contains: key, query: { uploads: null }, times: 1, action: { delay_ms: 800 } });
  await h.slowParts(server, key, 400);
  const params = { Bucket: h.BUCKET, Key: key, UploadFile: file, PartSize: PART, TaskNum: 1, EnableCheckpoint: true };
  const call = h.uploadWithCallback(client, params);
  const seenDuringInitiate = [];
  const initiating = Date.now() + 500;
  while (Date.now() < initiating) {
    seenDuringInitiate.push(fs.existsSync(record));
    await new Promise((r) => setTimeout(r, 20));
  }
  expect(seenDuringInitiate.length).toBeGreaterThan(3);
  expect(seenDuringInitiate.filter(Boolean)).toEqual([]);
  // The initiate answered; part 1 is held 400 ms: the record is there, with the upload.
  const deadline = Date.now() + 5000;
  while (!fs.existsSync(record) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  const written = JSON.parse(fs.readFileSync(record, 'utf8'));
  expect(written.uploadId).toEqual(expect.any(String));
  // Written through the lock file, the record is that file under a second name, private.
  const [onDisk, lockFile] = [fs.statSync(record), fs.statSync(path.join(path.dirname(record), `.${path.basename(record)}.obs-lock`))];
  expect([onDisk.ino, onDisk.nlink, onDisk.mode & 0o777]).toEqual([lockFile.ino, 2, 0o600]);
  expect(await server.uploads()).toContain(written.uploadId);
  const { err, result } = await call;
  expect(err).toBeFalsy();
  expect(result.CommonMsg.Status).toBe(200);
  await h.expectUploaded(server, key, file);
  expect(fs.existsSync(record)).toBe(false);
});

// The last part's record write would be removed with the record by the
// complete that follows at once: it waits, and only a complete that fails
// has it written. The next call then completes without sending a part.
// Not for encrypted uploads: their part ETags are not the MD5 of the bytes,
// so a part the record misses could not be told from the file.
test.each([
  ['the last part is written to the record only if the complete fails', {}, '1,2'],
  ['an encrypted upload (SseKms) writes the last part before the complete', { SseKms: 'kms' }, '1,2,3'],
])('%s; the next call then only completes', async (what, extra, whileCompleting) => {
  const file = h.makeFile(dir, 3 * PART);
  const key = h.uniqueKey('last-part');
  const record = `${file}.upload_record`;
  await server.addFault({ method: 'POST', path_contains: key, query: { uploadId: null }, times: 1, action: { delay_ms: 800, status: 500, code: 'InternalError', message: 'boom' } });
  const params = { Bucket: h.BUCKET, Key: key, UploadFile: file, PartSize: PART, TaskNum: 1, EnableCheckpoint: true, ...extra };
  const call = h.uploadWithCallback(h.clientFor(server, { max_retry_count: 0 }), params);
  const deadline = Date.now() + 10000;
  const completing = async () => (await server.stats()).requests.some((r) => h.isComplete(r) && r.path.endsWith(`/${key}`));
  while (!(await completing()) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  // The complete is held 800 ms: what the record names meanwhile.
  const named = [];
  const sampling = Date.now() + 500;
  while (Date.now() < sampling) {
    const json = JSON.parse(fs.readFileSync(record, 'utf8'));
    named.push(Object.keys(json.partsMeta).filter((n) => json.partsMeta[n].isCompleted).join(','));
    await new Promise((r) => setTimeout(r, 20));
  }
  expect(named.length).toBeGreaterThan(3);
  expect(new Set(named.slice(-3))).toEqual(new Set([whileCompleting]));
  if (whileCompleting === '1,2') expect(named.filter((n) => n.includes('3'))).toEqual([]);
  const { err } = await call;
  expect(err.code).toBe('IncompletedUpload');
  const kept = JSON.parse(fs.readFileSync(record, 'utf8'));
  expect(Object.keys(kept.partsMeta).filter((n) => kept.partsMeta[n].isCompleted)).toEqual(['1', '2', '3']);
  await server.resetStats();
  const { err: again } = await h.uploadWithCallback(client, params);
  expect(again).toBeFalsy();
  const requests = (await server.stats()).requests.map((r) => `${r.method} ${r.query.replace(/=[^&]*/g, '')}`);
  expect(requests.filter((r) => r.startsWith('PUT'))).toEqual([]);
  expect(requests.filter((r) => r === 'POST uploadId')).toEqual(['POST uploadId']);
  await h.expectUploaded(server, key, file);
  expect(fs.existsSync(record)).toBe(false);
});

/**
 * Runs one upload with a record (fixtures/upload-child.js) in a process that
 * may write no byte to any file (`ulimit -f 0`): every write of the record
 * fails as on a full disk (EFBIG), while empty files (the lock) can still
 * be made. Resolves `{code, uploadId, text}` of the error it printed.
 */
async function uploadWithFullDisk(params, options = {}) {
  const spec = {
    endpoint: server.endpoint,
    accessKey: server.accessKey,
    secretKey: server.secretKey,
    bucket: params.Bucket,
    key: params.Key,
    file: params.UploadFile,
    partSize: params.PartSize,
    taskNum: 1,
    maxRetryCount: options.maxRetryCount,
    checkpointFile: params.CheckpointFile,
  };
  const child = path.join(__dirname, 'fixtures', 'upload-child.js');
  const out = await new Promise((resolve) => {
    execFile('/bin/sh', ['-c', 'ulimit -f 0 && exec "$@"', 'sh', process.execPath, child, JSON.stringify(spec)], (err, stdout) => resolve(stdout.trim()));
  });
  const m = /^ERR (\S+) (\S+) (.*)$/.exec(out);
  if (!m) throw new Error(`the child did not fail as expected: ${JSON.stringify(out)}`);
  return { code: m[1], uploadId: m[2], text: m[3] };
}

// With no record written before the initiate, one that cannot be written
// (a full disk) is found out after it. The upload it would have pointed to
// is aborted, and the call fails as it did before, with nothing left on
// the server, no part sent and no file left beside the record.
test('a new record that cannot be written once its upload exists: WriteCheckpointFileError, the upload aborted, no part sent', async () => {
  const file = h.makeFile(dir, 2 * PART);
  const folder = fs.mkdtempSync(path.join(dir, 'full-'));
  const params = { Bucket: h.BUCKET, Key: h.uniqueKey('unwritable-new'), UploadFile: file, PartSize: PART, CheckpointFile: path.join(folder, 'r.upload_record') };
  const err = await uploadWithFullDisk(params);
  expect(err.code).toBe('WriteCheckpointFileError');
  expect(err.text).toMatch(/File too large/);
  // (A client's first call asks the bucket's protocol first: HEAD ?apiversion.)
  const requests = (await server.stats()).requests.map((r) => `${r.method} ${r.query.replace(/=[^&]*/g, '')}`).filter((r) => r !== 'HEAD apiversion');
  expect(requests).toEqual(['POST uploads', 'DELETE uploadId']);
  expect(await h.newUploads(server)).toEqual([]);
  await expect(h.readBack(server, params.Key)).rejects.toThrow(/404/);
  expect(fs.readdirSync(folder)).toEqual([]);
});

test('a new record that cannot be written, and an upload that cannot be aborted either: the error names the upload', async () => {
  const file = h.makeFile(dir, 2 * PART);
  const folder = fs.mkdtempSync(path.join(dir, 'full-'));
  await server.addFault({ method: 'DELETE', query: { uploadId: null }, times: 0, action: { status: 503, code: 'ServiceUnavailable', message: 'busy' } });
  const params = { Bucket: h.BUCKET, Key: h.uniqueKey('unwritable-kept'), UploadFile: file, PartSize: PART, CheckpointFile: path.join(folder, 'r.upload_record') };
  const err = await uploadWithFullDisk(params, { maxRetryCount: 0 });
  expect(err.code).toBe('WriteCheckpointFileError');
  expect(err.text).toMatch(/its upload could not be aborted \(.*ServiceUnavailable/);
  const left = await h.newUploads(server);
  expect(left).toEqual([err.uploadId]);
  expect((await server.stats()).requests.filter((r) => r.method === 'PUT')).toEqual([]);
  await server.clearFaults();
  const ref = await h.referenceClientFor(server);
  const aborted = await ref.abortMultipartUpload({ Bucket: h.BUCKET, Key: params.Key, UploadId: err.uploadId });
  expect(aborted.CommonMsg.Status).toBe(204);
  expect(await h.newUploads(server)).toEqual([]);
});

describe('one upload per record at a time', () => {
  /** Starts an upload whose part 2 is held `holdMs` at the server; resolves `running` once part 1 is recorded. */
  async function startHeld(params, holdMs) {
    await server.addFault({ method: 'PUT', path_contains: params.Key, query: { partNumber: '2' }, action: { delay_ms: holdMs } });
    let started;
    const running = new Promise((resolve) => {
      started = resolve;
    });
    const done = h.uploadWithCallback(client, {
      ...params,
      TaskNum: 1,
      ProgressCallback: (transferred) => {
        if (transferred >= PART) started();
      },
    });
    return { running, done };
  }

  test('a second upload given the record of a running one gets CheckpointFileInUse, sends nothing and does not disturb the first', async () => {
    const fileA = h.makeFile(dir, 3 * PART);
    const fileB = h.makeFile(dir, 2 * PART + 7);
    const record = path.join(dir, h.uniqueKey('shared-record'));
    const a = { Bucket: h.BUCKET, Key: h.uniqueKey('holder'), UploadFile: fileA, PartSize: PART, EnableCheckpoint: true, CheckpointFile: record };
    const b = { ...a, Key: h.uniqueKey('refused'), UploadFile: fileB };
    const first = await startHeld(a, 4000);
    await first.running;

    const refused = await h.uploadWithCallback(client, b);
    expect(refused.err.code).toBe('CheckpointFileInUse');
    expect(String(refused.err)).toBe('CheckpointFileInUse:CheckpointFile is in use by another upload (in this or another process); nothing was sent');
    const { requests } = await server.stats();
    expect(requests.filter((r) => r.path.includes(b.Key))).toEqual([]);
    // Still the first upload's record (which that upload may have rewritten meanwhile).
    const kept = JSON.parse(fs.readFileSync(record, 'utf8'));
    expect([kept.uploadFile, kept.objectKey]).toEqual([fileA, a.Key]);
    // The promise form says the same.
    await expect(client.uploadFile(b)).rejects.toMatchObject({ code: 'CheckpointFileInUse' });

    const held = await first.done;
    expect(held.err).toBeFalsy();
    expect(held.result.CommonMsg.Status).toBe(200);
    await h.expectUploaded(server, a.Key, fileA);
    expect(fs.existsSync(record)).toBe(false);
    expect(fs.readdirSync(dir).filter((n) => n.includes(path.basename(record)))).toEqual([]);

    // Free again once the first is done.
    const after = await client.uploadFile(b);
    expect(after.CommonMsg.Status).toBe(200);
    await h.expectUploaded(server, b.Key, fileB);
  });

  test('the same upload started twice: the second call is refused, the first finishes alone', async () => {
    const file = h.makeFile(dir, 3 * PART);
    const params = { Bucket: h.BUCKET, Key: h.uniqueKey('twice'), UploadFile: file, PartSize: PART, EnableCheckpoint: true };
    const first = await startHeld(params, 3000);
    await first.running;
    const again = await h.uploadWithCallback(client, params);
    expect(again.err.code).toBe('CheckpointFileInUse');
    const held = await first.done;
    expect(held.result.CommonMsg.Status).toBe(200);
    await h.expectUploaded(server, params.Key, file);
    const initiates = (await server.stats()).requests.filter((r) => r.method === 'POST' && /(^|&)uploads(=|&|$)/.test(r.query));
    expect(initiates).toHaveLength(1);
    expect(fs.existsSync(`${file}.upload_record`)).toBe(false);
  });

  test('a record without a running upload is not held: a stopped upload resumes at once', async () => {
    const file = h.makeFile(dir, 3 * PART);
    const params = { Bucket: h.BUCKET, Key: h.uniqueKey('stopped'), UploadFile: file, PartSize: PART, EnableCheckpoint: true, TaskNum: 1 };
    const stopped = await h.uploadStoppedAt(client, params, PART);
    expect(stopped.err.code).toBe('Upload suspened');
    const resumed = await client.uploadFile(params);
    expect(resumed.CommonMsg.Status).toBe(200);
    await h.expectUploaded(server, params.Key, file);
  });
});

// A record that cannot be written mid-upload (a full disk, its folder
// removed) no longer ends the upload: the parts go on, the record on disk
// (if any is left) still points to the upload, and a resume from it would
// find the parts sent since in the server's list. Before, the upload was
// aborted and every part sent was thrown away.
test('the record\'s folder is replaced by a file after part 1: the upload goes on to the end, and the file is left alone', async () => {
  const file = h.makeFile(dir, 4 * PART);
  const key = h.uniqueKey('unwritable');
  const folder = fs.mkdtempSync(path.join(dir, 'records-'));
  const record = path.join(folder, 'r.upload_record');
  await h.slowParts(server, key, 300);
  const call = client.uploadFile({ Bucket: h.BUCKET, Key: key, UploadFile: file, PartSize: PART, TaskNum: 1, EnableCheckpoint: true, CheckpointFile: record });
  const partsDone = () => h.partsRecorded(record);
  const deadline = Date.now() + 10000;
  while (partsDone() < 1 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  expect(partsDone()).toBeGreaterThanOrEqual(1);
  expect(partsDone()).toBeLessThan(4);
  fs.rmSync(folder, { recursive: true, force: true });
  fs.writeFileSync(folder, 'not a folder');

  const result = await call;
  expect(result.CommonMsg.Status).toBe(200);
  await h.expectUploaded(server, key, file);
  expect(fs.readFileSync(folder, 'utf8')).toBe('not a folder');
  expect((await h.partPuts(server)).filter((r) => r.path.endsWith(`/${key}`))).toHaveLength(4);
});

describe('the record cannot be written, then the upload is cancelled', () => {
  /** Starts an upload of 4 slow parts and resolves once part 1 is recorded. */
  async function startSlow(folder) {
    const file = h.makeFile(dir, 4 * PART);
    const key = h.uniqueKey('unwritable-cancel');
    const record = path.join(folder, 'r.upload_record');
    await h.slowParts(server, key, 300);
    let handle;
    const params = { Bucket: h.BUCKET, Key: key, UploadFile: file, PartSize: PART, TaskNum: 1, EnableCheckpoint: true, CheckpointFile: record };
    const call = h.uploadWithCallback(client, { ...params, ResumeCallback: (hd) => (handle = hd) });
    const partsDone = () => h.partsRecorded(record);
    const deadline = Date.now() + 10000;
    while ((partsDone() < 1 || !handle) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    expect(partsDone()).toBeGreaterThanOrEqual(1);
    expect(partsDone()).toBeLessThan(4);
    return { file, key, record, params, call, cancel: () => handle.cancel() };
  }

  test('with no record left on disk (its folder replaced by a file): the upload is aborted, nothing is left, and the error names it', async () => {
    const folder = fs.mkdtempSync(path.join(dir, 'records-'));
    const run = await startSlow(folder);
    fs.rmSync(folder, { recursive: true, force: true });
    fs.writeFileSync(folder, 'not a folder');
    // A part recorded after the folder went fails to write; then the cancel.
    await new Promise((r) => setTimeout(r, 400));
    run.cancel();
    const { err } = await run.call;
    expect(err.code).toBe('WriteCheckpointFileError');
    expect(err.uploadId).toEqual(expect.any(String));
    expect(await h.newUploads(server)).toEqual([]);
    expect(fs.readFileSync(folder, 'utf8')).toBe('not a folder');
  });

  test('with an older record still on disk (its writes refused): the cancel keeps the upload, and the next call resumes from that record', async () => {
    const folder = fs.mkdtempSync(path.join(dir, 'records-'));
    const run = await startSlow(folder);
    // A folder at the record's temporary name: every later write fails, the
    // record written after part 1 stays.
    const planted = blockRecordWrites(folder);
    await new Promise((r) => setTimeout(r, 400));
    run.cancel();
    const { err } = await run.call;
    expect(err.code).toBe('Upload suspened');
    const kept = JSON.parse(fs.readFileSync(run.record, 'utf8'));
    expect(await h.newUploads(server)).toEqual([kept.uploadId]);

    fs.rmdirSync(planted);
    await server.clearFaults();
    const result = await client.uploadFile(run.params);
    expect(result.CommonMsg.Status).toBe(200);
    await h.expectUploaded(server, run.key, run.file);
    expect(fs.existsSync(run.record)).toBe(false);
  });
});
