'use strict';
// Many uploads at once from one process under a descriptor limit: how many
// complete, and how many multipart uploads are left on the server.
//
//   CARGO_TARGET_DIR=... node tools/many-uploads.js [uploads=200] [bytes=12582912] [TaskNum=20]
//
// Environment: LIMIT=n sets this process's descriptor limit (soft and hard,
// with prlimit) after the test server has started; CP=1 gives every upload a
// checkpoint record; TLS=1 serves HTTPS; REF=1 runs esdk-obs-nodejs instead.
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const crypto = require('node:crypto');
const { execSync } = require('node:child_process');
const { startServer } = require('../__test__/kit/server.js');

const ObsClient = process.env.REF ? require('esdk-obs-nodejs') : require('..');
const [N, SIZE, TASK] = [200, 12 << 20, 20].map((d, i) => Number(process.argv[2 + i] || d));
const TLS_DIR = path.join(__dirname, '..', '__test__', 'fixtures', 'tls');

(async () => {
  const tls = process.env.TLS ? { cert: path.join(TLS_DIR, 'cert.pem'), key: path.join(TLS_DIR, 'key.pem') } : undefined;
  const s = await startServer({ tls });
  if (process.env.LIMIT) execSync(`prlimit --pid ${process.pid} --nofile=${process.env.LIMIT}:${process.env.LIMIT}`);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'many-'));
  const file = path.join(dir, 'f');
  fs.writeFileSync(file, crypto.randomBytes(SIZE));
  const c = new ObsClient({ access_key_id: s.accessKey, secret_access_key: s.secretKey, server: s.endpoint });
  await new Promise((r) => setImmediate(r));
  const t0 = Date.now();
  const outcomes = await Promise.all(
    Array.from({ length: N }, (_, i) =>
      c
        .uploadFile({ Bucket: 'test-bucket', Key: `k${i}`, UploadFile: file, PartSize: 5 << 20, TaskNum: TASK, EnableCheckpoint: !!process.env.CP, CheckpointFile: path.join(dir, `rec${i}`) })
        .then(
          () => 'ok',
          (e) => String(e).slice(0, 160),
        ),
    ),
  );
  const counts = {};
  for (const o of outcomes) counts[o] = (counts[o] || 0) + 1;
  console.log(`${Date.now() - t0} ms`, counts, 'multipart uploads left:', (await s.uploads()).length);
  await s.close();
  fs.rmSync(dir, { recursive: true, force: true });
})();
