'use strict';
// Uploads of many shapes through obs-native, each read back through S3 and
// compared byte for byte, each checked to leave no multipart upload and no
// checkpoint record behind.

const fs = require('node:fs');
const path = require('node:path');
const h = require('./helpers');

const { MB } = h;
const PART = 5 * MB; // s3s-fs, like S3, refuses non-last parts under 5 MiB.

const ctx = h.useServer();
let server;
let client;
let dir;

beforeAll(() => {
  ({ server, client, dir } = ctx);
});

async function uploadAndCheck({ size, partSize = PART, taskNum, key = h.uniqueKey(), checkpoint = true }) {
  const file = h.makeFile(dir, size);
  const result = await client.uploadFile({
    Bucket: h.BUCKET,
    Key: key,
    UploadFile: file,
    PartSize: partSize,
    TaskNum: taskNum,
    EnableCheckpoint: checkpoint,
  });
  expect(result.CommonMsg.Status).toBe(200);
  expect(result.InterfaceResult.Bucket).toBe(h.BUCKET);
  expect(result.InterfaceResult.Key).toBe(key);
  await h.expectUploaded(server, key, file);
  expect(fs.existsSync(`${file}.upload_record`)).toBe(false);
  return { file, result, parts: await h.partPuts(server) };
}

test('empty file: one empty part', async () => {
  const { parts } = await uploadAndCheck({ size: 0 });
  expect(parts.map((p) => p.body_bytes)).toEqual([0]);
});

test('one byte', async () => {
  const { parts } = await uploadAndCheck({ size: 1 });
  expect(parts.map((p) => p.body_bytes)).toEqual([1]);
});

test('exactly one part', async () => {
  const { parts } = await uploadAndCheck({ size: PART });
  expect(parts.map((p) => p.body_bytes)).toEqual([PART]);
});

test('part boundary minus one, exact, plus one', async () => {
  for (const [size, expected] of [
    [2 * PART - 1, [PART, PART - 1]],
    [2 * PART, [PART, PART]],
    [2 * PART + 1, [PART, PART, 1]],
  ]) {
    await server.resetStats();
    const { parts } = await uploadAndCheck({ size });
    expect(parts.map((p) => p.body_bytes).sort((a, b) => b - a)).toEqual(expected);
  }
});

test('many parts one at a time (TaskNum 1)', async () => {
  const { parts } = await uploadAndCheck({ size: 8 * PART + 12345, taskNum: 1 });
  expect(parts).toHaveLength(9);
});

test('many parts all at once (TaskNum 64)', async () => {
  const { parts } = await uploadAndCheck({ size: 12 * PART + 7, taskNum: 64 });
  expect(parts).toHaveLength(13);
});

test('without checkpoint: plain multipart, no record written', async () => {
  const { file } = await uploadAndCheck({ size: PART + 3, checkpoint: false });
  expect(fs.readdirSync(path.dirname(file)).filter((n) => n.includes('upload_record'))).toEqual([]);
});

test('keys with spaces, unicode and +/?#% reach the server unchanged', async () => {
  for (const key of ['with space/and more  spaces.bin', 'ünïcødé/日本語/😀.txt', "sym+bols/?#%&=;:@$,!'()*~.dat"]) {
    await uploadAndCheck({ size: 1000, key });
  }
});

test('part size below 100 KB, above 5 GB or not a number falls back to 5 MB', async () => {
  for (const partSize of [1, 100 * 1024 - 1, 6 * 1024 * MB, 'abc', NaN, -5]) {
    await server.resetStats();
    const { parts } = await uploadAndCheck({ size: PART + 1, partSize });
    expect(parts.map((p) => p.body_bytes).sort((a, b) => b - a)).toEqual([PART, 1]);
  }
});

