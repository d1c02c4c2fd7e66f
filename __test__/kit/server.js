'use strict';
// Starts and steers the obs-testkit server (testkit/ in this repository) for tests:
// spawns the release binary on a fresh temp root, reads its readiness line, and
// wraps its control API (faults, stats, stop/start of the S3 port, open uploads,
// credentials).
// CommonJS, Node 20, no dependencies.
//
// Mode 'obs' speaks Huawei OBS's protocol (negotiation, OBS signatures, x-obs-*
// headers) as well as AWS V2/V4. Its virtual-hosted buckets (`bucket.<domain>`) need
// no DNS: every connection goes to 127.0.0.1:port, either through an agent from
// `server.localAgent()` (for the reference SDK's `http_agent`) or by using the
// server itself as the HTTP proxy (`proxy: server.endpoint`); the S3 port takes
// absolute-form request targets like a proxy would.

const { spawn } = require('node:child_process');
const fs = require('node:fs');
const fsp = require('node:fs/promises');
const http = require('node:http');
const os = require('node:os');
const path = require('node:path');

const REPO_ROOT = path.resolve(__dirname, '..', '..');
const DEFAULT_ACCESS_KEY = 'test-ak';
const DEFAULT_SECRET_KEY = 'test-sk-0123456789';
const READY_TIMEOUT_MS = 15000;

function binaryCandidates() {
  if (process.env.OBS_TESTKIT_BIN) return [process.env.OBS_TESTKIT_BIN];
  const candidates = [];
  // The same target folder `npm test` built it in (cargo honours CARGO_TARGET_DIR).
  if (process.env.CARGO_TARGET_DIR) {
    candidates.push(path.join(process.env.CARGO_TARGET_DIR, 'release', 'obs-testkit'));
  }
  candidates.push(path.join(REPO_ROOT, 'target', 'release', 'obs-testkit'));
  return candidates;
}

/** Path of the obs-testkit binary; throws a clear Error when it has not been built. */
function ensureBuilt() {
  const candidates = binaryCandidates();
  const found = candidates.find((candidate) => fs.existsSync(candidate));
  if (!found) {
    throw new Error(
      `obs-testkit binary not found (looked at ${candidates.join(', ')}). ` +
        'Build it with `cargo build --release -p obs-testkit` ' +
        'or point OBS_TESTKIT_BIN at it.',
    );
  }
  return found;
}

/** An http.Agent that connects to 127.0.0.1:port for every host name. */
class LocalAgent extends http.Agent {
  constructor(port, options) {
    super(options);
    this.localPort = port;
  }

  createConnection(options, callback) {
    return super.createConnection({ ...options, host: '127.0.0.1', port: this.localPort }, callback);
  }
}

/** One JSON request to the control port. Resolves to the parsed answer; rejects on non-2xx. */
function controlCall(port, method, route, body) {
  return new Promise((resolve, reject) => {
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const req = http.request(
      {
        host: '127.0.0.1',
        port,
        method,
        path: route,
        // A fresh connection each time: control calls must not sit in a pool the
        // tests' own agents could interfere with, and stop/start must not be queued.
        agent: false,
        headers: payload
          ? { 'content-type': 'application/json', 'content-length': payload.length }
          : { 'content-length': 0 },
      },
      (res) => {
        const chunks = [];
        res.on('data', (chunk) => chunks.push(chunk));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let parsed;
          try {
            parsed = text ? JSON.parse(text) : {};
          } catch (err) {
            reject(new Error(`obs-testkit control ${method} ${route}: bad JSON ${JSON.stringify(text)}`));
            return;
          }
          if (res.statusCode < 200 || res.statusCode > 299) {
            const why = parsed && parsed.error ? parsed.error : text;
            reject(new Error(`obs-testkit control ${method} ${route}: ${res.statusCode} ${why}`));
            return;
          }
          resolve(parsed);
        });
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(payload);
  });
}

/** Resolves with the first stdout line, parsed; rejects if the process exits or stalls first. */
function readReadyLine(child, stderrTail) {
  return new Promise((resolve, reject) => {
    let buffered = '';
    const timer = setTimeout(() => {
      finish(new Error(`obs-testkit gave no readiness line within ${READY_TIMEOUT_MS} ms; stderr: ${stderrTail()}`));
    }, READY_TIMEOUT_MS);
    function finish(err, value) {
      clearTimeout(timer);
      child.stdout.removeListener('data', onData);
      child.removeListener('exit', onExit);
      child.removeListener('error', onError);
      if (err) reject(err);
      else resolve(value);
    }
    function onData(chunk) {
      buffered += chunk.toString('utf8');
      const newline = buffered.indexOf('\n');
      if (newline < 0) return;
      const line = buffered.slice(0, newline);
      try {
        finish(null, JSON.parse(line));
      } catch (err) {
        finish(new Error(`obs-testkit readiness line is not JSON: ${JSON.stringify(line)}`));
      }
    }
    function onExit(code, signal) {
      finish(new Error(`obs-testkit exited before it was ready (code ${code}, signal ${signal}); stderr: ${stderrTail()}`));
    }
    function onError(err) {
      finish(err);
    }
    child.stdout.on('data', onData);
    child.once('exit', onExit);
    child.once('error', onError);
  });
}

/**
 * Starts a server. Options: mode ('s3' | 'obs' | 'sink'), buckets, accessKey,
 * secretKey, securityToken (the keys are then temporary credentials: signed requests
 * must carry this token), domain (string or array, for virtual-hosted-style
 * addressing; mode 'obs' wants one, e.g. 'obs.test'), root (a folder to serve; by
 * default a fresh temp folder, removed again by close()), tls ({cert, key}: PEM
 * files; the S3 port then speaks HTTPS and `endpoint` starts with https://).
 */
