'use strict';
// What every kind of bad input gets. Where the reference SDK answers, the
// same input goes through it too and the error strings must match; where it
// crashes, hangs or leaks, obs-native does better and the test says how.

const { execFileSync } = require('node:child_process');
const { getEventListeners } = require('node:events');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const h = require('./helpers');

const { MB } = h;

const ctx = h.useServer();
let server;
let client;
let ref;
let dir;
let file;

beforeAll(async () => {
  ({ server, client, dir } = ctx);
  ref = await h.referenceClientFor(server);
  file = h.makeFile(dir, MB + 7);
});

const refUpload = (params) => h.uploadWithCallback(ref, params);

async function expectNothingSent() {
  expect((await server.stats()).requests).toEqual([]);
}

/** Same error string as the reference, an Error with `code`, no result, nothing sent. */
async function expectSameAsReference(params, code, text) {
  const theirs = await refUpload(params);
  expect(theirs.err).toBe(text);
  const ours = await h.uploadWithCallback(client, params);
  expect(ours.err).toBeInstanceOf(Error);
  expect(ours.err.code).toBe(code);
  expect(String(ours.err)).toBe(text);
  expect(ours.result).toBeUndefined();
  await expect(client.uploadFile(params)).rejects.toMatchObject({ code });
  await expectNothingSent();
}

describe('required parameters', () => {
  const base = () => ({ Bucket: h.BUCKET, Key: h.uniqueKey(), UploadFile: file });
  test.each([
    ['no Bucket', { Bucket: undefined }, 'InvalidArgument:Bucket is a required element!'],
    ["Bucket ''", { Bucket: '' }, 'InvalidArgument:Bucket is a required element!'],
    ['no Key', { Key: undefined }, 'InvalidArgument:Key is a required element!'],
    ['Key 0', { Key: 0 }, 'InvalidArgument:Key is a required element!'],
    ['no UploadFile', { UploadFile: undefined }, 'InvalidArgument:UploadFile is a required element!'],
  ])('%s', async (_, change, text) => {
    await expectSameAsReference({ ...base(), ...change }, 'InvalidArgument', text);
  });

  test.each([['a string', 'a string'], ['a number', 42], ['null', null], ['undefined', undefined], ['an array', []]])(
    'params that is %s',
    async (_, params) => {
      await expectSameAsReference(params, 'InvalidArgument', 'InvalidArgument:Bucket is a required element!');
    },
  );
});