// A ContentType JavaScript takes as false is none, as the reference reads it
// (it used to be sent as the type 'false' or '0').
test('content type: given, guessed from the key, else from the file name', async () => {
  const cases = [
    { key: `${h.uniqueKey()}.bin`, file: 'x.txt', contentType: 'application/x-custom', want: 'application/x-custom' },
    { key: `${h.uniqueKey()}.json`, file: 'x.txt', want: 'application/json' },
    { key: h.uniqueKey(), file: 'x.html', want: 'text/html' },
    { key: `${h.uniqueKey()}.json`, file: 'x.txt', contentType: false, want: 'application/json' },
    { key: h.uniqueKey(), file: 'x.html', contentType: 0, want: 'text/html' },
    { key: h.uniqueKey(), file: 'x.html', contentType: '', want: 'text/html' },
  ];
  for (const c of cases) {
    const file = path.join(dir, `${h.uniqueKey()}-${c.file}`);
    fs.writeFileSync(file, 'hello');
    await client.uploadFile({ Bucket: h.BUCKET, Key: c.key, UploadFile: file, ContentType: c.contentType });
    const ref = await h.referenceClientFor(server);
    const meta = await ref.getObjectMetadata({ Bucket: h.BUCKET, Key: c.key });
    expect(meta.InterfaceResult.ContentType).toBe(c.want);
    expect((await h.readBack(server, c.key)).toString()).toBe('hello');
  }
});

test('metadata reaches the object', async () => {
  const file = h.makeFile(dir, 10);
  const key = h.uniqueKey();
  await client.uploadFile({ Bucket: h.BUCKET, Key: key, UploadFile: file, Metadata: { colour: 'blue', Size: 'XL' } });
  const ref = await h.referenceClientFor(server);
  const meta = await ref.getObjectMetadata({ Bucket: h.BUCKET, Key: key });
  expect(meta.InterfaceResult.Metadata).toEqual({ colour: 'blue', size: 'XL' });
  await h.expectUploaded(server, key, file);
});

// Keys that name the same header once lower-cased and prefixed: one
// header, the last key's value, as the reference SDK sends it.
test.each([['v2', {}], ['v4', { signature: 'v4', region: 'us-east-1' }]])(
  'metadata keys that name the same header (%s): the last one wins; values with spaces at the ends or in runs; through both SDKs',
  async (_, options) => {
    const file = h.makeFile(dir, 10);
    // Spaces at the ends and in runs, which V4 signs trimmed and collapsed.
    const Metadata = { Foo: '1', foo: '2', 'x-amz-meta-FOO': '3', other: 'x', spaced: '  a  b ' };
    const ref = await h.referenceClientFor(server, options);
    for (const c of [h.clientFor(server, options), ref]) {
      const key = h.uniqueKey();
      const uploaded = await h.uploadWithCallback(c, { Bucket: h.BUCKET, Key: key, UploadFile: file, Metadata });
      expect(uploaded.err).toBeFalsy();
      expect(uploaded.result.CommonMsg.Status).toBe(200);
      const meta = await ref.getObjectMetadata({ Bucket: h.BUCKET, Key: key });
      expect(meta.InterfaceResult.Metadata).toEqual({ foo: '3', other: 'x', spaced: 'a  b' });
      await h.expectUploaded(server, key, file);
    }
  },
);

// Code written for the reference SDK calls initLog and takes canned ACLs
// from obsClient.enums; both are there, so it runs unchanged.
test('initLog and enums of the reference SDK are there; an ACL from enums uploads', async () => {
  const ref = await h.referenceClientFor(server);
  expect(Object.keys(client.enums).length).toBeGreaterThan(0);
  for (const [name, value] of Object.entries(client.enums)) {
    expect([name, value]).toEqual([name, ref.enums[name]]);
  }
  const logFile = `${dir}/logs/OBS-SDK.log`;
  expect(client.initLog({ name: 'test', file_full_path: logFile, max_log_size: 20480, backups: 10, level: 'info', log_to_console: false })).toBeUndefined();
  expect(client.InitLog).toBe(client.initLog);
  expect(fs.existsSync(logFile)).toBe(false);
  const file = h.makeFile(dir, PART + 3);
  const key = h.uniqueKey();
  const result = await client.uploadFile({ Bucket: h.BUCKET, Key: key, UploadFile: file, ACL: client.enums.AclPublicRead });
  expect(result.CommonMsg.Status).toBe(200);
  await h.expectUploaded(server, key, file);
});

