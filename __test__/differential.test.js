'use strict';
// Differential: the documented sample (examples/resumable-upload.js) run
// through esdk-obs-nodejs and through obs-native against the same server.
// The callback's results must have the same keys, in the same order, with
// the same values except those that differ per request.

const fs = require('node:fs');
const Module = require('node:module');
const path = require('node:path');
const h = require('./helpers');

const SAMPLE = path.join(__dirname, '..', 'examples', 'resumable-upload.js');
const PER_REQUEST = new Set(['RequestId', 'Id2', 'Date']);

const ctx = h.useServer({ buckets: ['bucketname'] });
let server;
let dir;

beforeAll(() => {
  ({ server, dir } = ctx);
});

/**
 * Runs the sample with `ClientClass` as what it requires, the placeholders
 * filled with the local server's values. Resolves with what the callback
 * received and what the sample printed.
 */
function runSample(ClientClass, { file, key }) {
  return new Promise((resolve, reject) => {
    const printed = [];
    const source = fs
      .readFileSync(SAMPLE, 'utf8')
      .replace("require('obs-native')", '__sdk')
      .replace(/console\.(log|error)\(/g, '__print(')
      .replace("'*** Provide your Access Key ***'", JSON.stringify(server.accessKey))
      .replace("'*** Provide your Secret Key ***'", JSON.stringify(server.secretKey))
      .replace("'yourdomainname'", JSON.stringify(server.endpoint))
      .replace("'objectkey'", JSON.stringify(key))
      .replace("'localfile'", JSON.stringify(file));
    class Capturing extends ClientClass {}
    Capturing.prototype.uploadFile = function uploadFile(params, callback) {
      // The reference SDK finishes its setup one tick after construction.
      setImmediate(() =>
        ClientClass.prototype.uploadFile.call(this, params, (err, result) => {
          try {
            callback(err, result);
            resolve({ err, result, printed });
          } catch (e) {
            reject(e);
          }
        }),
      );
    };
    const m = new Module(SAMPLE, module);
    m.filename = SAMPLE;
    m.paths = Module._nodeModulePaths(path.dirname(SAMPLE));
    const wrapped = `(function (__sdk, __print) { ${source}\n})`;
    m._compile(`module.exports = ${wrapped};`, SAMPLE);
    m.exports(Capturing, (line) => printed.push(line));
  });
}

function keysAndValues(obj) {
  return Object.keys(obj).map((k) => [k, PER_REQUEST.has(k) ? typeof obj[k] : obj[k]]);
}

test('the documented sample gives the same callback results through both SDKs', async () => {
  const file = h.makeFile(dir, 25 * h.MB + 3);
  const ref = await runSample(h.ReferenceClient, { file, key: 'sample-ref' });
  const ours = await runSample(h.ObsClient, { file, key: 'sample-native' });

  expect(ref.err).toBeNull();
  expect(ours.err).toBeNull();
  expect(Object.keys(ours.result)).toEqual(Object.keys(ref.result));
  expect(keysAndValues(ours.result.CommonMsg)).toEqual(keysAndValues(ref.result.CommonMsg));
  const strip = (r) => ({ ...r, Key: '<key>' });
  expect(keysAndValues(strip(ours.result.InterfaceResult))).toEqual(keysAndValues(strip(ref.result.InterfaceResult)));
  expect(ours.result.InterfaceResult.Key).toBe('sample-native');
  expect(ours.result.InterfaceResult.ETag).toBe(ref.result.InterfaceResult.ETag);

  // The lines the sample prints, but for the request id and the key.
  const normal = (lines) => lines.map((l) => l.replace(/^RequestId-->.*/, 'RequestId--><id>').replace(/^Key-->.*/, 'Key--><key>'));
  expect(normal(ours.printed)).toEqual(normal(ref.printed));
  expect(ours.printed[0]).toBe('Error-->null');

  // Same bytes stored, no record or multipart upload left by either.
  const want = fs.readFileSync(file);
  expect((await h.readBack(server, 'sample-native', 'bucketname')).equals(want)).toBe(true);
  expect((await h.readBack(server, 'sample-ref', 'bucketname')).equals(want)).toBe(true);
  expect(fs.existsSync(`${file}.upload_record`)).toBe(false);
  expect(await server.uploads()).toEqual([]);
});

test('an error answer gives the same error string through both SDKs', async () => {
  const file = h.makeFile(dir, 100);
  const params = { Bucket: 'bucketname', Key: 'k', UploadFile: file };
  const wrong = { secret_access_key: 'not-the-secret' };
  const refClient = await h.referenceClientFor(server, wrong);
  const refErr = await new Promise((r) => refClient.uploadFile(params, (e) => r(e)));
  const { err } = await h.uploadWithCallback(h.clientFor(server, wrong), params);
  // s3s-fs sends no <Message>; the reference prints JavaScript's
  // `undefined` there, obs-native leaves the message empty.
  expect(String(refErr)).toBe('SignatureDoesNotMatch:undefined');
  expect(String(err)).toBe('SignatureDoesNotMatch:');
  expect(err.code).toBe('SignatureDoesNotMatch');
  expect(err.status).toBe(403);
});

// Requests that keep failing the same way, through both SDKs with no
// retries: the same error string. Each case starts from a clean server
// and ends with no multipart upload left behind.
describe('the same error string through both SDKs when a request keeps failing', () => {
  const cases = [
    // [name, size, fault, what both print]
    ['500 on the complete, no checkpoint', 100, { method: 'POST', query: { uploadId: null }, action: { status: 500, code: 'InternalError', message: 'boom' } }, 'UploadFileFailed:Status:500,Code:InternalError,Message:boom'],
    ['403 on a part', 100, { method: 'PUT', query: { partNumber: null }, action: { status: 403, code: 'AccessDenied', message: 'no' } }, 'AccessDenied:no'],
    ['400 on a part, no message', 100, { method: 'PUT', query: { partNumber: null }, action: { status: 400, code: 'BadDigest', message: '' } }, 'BadDigest'],
    ['parts under the store minimum (EntityTooSmall, no message)', 300 * 1024, null, 'EntityTooSmall'],
  ];
  test.each(cases)('%s', async (_, size, fault, text) => {
    const file = h.makeFile(dir, size);
    const params = (key) => ({ Bucket: 'bucketname', Key: key, UploadFile: file, PartSize: 100 * 1024 });
    const options = { max_retry_count: 0 };
    if (fault) await server.addFault({ ...fault, times: 0 });
    const refClient = await h.referenceClientFor(server, options);
    const { err: refErr } = await h.uploadWithCallback(refClient, params(h.uniqueKey()));
    const { err } = await h.uploadWithCallback(h.clientFor(server, options), params(h.uniqueKey()));
    expect(String(refErr)).toBe(text);
    expect(String(err)).toBe(text);
    await server.clearFaults();
    expect(await h.newUploads(server)).toEqual([]);
  });
});