// A bucket name goes into the URL's host (virtual-hosted requests) or path.
// In the host, one with a character no bucket has could move the whole
// upload, signed and with its security token, to another host
// ('evil.example/x' would make the host evil.example). In the path (path
// style) it is encoded, and only '.' and '..', which URLs drop, and a '/',
// which would make part of it the key, are refused.
describe('a Bucket that is not a bucket name', () => {
  const record = () => path.join(dir, 'bad-bucket.record');
  const attempt = (c, Bucket) => h.uploadWithCallback(c, { Bucket, Key: h.uniqueKey(), UploadFile: file, EnableCheckpoint: true, CheckpointFile: record() });
  const bad = ['evil.example/x', 'a@evil.example', 'evil.example:8443', 'evil.example#', 'a?b', 'a\\b', 'a b', 'a\r\nb', 'b\u00fccket'];
  test.each(bad.map((b) => [JSON.stringify(b), b]))('%s in the host name is an InvalidArgument and nothing is sent', async (_, bucket) => {
    const virtualHosted = h.clientFor(server, { server: server.endpoint.replace('127.0.0.1', 'localhost') });
    const { err } = await attempt(virtualHosted, bucket);
    expect(err.code).toBe('InvalidArgument');
    expect(err.message).toBe(`Bucket ${JSON.stringify(bucket)} is not a valid bucket name (letters, digits, '.', '-' and '_' only)`);
    expect(fs.existsSync(record())).toBe(false);
    await expectNothingSent();
  });

  test.each([
    ['.', "is a '.' or '..' path segment, which URLs drop"],
    ['..', "is a '.' or '..' path segment, which URLs drop"],
    ['other-bucket/x', "has a '/', which would make part of it the key"],
  ])('%s in the path is an InvalidArgument and nothing is sent', async (bucket, why) => {
    const { err } = await attempt(client, bucket);
    expect(err.code).toBe('InvalidArgument');
    expect(err.message).toBe(`Bucket ${JSON.stringify(bucket)} ${why}`);
    await expectNothingSent();
  });

  test('in the path, any other name goes to the server encoded, and the server answers for it', async () => {
    const { err } = await attempt(client, 'tenant:bucket');
    expect(err.code).toBe('InvalidBucketName'); // s3s-fs's answer
    const { requests } = await server.stats();
    expect(requests.length).toBeGreaterThan(0);
    expect(requests.every((r) => /^\/tenant(:|%3A)bucket\//.test(r.path))).toBe(true);
  });
});

// Expires is a number of days. A value that is not a whole number would
// be sent as something the server refuses, or (true as 1) expire the
// object a day later than never.
describe('Expires', () => {
  test.each([[true], [false], [1.5], ['abc'], ['1.5'], ['0x10'], ['1e3'], [{}], [[]], [NaN], [Infinity], ['  ']])('%p is an InvalidArgument and nothing is sent', async (Expires) => {
    const { err } = await h.uploadWithCallback(client, { Bucket: h.BUCKET, Key: h.uniqueKey(), UploadFile: file, Expires });
    expect(String(err)).toBe('InvalidArgument:Expires must be a whole number of days');
    await expectNothingSent();
  });

  test.each([[3], ['3'], [' +3 '], [0], [''], [null]])('%p uploads', async (Expires) => {
    const key = h.uniqueKey();
    const result = await client.uploadFile({ Bucket: h.BUCKET, Key: key, UploadFile: file, Expires });
    expect(result.CommonMsg.Status).toBe(200);
    await h.expectUploaded(server, key, file);
  });
});

describe('the file to upload', () => {
  test('does not exist', async () => {
    const params = { Bucket: h.BUCKET, Key: h.uniqueKey(), UploadFile: path.join(dir, 'missing.bin') };
    await expectSameAsReference(params, 'InvalidArgument', 'InvalidArgument:UploadFile does not exist!');
  });

  test('is a folder', async () => {
    const params = { Bucket: h.BUCKET, Key: h.uniqueKey(), UploadFile: dir };
    await expectSameAsReference(params, 'InvalidArgument', 'InvalidArgument:UploadFile is not a file!');
  });

  // The reference SDK initiates an upload, fails to open the file, and
  // reports a generic UploadFileFailed (or leaves the upload behind with a
  // checkpoint); obs-native checks that it can read the file before
  // sending anything.
  test('cannot be read', async () => {
    let unreadable;
    if (process.getuid && process.getuid() === 0) {
      unreadable = '/proc/sys/vm/drop_caches'; // mode 0200: even root cannot read it
      expect(() => fs.readFileSync(unreadable)).toThrow();
    } else {
      unreadable = h.makeFile(dir, 10);
      fs.chmodSync(unreadable, 0o000);
    }
    const params = { Bucket: h.BUCKET, Key: h.uniqueKey(), UploadFile: unreadable, EnableCheckpoint: true, CheckpointFile: path.join(dir, 'unreadable.record') };
    const { err } = await h.uploadWithCallback(client, params);
    expect(err.code).toBe('InvalidArgument');
    expect(String(err)).toMatch(/^InvalidArgument:UploadFile cannot be read: .*(denied|EACCES)/i);
    expect(fs.existsSync(params.CheckpointFile)).toBe(false);
    await expectNothingSent();
  });

  // Running out of file descriptors is the machine, not the caller's input:
  // not InvalidArgument (which says "do not try this again"). The call waits
  // for a descriptor (other uploads of the process free theirs as they end)
  // for as long as `timeout` lets a request go without moving, then fails
  // with FileReadError. A child process with a low limit uses them all up,
  // then calls uploadFile: with none freed (timeout 1 s), with them freed
  // 500 ms after the call, and with them free.
  test('cannot be opened because the process has no file descriptors left: it waits up to `timeout` for one, then FileReadError; freed meanwhile, the call goes on', async () => {
    const key = h.uniqueKey();
    const spec = { endpoint: server.endpoint, accessKey: server.accessKey, secretKey: server.secretKey, bucket: h.BUCKET, key, file, timeout: 1, freeAfterMs: 500 };
    const child = path.join(__dirname, 'fixtures', 'no-fds-child.js');
    const out = execFileSync('bash', ['-c', 'ulimit -n 256 && exec "$0" "$@"', process.execPath, child, JSON.stringify(spec)], { encoding: 'utf8', timeout: 60000 });
    const report = JSON.parse(out.trim().split('\n').pop());
    expect(report.exhausted).toBe(true);
    expect(report.starved.code).toBe('FileReadError');
    expect(report.starved.text).toMatch(/^FileReadError:cannot open the file to upload: Too many open files/);
    expect(report.starved.ms).toBeGreaterThanOrEqual(1000);
    expect(report.starved.ms).toBeLessThan(10000);
    expect(report.waited.status).toBe(200);
    expect(report.waited.ms).toBeGreaterThanOrEqual(500);
    expect(report.after.status).toBe(200);
    for (const k of [`${key}-waited`, `${key}-after`]) await h.expectUploaded(server, k, file);
    await expect(h.readBack(server, key)).rejects.toThrow(/404/);
    // The starved call sent nothing; the others one initiate each.
    const initiates = (await server.stats()).requests.filter((r) => r.method === 'POST' && /(^|&)uploads(=|&|$)/.test(r.query));
    expect(initiates.map((r) => r.path).sort()).toEqual([`/${h.BUCKET}/${key}-after`, `/${h.BUCKET}/${key}-waited`]);
  });
});

describe('PartSize and TaskNum of any type', () => {
  const partSizes = async (params) => {
    await server.resetStats();
    await client.uploadFile(params);
    await h.expectUploaded(server, params.Key, params.UploadFile);
    return (await h.partPuts(server)).map((r) => r.body_bytes).sort((a, b) => b - a);
  };

  test('PartSize is read with parseInt, as the reference reads it', async () => {
    const big = h.makeFile(dir, 6 * MB);
    const key = () => h.uniqueKey();
    expect(await partSizes({ Bucket: h.BUCKET, Key: key(), UploadFile: big, PartSize: '6291456' })).toEqual([6 * MB]);
    expect(await partSizes({ Bucket: h.BUCKET, Key: key(), UploadFile: big, PartSize: 5.5 * MB })).toEqual([5767168, 524288]);
    for (const bad of ['abc', 0, -5, 1e20, NaN, 102399, {}, [], true]) {
      expect(await partSizes({ Bucket: h.BUCKET, Key: key(), UploadFile: big, PartSize: bad })).toEqual([5 * MB, MB]);
    }
  });

  // As the reference SDK reads it (parseInt, else 20). The parts sent at
  // once show what was made of it: 24 parts of 100 KiB, each held 1 s at
  // the server, counted for 500 ms from the first, then the upload is
  // aborted (parts that small would not complete on this store). Then the
  // same TaskNum uploads a file whole.
  test('TaskNum that is not a positive number means the default 20; a string or a fraction is read as parseInt reads it', async () => {
    const parts = h.makeFile(dir, 24 * 102400);
    const expected = [['abc', 20], [0, 20], [NaN, 20], [{}, 20], [null, 20], ['3', 3], [2.7, 2], [1e9, 24]];
    const seen = [];
    for (const [taskNum] of expected) {
      const Key = h.uniqueKey();
      await h.slowParts(server, Key, 1000);
      let handle;
      const running = h.uploadWithCallback(client, { Bucket: h.BUCKET, Key, UploadFile: parts, PartSize: 102400, TaskNum: taskNum, ResumeCallback: (hd) => (handle = hd) });
      const most = await h.mostInFlight(server, running, (r) => r.method === 'PUT' && r.path.includes(Key), { windowMs: 500 });
      handle.abort();
      expect((await running).err.code).toBe('Upload isAbort');
      seen.push([taskNum, most]);
      const params = { Bucket: h.BUCKET, Key: h.uniqueKey(), UploadFile: file, TaskNum: taskNum };
      expect((await client.uploadFile(params)).CommonMsg.Status).toBe(200);
      await h.expectUploaded(server, params.Key, file);
    }
    expect(seen).toEqual(expected);
    expect(await h.newUploads(server)).toEqual([]);
  });

  // The reference SDK initiates an upload for a negative TaskNum, sends no
  // part, never calls back, and leaves the upload on the server.
  test('a negative TaskNum is an InvalidArgument and nothing is sent', async () => {
    for (const taskNum of [-1, '-4', -1e9]) {
      const { err } = await h.uploadWithCallback(client, { Bucket: h.BUCKET, Key: h.uniqueKey(), UploadFile: file, TaskNum: taskNum });
      expect(err.code).toBe('InvalidArgument');
      expect(String(err)).toBe('InvalidArgument:TaskNum must be a positive number');
    }
    await expectNothingSent();
  });
});

describe('callbacks', () => {
  // The reference SDK ignores a callback that is not a function and returns
  // a Promise; when that Promise rejects unobserved the process crashes.
  test.each([['a string', 'not a function'], ['a number', 123], ['an object', {}]])(
    'a callback that is %s throws a TypeError at the call, and nothing is sent',
    async (_, callback) => {
      expect(() => client.uploadFile({ Bucket: h.BUCKET, Key: 'k', UploadFile: file }, callback)).toThrow(
        expect.objectContaining({ name: 'TypeError', code: 'InvalidArgument', message: 'callback must be a function' }),
      );
      await expectNothingSent();
    },
  );

  test.each(['ProgressCallback', 'ResumeCallback'])('a %s that is not a function is an InvalidArgument', async (name) => {
    const { err } = await h.uploadWithCallback(client, { Bucket: h.BUCKET, Key: 'k', UploadFile: file, [name]: 'nope' });
    expect(err.code).toBe('InvalidArgument');
    expect(String(err)).toBe(`InvalidArgument:${name} must be a function`);
    await expectNothingSent();
  });

  test('a ProgressCallback that throws does not stop the upload; the throw becomes a warning', async () => {
    const warn = jest.spyOn(process, 'emitWarning').mockImplementation(() => {});
    const params = {
      Bucket: h.BUCKET,
      Key: h.uniqueKey(),
      UploadFile: file,
      ProgressCallback: () => {
        throw new Error('boom in progress');
      },
    };
    let warnings;
    try {
      await client.uploadFile(params);
      warnings = warn.mock.calls.map(([w]) => String(w));
    } finally {
      warn.mockRestore();
    }
    await h.expectUploaded(server, params.Key, file);
    expect(warnings.some((w) => w.includes('boom in progress'))).toBe(true);
  });

  // The reference SDK calls back a second time when cancel() or abort() is
  // called after the upload finished.
  test('the callback is called exactly once, whatever the handle does afterwards, and the object stays', async () => {
    let handle;
    let calls = 0;
    const Key = h.uniqueKey();
    await new Promise((resolve) => {
      client.uploadFile(
        { Bucket: h.BUCKET, Key, UploadFile: file, ResumeCallback: (hd) => (handle = hd) },
        () => {
          calls += 1;
          resolve();
        },
      );
    });
    await server.resetStats();
    handle.cancel();
    handle.abort();
    await new Promise((r) => setTimeout(r, 100));
    expect(calls).toBe(1);
    // Nothing is sent for a call that has ended (no abort of its upload).
    await expectNothingSent();
    await h.expectUploaded(server, Key, file);
  });

  test('Metadata that is not an object is an InvalidArgument', async () => {
    for (const Metadata of ['color=blue', 7, true, ['a']]) {
      const { err } = await h.uploadWithCallback(client, { Bucket: h.BUCKET, Key: 'k', UploadFile: file, Metadata });
      expect(String(err)).toBe('InvalidArgument:Metadata must be an object');
    }
    await expectNothingSent();
  });

  // As the reference reads it: a value JavaScript takes as false is none.
  test.each([[false], [0], ['']])('Metadata %p means none', async (Metadata) => {
    const key = h.uniqueKey();
    const result = await client.uploadFile({ Bucket: h.BUCKET, Key: key, UploadFile: file, Metadata });
    expect(result.CommonMsg.Status).toBe(200);
    await h.expectUploaded(server, key, file);
  });

  test.each([['a b'], ['a:b'], ['a\r\nx-evil'], ['ü'], ['a(b)']])('a Metadata key that cannot be a header name (%j) is an InvalidArgument; nothing is sent', async (name) => {
    const { err } = await h.uploadWithCallback(client, { Bucket: h.BUCKET, Key: h.uniqueKey(), UploadFile: file, Metadata: { ok: '1', [name]: 'v' } });
    expect(String(err)).toBe(`InvalidArgument:Metadata key ${JSON.stringify(name)} is not a valid HTTP header name`);
    await expectNothingSent();
  });

  test.each([
    ['UploadFile', 'InvalidArgument:UploadFile cannot be read: file name contained an unexpected NUL byte', (p) => `${p}\0x`],
    ['CheckpointFile', 'InvalidArgument:CheckpointFile contains a NUL byte', (p) => `${p}\0x`],
    ['CheckpointFile', 'InvalidArgument:CheckpointFile contains a NUL byte', (p) => path.join(path.dirname(p), 'sub\0dir', 'record')],
  ])(
    'a NUL byte in %s is an InvalidArgument; nothing is sent or written',
    async (name, text, spoil) => {
      const params = { Bucket: h.BUCKET, Key: h.uniqueKey(), UploadFile: file, EnableCheckpoint: true, CheckpointFile: `${file}.record` };
      params[name] = spoil(params[name]);
      const { err } = await h.uploadWithCallback(client, params);
      expect(String(err)).toBe(text);
      await expectNothingSent();
      expect(fs.readdirSync(path.dirname(file)).filter((n) => n.includes('.record') || n.startsWith('sub'))).toEqual([]);
    },
  );

  // Half of a surrogate pair (a string cut in the middle of an emoji) has
  // no UTF-8 form: sent, it would become U+FFFD and name another object or
  // file. The reference SDK throws an uncaught URIError on it.
  const HALF = '\ud83d';
  test.each([
    ['Key', (p) => ({ ...p, Key: `report-${HALF}` })],
    ['Bucket', (p) => ({ ...p, Bucket: `b${HALF}` })],
    ['UploadFile', (p) => ({ ...p, UploadFile: `${p.UploadFile}${HALF}` })],
    ['CheckpointFile', (p) => ({ ...p, CheckpointFile: `${p.UploadFile}.${HALF}.record` })],
    ['ContentType', (p) => ({ ...p, ContentType: `text/${HALF}` })],
    ['Metadata key "a\\ud83d"', (p) => ({ ...p, Metadata: { [`a${HALF}`]: 'v' } })],
    ['Metadata["a"]', (p) => ({ ...p, Metadata: { a: `v${HALF}` } })],
  ])('half of a surrogate pair in %s is an InvalidArgument; nothing is sent or written', async (name, spoil) => {
    const params = spoil({ Bucket: h.BUCKET, Key: h.uniqueKey(), UploadFile: file, EnableCheckpoint: true, CheckpointFile: `${file}.record` });
    const { err } = await h.uploadWithCallback(client, params);
    expect(err).toBeInstanceOf(h.ObsClient.ObsError);
    expect(String(err)).toBe(`InvalidArgument:${name} is not valid Unicode: it holds half of a surrogate pair`);
    await expectNothingSent();
    expect(fs.readdirSync(path.dirname(file)).filter((n) => n.includes('.record'))).toEqual([]);
  });

  // The reference SDK throws these uncaught (a TypeError, a URIError).
  test.each([
    ['a BigInt', { n: 1n }, /^InvalidArgument:Metadata cannot be read: Do not know how to serialize a BigInt/],
    ['a cycle', (() => { const m = { a: {} }; m.a.m = m; return m; })(), /^InvalidArgument:Metadata cannot be read: Converting circular structure to JSON/],
    ['half a surrogate pair deeper down', { a: { b: '\ud800' } }, /^InvalidArgument:the parameters cannot be read: /],
    ['a getter that throws', Object.defineProperty({}, 'a', { enumerable: true, get: () => { throw new Error('no'); } }), /^InvalidArgument:Metadata cannot be read: no$/],
  ])('Metadata holding %s is an InvalidArgument; nothing is sent, and the AbortSignal is let go', async (_, Metadata, text) => {
    const signal = new AbortController().signal;
    const { err } = await h.uploadWithCallback(client, { Bucket: h.BUCKET, Key: h.uniqueKey(), UploadFile: file, Metadata, AbortSignal: signal });
    expect(err).toBeInstanceOf(h.ObsClient.ObsError);
    expect(String(err)).toMatch(text);
    expect(getEventListeners(signal, 'abort')).toHaveLength(0);
    await expectNothingSent();
  });

  test('Metadata values may hold anything: a CR LF in one is sent encoded, not as a header of its own', async () => {
    const key = h.uniqueKey();
    const result = await client.uploadFile({ Bucket: h.BUCKET, Key: key, UploadFile: file, Metadata: { note: 'a\r\nx-evil: 1' } });
    expect(result.CommonMsg.Status).toBe(200);
    await h.expectUploaded(server, key, file);
    const ref = await h.referenceClientFor(server);
    const head = await ref.getObjectMetadata({ Bucket: h.BUCKET, Key: key });
    expect(head.InterfaceResult.Metadata).toEqual({ note: 'a%0D%0Ax-evil: 1' });
  });
});

describe('the server says no', () => {
  test('wrong secret key', async () => {
    const { err } = await h.uploadWithCallback(h.clientFor(server, { secret_access_key: 'wrong' }), {
      Bucket: h.BUCKET,
      Key: h.uniqueKey(),
      UploadFile: file,
      EnableCheckpoint: true,
    });
    expect(err.code).toBe('SignatureDoesNotMatch');
    expect(err.status).toBe(403);
    expect(fs.existsSync(`${file}.upload_record`)).toBe(false);
  });

  test('unknown access key', async () => {
    const params = { Bucket: h.BUCKET, Key: h.uniqueKey(), UploadFile: file };
    const unknown = { access_key_id: 'nobody' };
    const theirs = await new Promise(async (resolve) => (await h.referenceClientFor(server, unknown)).uploadFile(params, resolve));
    const { err } = await h.uploadWithCallback(h.clientFor(server, unknown), params);
    expect(String(err)).toBe(theirs);
    expect(err.status).toBe(403);
  });

  // s3s-fs accepts uploads into a bucket that does not exist, so the front
  // answers as OBS does.
  test('unknown bucket', async () => {
    await server.addFault({
      method: 'POST',
      query: { uploads: null },
      times: 0,
      action: { status: 404, code: 'NoSuchBucket', message: 'The specified bucket does not exist' },
    });
    const params = { Bucket: h.BUCKET, Key: h.uniqueKey(), UploadFile: file, EnableCheckpoint: true };
    const theirs = await refUpload(params);
    const { err } = await h.uploadWithCallback(client, params);
    expect(String(err)).toBe(theirs.err);
    expect(String(err)).toBe('NoSuchBucket:The specified bucket does not exist');
    expect(err.code).toBe('NoSuchBucket');
    expect(err.status).toBe(404);
    expect(fs.existsSync(`${file}.upload_record`)).toBe(false);
    expect(await h.newUploads(server)).toEqual([]);
  });
});

describe('constructor', () => {
  // The reference SDK rejects a promise inside its constructor instead,
  // which crashes the process as an unhandled rejection.
  test.each([[undefined], [{}], [{ server: '' }], [{ server: '   ' }]])('no server (%j) throws at once', (options) => {
    expect(() => new h.ObsClient(options)).toThrow(expect.objectContaining({ code: 'InvalidArgument', message: 'Server is not set' }));
  });

  test.each([
    [{ server: 'http://127.0.0.1:notaport' }, /port/],
    [{ server: '127.0.0.1', signature: 'v9' }, /signature 'v9'/],
    [{ server: 'http://[::1' }, /^Server is not a valid IPv6 address in brackets: http:\/\/\[::1$/],
    [{ server: 'http://[::1]x:80' }, /IPv6/],
    [{ server: 'http://[zz::1]:80' }, /IPv6/],
    [{ server: 'http://[::1]:0' }, /port/],
  ])('unusable options %j throw an InvalidArgument', (options, message) => {
    expect(() => new h.ObsClient(options)).toThrow(expect.objectContaining({ code: 'InvalidArgument', message: expect.stringMatching(message) }));
  });

  // A deadline that far out does not fit the clock; it is capped to a year
  // (it used to panic inside the first request and never call back).
  test.each([[1e19], [Number.MAX_SAFE_INTEGER]])('timeout %d works as a very long timeout', async (timeout) => {
    const params = { Bucket: h.BUCKET, Key: h.uniqueKey(), UploadFile: file };
    const result = await h.clientFor(server, { timeout }).uploadFile(params);
    expect(result.CommonMsg.Status).toBe(200);
    await h.expectUploaded(server, params.Key, file);
  });

  // A header value of one line; the reference SDK fails every request on it.
  test.each([['a\r\nX-Evil: 1'], ['a\nb'], ['a\u0000b']])('a user_agent with a control character (%j) throws an InvalidArgument', (ua) => {
    expect(() => new h.ObsClient({ server: '127.0.0.1', user_agent: ua })).toThrow(
      expect.objectContaining({ code: 'InvalidArgument', message: 'user_agent must not hold control characters (line breaks included)' }),
    );
  });

  test.each([['secret_access_key'], ['server']])('half of a surrogate pair in %s throws an InvalidArgument that does not show the value', (name) => {
    const options = { server: '127.0.0.1', access_key_id: 'ak', secret_access_key: 'sk', [name]: 'x\udc00' };
    expect(() => new h.ObsClient(options)).toThrow(
      expect.objectContaining({ code: 'InvalidArgument', message: `${name} is not valid Unicode: it holds half of a surrogate pair` }),
    );
  });

  test('unknown options are ignored', () => {
    expect(() => new h.ObsClient({ server: '127.0.0.1', long_conn_param: 5, no_such_option: true })).not.toThrow();
  });

  // The reference SDK finishes its constructor after an await, so a call in
  // the same tick fails with a TypeError.
  test('uploadFile works in the same tick as the constructor', async () => {
    const params = { Bucket: h.BUCKET, Key: h.uniqueKey(), UploadFile: file };
    const result = await new h.ObsClient({ access_key_id: server.accessKey, secret_access_key: server.secretKey, server: server.endpoint }).uploadFile(params);
    expect(result.CommonMsg.Status).toBe(200);
    await h.expectUploaded(server, params.Key, file);
  });

  test('refresh swaps the credentials of a live client', async () => {
    const c = h.clientFor(server, { secret_access_key: 'wrong' });
    const params = { Bucket: h.BUCKET, Key: h.uniqueKey(), UploadFile: file };
    await expect(c.uploadFile(params)).rejects.toMatchObject({ code: 'SignatureDoesNotMatch' });
    c.refresh(server.accessKey, server.secretKey);
    await c.uploadFile(params);
    await h.expectUploaded(server, params.Key, file);
  });
});

test('a checkpoint folder that cannot be created is a clear error', async () => {
  const blocker = path.join(os.tmpdir(), `obs-native-blocker-${process.pid}`);
  fs.writeFileSync(blocker, 'a file where a folder should be');
  try {
    const { err } = await h.uploadWithCallback(client, {
      Bucket: h.BUCKET,
      Key: h.uniqueKey(),
      UploadFile: file,
      EnableCheckpoint: true,
      CheckpointFile: path.join(blocker, 'sub', 'record'),
    });
    expect(err.code).toBe('WriteCheckpointFileError');
    await expectNothingSent();
  } finally {
    fs.rmSync(blocker, { force: true });
  }
});

// URLs drop `.` and `..` segments, so such a key would be stored under
// another name (the reference SDK sends it as is; some servers then store
// it literally, others refuse it).
test.each(['a/../b', './x', 'dir/./y', '..'])('a key with a dot segment (%s) is refused before anything is sent', async (key) => {
  const { err } = await h.uploadWithCallback(client, { Bucket: h.BUCKET, Key: key, UploadFile: file });
  expect(err.code).toBe('InvalidArgument');
  expect(String(err)).toMatch(/path segment/);
  await expectNothingSent();
});