test('V4 signing is accepted by the server', async () => {
  const v4 = h.clientFor(server, { signature: 'v4', region: 'us-east-1' });
  const file = h.makeFile(dir, PART + 10);
  const key = h.uniqueKey();
  await v4.uploadFile({ Bucket: h.BUCKET, Key: key, UploadFile: file });
  const { requests } = await server.stats();
  expect([...new Set(requests.filter((r) => r.auth !== 'none').map((r) => r.auth))]).toEqual(['v4']);
  await h.expectUploaded(server, key, file);
});

// The reference SDK has no V4 for requests: with 'v4' it signs as with
// 'v2' (V2 here, in path style). Without a region to sign V4 with, so does
// obs-native, and the upload works as it did.
test("signature 'v4' without a region signs as the reference SDK does (V2 in path style)", async () => {
  const file = h.makeFile(dir, 10);
  for (const c of [h.clientFor(server, { signature: 'v4' }), await h.referenceClientFor(server, { signature: 'v4' })]) {
    await server.resetStats();
    const key = h.uniqueKey();
    const { err } = await h.uploadWithCallback(c, { Bucket: h.BUCKET, Key: key, UploadFile: file });
    expect(err).toBeFalsy();
    const signed = (await server.stats()).requests.filter((r) => r.auth !== 'none').map((r) => r.auth);
    expect(signed.length).toBeGreaterThan(0);
    expect([...new Set(signed)]).toEqual(['v2']);
    await h.expectUploaded(server, key, file);
  }
});

test('uploads run concurrently from one client without interfering', async () => {
  const files = [1, PART + 1, 3 * MB, 2 * PART, 17].map((size) => h.makeFile(dir, size));
  const keys = files.map(() => h.uniqueKey('concurrent'));
  await Promise.all(
    files.map((file, i) =>
      client.uploadFile({ Bucket: h.BUCKET, Key: keys[i], UploadFile: file, TaskNum: 3, EnableCheckpoint: true }),
    ),
  );
  for (let i = 0; i < files.length; i += 1) await h.expectUploaded(server, keys[i], files[i]);
});

test('progress rises to the file size, at least once per part', async () => {
  const size = 4 * PART + 99;
  const file = h.makeFile(dir, size);
  const key = h.uniqueKey();
  const calls = [];
  await client.uploadFile({
    Bucket: h.BUCKET,
    Key: key,
    UploadFile: file,
    TaskNum: 2,
    ProgressCallback: (transferred, total, seconds) => calls.push([transferred, total, seconds]),
  });
  expect(calls.length).toBeGreaterThanOrEqual(5);
  for (let i = 1; i < calls.length; i += 1) {
    expect(calls[i][0]).toBeGreaterThanOrEqual(calls[i - 1][0]);
    expect(calls[i][2]).toBeGreaterThanOrEqual(calls[i - 1][2]);
  }
  expect(calls.every(([, total]) => total === size)).toBe(true);
  expect(calls[calls.length - 1][0]).toBe(size);
  await h.expectUploaded(server, key, file);
});

test('callback form and Promise form give the same result shape', async () => {
  const file = h.makeFile(dir, 100);
  const key = h.uniqueKey();
  const { err, result } = await h.uploadWithCallback(client, { Bucket: h.BUCKET, Key: key, UploadFile: file });
  expect(err).toBeNull();
  const promised = await client.UploadFile({ Bucket: h.BUCKET, Key: key, UploadFile: file });
  expect(Object.keys(promised)).toEqual(Object.keys(result));
  expect(Object.keys(promised.InterfaceResult)).toEqual(Object.keys(result.InterfaceResult));
  expect(Object.keys(promised.CommonMsg)).toEqual(Object.keys(result.CommonMsg));
  await h.expectUploaded(server, key, file);
});