async function startServer({
  mode = 's3',
  buckets = ['test-bucket'],
  accessKey,
  secretKey,
  securityToken,
  domain,
  root,
  tls,
} = {}) {
  const bin = ensureBuilt();
  const ak = accessKey || DEFAULT_ACCESS_KEY;
  const sk = secretKey || DEFAULT_SECRET_KEY;
  const ownsRoot = !root;
  const serverRoot = root || (await fsp.mkdtemp(path.join(os.tmpdir(), 'obs-testkit-')));
  const domains = [].concat(domain || []);

  const args = ['--root', serverRoot, '--mode', mode, '--access-key', ak, '--secret-key', sk];
  if (securityToken) args.push('--security-token', securityToken);
  for (const bucket of buckets || []) args.push('--bucket', bucket);
  for (const d of domains) args.push('--domain', d);
  if (tls) args.push('--tls-cert', tls.cert, '--tls-key', tls.key);

  // stdin is a pipe we never write to: the server exits when it reaches EOF, so it
  // dies with this process even if close() is never called.
  const child = spawn(bin, args, { stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (chunk) => {
    stderr = (stderr + chunk.toString('utf8')).slice(-4000);
    if (process.env.OBS_TESTKIT_VERBOSE) process.stderr.write(chunk);
  });
  // Do not let an idle server keep the test process alive.
  child.unref();
  for (const stream of [child.stdin, child.stdout, child.stderr]) {
    if (stream && typeof stream.unref === 'function') stream.unref();
    else if (stream && stream._handle && typeof stream._handle.unref === 'function') stream._handle.unref();
  }
  child.stdin.on('error', () => {}); // EPIPE once the server is gone.

  const exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));

  let ready;
  try {
    ready = await readReadyLine(child, () => stderr);
  } catch (err) {
    child.kill('SIGKILL');
    if (ownsRoot) await fsp.rm(serverRoot, { recursive: true, force: true });
    throw err;
  }
  const { port, control } = ready;
  const call = (method, route, body) => controlCall(control, method, route, body);

  let closing = null;
  const server = {
    port,
    control,
    endpoint: `${tls ? 'https' : 'http'}://127.0.0.1:${port}`,
    root: serverRoot,
    accessKey: ak,
    secretKey: sk,
    securityToken: securityToken || undefined,
    mode,
    buckets: [...(buckets || [])],
    domains,
    /**
     * Replaces the credentials the server accepts (OBS, V2 and V4 alike) from the next
     * request on; without securityToken none is required. Updates accessKey,
     * secretKey and securityToken above.
     */
    setCredentials: async ({ accessKey: newAk, secretKey: newSk, securityToken: newToken } = {}) => {
      const body = { access_key: newAk, secret_key: newSk };
      if (newToken) body.security_token = newToken;
      await call('POST', '/credentials', body);
      server.accessKey = newAk;
      server.secretKey = newSk;
      server.securityToken = newToken || undefined;
    },
    /**
     * Sets the server's clock `offsetSecs` seconds off the machine's (0: back to it).
     * While off, a signed request dated over 15 minutes from it is refused 403
     * RequestTimeTooSkewed, with the server's time in `Date`.
     */
    setClock: (offsetSecs) => call('POST', '/clock', { offset_secs: offsetSecs }),
    /**
     * An http.Agent whose every connection goes to this server, whatever host the
     * request names (e.g. `bucket.obs.test`): for the reference SDK's `http_agent`.
     */
    localAgent: (options = {}) => new LocalAgent(port, { keepAlive: true, ...options }),
    /** Adds a fault rule; resolves to its id. */
    addFault: async (spec) => (await call('POST', '/faults', spec)).id,
    clearFaults: () => call('DELETE', '/faults'),
    /** The rules, each with `matched` and `fired` counts. */
    faults: async () => (await call('GET', '/faults')).faults,
    /** `{requests: [{method, path, query, host, auth, status, body_bytes, fault}], body_bytes}`; auth is obs, v2, v4 or none. */
    stats: () => call('GET', '/stats'),
    resetStats: () => call('POST', '/stats/reset'),
    /** Closes the S3 port and all its connections (the port is free when this resolves). */
    stopS3: () => call('POST', '/stop'),
    /** Serves the same port and data again. */
    startS3: () => call('POST', '/start'),
    /** Upload ids of the multipart uploads the server still holds. */
    uploads: async () => (await call('GET', '/uploads')).uploads,
    /**
     * Upload ids whose part files are still in the root with no upload record: s3s-fs
     * forgets the upload id when CompleteMultipartUpload starts, so a failed complete
     * (EntityTooSmall, bad part order) strands its parts. Always [] in sink mode.
     */
    orphanParts: async () => (await call('GET', '/uploads')).orphan_parts,
    /** Ends the server (stdin EOF), waits for it to exit, removes the temp root. */
    close: () => {
      if (!closing) {
        closing = (async () => {
          if (child.exitCode === null && child.signalCode === null) {
            child.stdin.end();
            const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
            await exited;
            clearTimeout(timer);
          }
          if (ownsRoot) await fsp.rm(serverRoot, { recursive: true, force: true });
        })();
      }
      return closing;
    },
  };
  return server;
}

module.exports = { startServer, ensureBuilt, controlCall, DEFAULT_ACCESS_KEY, DEFAULT_SECRET_KEY };
