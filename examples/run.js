'use strict';
// `npm run example`: runs the documented resumable-upload sample
// (examples/resumable-upload.js, the documentation's code with only the
// require line changed) against a local S3 server that this script starts,
// on a 64 MiB file it generates. The sample's placeholders are filled in
// with the local server's values, as a user fills them in with theirs, and
// progress is printed through the ProgressCallback parameter.

const crypto = require('node:crypto');
const fs = require('node:fs');
const Module = require('node:module');
const os = require('node:os');
const path = require('node:path');
const { startServer } = require('../__test__/kit/server.js');
const ObsClient = require('obs-native');

const SAMPLE = path.join(__dirname, 'resumable-upload.js');
const FILE_SIZE = 64 * 1024 * 1024;

async function generateFile(file) {
  const out = fs.createWriteStream(file);
  const chunk = 1024 * 1024;
  for (let written = 0; written < FILE_SIZE; written += chunk) {
    if (!out.write(crypto.randomBytes(chunk))) await new Promise((r) => out.once('drain', r));
  }
  await new Promise((resolve, reject) => out.end((err) => (err ? reject(err) : resolve())));
}

function printProgress(transferred, total, seconds) {
  const pct = total ? ((transferred / total) * 100).toFixed(1) : '100.0';
  const rate = seconds > 0 ? (transferred / 1048576 / seconds).toFixed(1) : '-';
  process.stdout.write(`progress: ${pct}% (${transferred}/${total} bytes, ${rate} MiB/s)\n`);
}

async function main() {
  const server = await startServer({ buckets: ['bucketname'] });
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'obs-native-example-'));
  const localFile = path.join(dir, 'localfile.bin');
  await generateFile(localFile);
  console.log(`local S3 server: ${server.endpoint}; file: ${localFile} (${FILE_SIZE} bytes)`);

  // Print progress and shut the server down once the sample's callback has run.
  const upload = ObsClient.prototype.uploadFile;
  const finished = new Promise((resolve) => {
    ObsClient.prototype.uploadFile = function (params, callback) {
      params.ProgressCallback = printProgress;
      return upload.call(this, params, (err, result) => {
        try {
          callback(err, result);
        } finally {
          resolve(err);
        }
      });
    };
  });

  const filled = fs
    .readFileSync(SAMPLE, 'utf8')
    .replace("'*** Provide your Access Key ***'", JSON.stringify(server.accessKey))
    .replace("'*** Provide your Secret Key ***'", JSON.stringify(server.secretKey))
    .replace("'yourdomainname'", JSON.stringify(server.endpoint))
    .replace("'localfile'", JSON.stringify(localFile));
  const sample = new Module(SAMPLE, module);
  sample.filename = SAMPLE;
  sample.paths = Module._nodeModulePaths(__dirname);
  sample._compile(filled, SAMPLE);

  const err = await finished;
  await server.close();
  fs.rmSync(dir, { recursive: true, force: true });
  process.exitCode = err ? 1 : 0;
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
