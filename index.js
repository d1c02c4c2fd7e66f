'use strict';
// The reference-compatible surface of obs-native: ObsClient with the
// options, parameter coercion, callback-or-Promise convention, result
// objects and error strings of esdk-obs-nodejs. The work itself runs in the
// native addon (binding.js) on a tokio runtime; nothing here blocks.

const { NativeClient, UploadControl } = require('./binding.js');

/** An error with a stable `code`; `String(err)` is the reference SDK's `Code:Message`. */
class ObsError extends Error {
  /** Printed as the code alone while the message is empty, as the reference prints some refusals. */
  #bare = false;

  constructor(info) {
    super(info.message);
    this.name = 'ObsError';
    this.code = info.code;
    for (const k of ['status', 'requestId', 'hostId', 'uploadId', 'partNumber', 'retryable']) {
      if (info[k] !== undefined) this[k] = info[k];
    }
    if (info.serviceCode !== undefined) {
      this.serviceCode = info.serviceCode;
      this.serviceMessage = info.serviceMessage;
    }
    this.#bare = info.bareWhenEmpty === true;
  }

  toString() {
    const bare = #bare in this && this.#bare && this.message === '';
    return bare ? String(this.code) : `${this.code}:${this.message}`;
  }
}

const invalid = (message) => new ObsError({ code: 'InvalidArgument', message });

const CANCELLED = 'Upload suspened';

/**
 * An upload stopped by its AbortSignal: cancelled as by ResumeCallback's
 * cancel() (record and multipart upload kept for the next call), named
 * AbortError as Node names aborted operations.
 */
function abortError(signal, info = {}) {
  const e = new ObsError({ ...info, code: CANCELLED, message: 'The process of uploadFile is suspened, you can try again' });
  e.name = 'AbortError';
  e.cause = signal.reason;
  return e;
}

/**
 * The uploads each AbortSignal cancels, behind one 'abort' listener per
 * signal: one signal for a batch of uploads is the usual pattern, and Node
 * warns (MaxListenersExceededWarning) past 10 listeners on one signal.
 */
const watched = new WeakMap();

/** Cancels with `signal`; returns the function that stops watching. */
function watchSignal(signal, cancel) {
  let entry = watched.get(signal);
  if (!entry) {
    const cancels = new Set();
    const onAbort = () => {
      watched.delete(signal);
      for (const c of cancels) c();
    };
    entry = { cancels, onAbort };
    watched.set(signal, entry);
    signal.addEventListener('abort', onAbort, { once: true });
  }
  entry.cancels.add(cancel);
  return () => {
    entry.cancels.delete(cancel);
    if (entry.cancels.size === 0 && watched.get(signal) === entry) {
      watched.delete(signal);
      signal.removeEventListener('abort', entry.onAbort);
    }
  };
}

const isFunction = (f) => typeof f === 'function';
const present = (v) => v !== undefined && v !== null;

// A string cut in the middle of a character (half of a UTF-16 surrogate
// pair) has no UTF-8 form: it would reach the server as another string
// (U+FFFD in its place), so it is refused. The reference SDK throws an
// uncaught URIError on it.
const LONE_SURROGATE = /\p{Surrogate}/u;

/** `v` as a string; refused when it holds a lone surrogate. */
function text(name, v) {
  const s = String(v);
  if (LONE_SURROGATE.test(s)) throw invalid(`${name} is not valid Unicode: it holds half of a surrogate pair`);
  return s;
}
const str = (name, v) => (present(v) ? text(name, v) : undefined);
const trimmed = (name, v) => (v ? text(name, v).trim() : undefined);

/**
 * `Expires`: whole days, as a number or a numeric string; absent when not
 * given. Anything else (`true`, `1.5`, `'abc'`) is refused rather than sent
 * as something the server refuses, or read as a number of days the caller
 * did not mean (`true` would be 1: the object deleted a day later).
 */
function expiresDays(v) {
  if (!present(v) || v === '') return undefined;
  // Digits only in a string: Number() would also read '0x10' or '1e3'.
  const n = typeof v === 'number' || (typeof v === 'string' && /^\s*[+-]?\d+\s*$/.test(v)) ? Number(v) : NaN;
  if (!Number.isSafeInteger(n)) throw invalid('Expires must be a whole number of days');
  return n;
}

/** parseInt as the reference applies it; undefined for NaN. */
function int(v) {
  const n = parseInt(v, 10);
  return Number.isNaN(n) ? undefined : n;
}

function toNativeOptions(param) {
  const p = param || {};
  if (!p.server) {
    throw invalid('Server is not set');
  }
  const sslVerify = p.ssl_verify;
  return {
    accessKeyId: trimmed('access_key_id', p.access_key_id),
    secretAccessKey: trimmed('secret_access_key', p.secret_access_key),
    securityToken: trimmed('security_token', p.security_token),
    server: text('server', p.server).trim(),
    isSecure: present(p.is_secure) ? Boolean(p.is_secure) : undefined,
    port: int(p.port) > 0 ? int(p.port) : undefined,
    pathStyle: present(p.path_style) ? Boolean(p.path_style) : undefined,
    signature: present(p.signature) ? String(p.signature).trim().toLowerCase() : undefined,
    isSignatureNegotiation: present(p.is_signature_negotiation) ? Boolean(p.is_signature_negotiation) : undefined,
    region: present(p.region) ? text('region', p.region).trim() : undefined,
    timeout: int(p.timeout),
    maxRetryCount: int(p.max_retry_count),
    sslVerify: typeof sslVerify === 'string' ? undefined : present(sslVerify) ? Boolean(sslVerify) : undefined,
    sslVerifyCaFile: typeof sslVerify === 'string' && sslVerify !== '' ? text('ssl_verify', sslVerify) : undefined,
    isCname: present(p.is_cname) ? Boolean(p.is_cname) : undefined,
    maxConnections: int(p.max_connections),
    userAgent: p.user_agent ? userAgent(p.user_agent) : undefined,
    proxy: p.proxy ? text('proxy', p.proxy) : undefined,
    // Read here, from this realm's environment, when the client is made:
    // part bodies through buffers instead of sendfile (for comparison and
    // diagnosis).
    sendfile: process.env.OBS_NATIVE_SENDFILE === '0' ? false : undefined,
  };
}

/** A header value of one line: a control character would end the header or the request. */
function userAgent(v) {
  const s = text('user_agent', v);
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u0008\u000a-\u001f\u007f]/.test(s)) throw invalid('user_agent must not hold control characters (line breaks included)');
  return s;
}

function nativeError(e) {
  try {
    return new ObsError(JSON.parse(e.message));
  } catch (_) {
    return e;
  }
}

const MAX_TASK_NUM = 10000;

/** Validates and coerces uploadFile's parameters as the reference does. */
function toNativeParams(param) {
  const p = param !== null && typeof param === 'object' ? param : {};
  if (!p.Bucket) throw invalid('Bucket is a required element!');
  if (!p.Key) throw invalid('Key is a required element!');
  if (!p.UploadFile) throw invalid('UploadFile is a required element!');
  const uploadFile = text('UploadFile', p.UploadFile);
  let taskNum = int(p.TaskNum) || 20;
  if (taskNum < 0) throw invalid('TaskNum must be a positive number');
  taskNum = Math.min(taskNum, MAX_TASK_NUM);
  for (const name of ['ProgressCallback', 'ResumeCallback']) {
    if (present(p[name]) && !isFunction(p[name])) throw invalid(`${name} must be a function`);
  }
  if (present(p.AbortSignal) && !(p.AbortSignal instanceof AbortSignal)) {
    throw invalid('AbortSignal must be an AbortSignal');
  }
  // A value JavaScript takes as false means none, as the reference reads it.
  if (p.Metadata && (typeof p.Metadata !== 'object' || Array.isArray(p.Metadata))) {
    throw invalid('Metadata must be an object');
  }
  let checkpointFile;
  if (p.EnableCheckpoint) {
    checkpointFile = p.CheckpointFile ? text('CheckpointFile', p.CheckpointFile) : `${uploadFile}.upload_record`;
  }
  const expires = expiresDays(p.Expires);
  return {
    bucket: text('Bucket', p.Bucket),
    key: text('Key', p.Key),
    uploadFile,
    partSize: int(p.PartSize),
    taskNum,
    checkpointFile,
    enableCheckSum: Boolean(checkpointFile && p.EnableCheckSum),
    // Any value JavaScript takes as false means none: the type is then
    // guessed from the key or the file name, as the reference does.
    contentType: p.ContentType ? text('ContentType', p.ContentType) : undefined,
    acl: str('ACL', p.ACL),
    websiteRedirectLocation: str('WebsiteRedirectLocation', p.WebsiteRedirectLocation),
    sseKms: str('SseKms', p.SseKms),
    sseKmsKey: str('SseKmsKey', p.SseKmsKey),
    sseC: str('SseC', p.SseC),
    sseCKey: str('SseCKey', p.SseCKey),
    metadataJson: p.Metadata ? metadataJson(p.Metadata) : undefined,
    expiresJson: present(p.Expires) ? JSON.stringify(p.Expires) : undefined,
    expires,
    reportProgress: isFunction(p.ProgressCallback),
    reportStarted: isFunction(p.ResumeCallback),
  };
}

/**
 * Metadata as JSON, for the record and the headers. A key or a value that
 * cannot be sent (half of a surrogate pair, a BigInt, a cycle) is refused
 * here, before anything starts.
 */
function metadataJson(metadata) {
  try {
    for (const [k, v] of Object.entries(metadata)) {
      text(`Metadata key ${JSON.stringify(k)}`, k);
      if (typeof v === 'string') text(`Metadata[${JSON.stringify(k)}]`, v);
    }
    return JSON.stringify(metadata);
  } catch (e) {
    // A getter that throws, a BigInt, a cycle.
    throw e instanceof ObsError ? e : invalid(`Metadata cannot be read: ${e && e.message}`);
  }
}

// Header-borne fields of the CompleteMultipartUpload result, in the
// reference SDK's model order; each is set only when the header is present.
const HEADER_FIELDS = {
  obs: [
    ['VersionId', 'x-obs-version-id'],
    ['SseKms', 'x-obs-server-side-encryption'],
    ['SseKmsKey', 'x-obs-server-side-encryption-kms-key-id'],
    ['SseKmsProjectId', 'x-obs-sse-kms-key-project-id'],
    ['SseC', 'x-obs-server-side-encryption-customer-algorithm'],
    ['SseCKeyMd5', 'x-obs-server-side-encryption-customer-key-md5'],
  ],
  v2: [
    ['VersionId', 'x-amz-version-id'],
    ['SseKms', 'x-amz-server-side-encryption'],
    ['SseKmsKey', 'x-amz-server-side-encryption-aws-kms-key-id'],
    ['SseKmsProjectId', 'x-amz-sse-kms-key-project-id'],
    ['SseC', 'x-amz-server-side-encryption-customer-algorithm'],
    ['SseCKeyMd5', 'x-amz-server-side-encryption-customer-key-md5'],
  ],
};

/** `{CommonMsg, InterfaceResult}` with the reference SDK's keys, order and values. */
function toResult(r) {
  const dialect = r.signature === 'obs' ? 'obs' : 'v2';
  const p = dialect === 'obs' ? 'x-obs-' : 'x-amz-';
  const h = r.headers;
  const CommonMsg = {
    Status: r.status,
    Code: h[`${p}error-code`] || '',
    Message: h[`${p}error-message`] || '',
    HostId: '',
    RequestId: '',
    InterfaceResult: null,
    QosDelayTime: h[`${p}qos-delay-time`] || '',
  };
  const InterfaceResult = {
    ContentLength: h['content-length'],
    Date: h.date,
    Reserved: h['x-reserved'],
    RequestId: h[`${p}request-id`],
    Id2: h[`${p}id-2`],
  };
  CommonMsg.RequestId = InterfaceResult.RequestId;
  CommonMsg.Id2 = InterfaceResult.Id2;
  for (const [field, header] of HEADER_FIELDS[dialect]) {
    if (h[header] !== undefined) InterfaceResult[field] = h[header];
  }
  // An answer without a body has none of these (as with the reference SDK).
  for (const field of ['Location', 'Bucket', 'Key', 'ETag', 'EncodingType']) {
    if (!(field in r.body)) continue;
    const v = r.body[field];
    InterfaceResult[field] = v === null || v === undefined ? '' : v;
  }
  return { CommonMsg, InterfaceResult };
}

/** Calls a user callback without letting its exception escape into the runtime. */
function guarded(name, fn) {
  return (...args) => {
    try {
      fn(...args);
    } catch (e) {
      process.emitWarning(`obs-native: ${name} threw: ${e && e.stack ? e.stack : e}`);
    }
  };
}

// The constants the reference SDK offers as `obsClient.enums` that an
// upload uses: canned ACLs (for `ACL`) and part sizes.
const KB = 1024;
const MB = 1024 * KB;
const GB = 1024 * MB;
const ENUMS = Object.freeze({
  AclPrivate: 'private',
  AclPublicRead: 'public-read',
  AclPublicReadWrite: 'public-read-write',
  AclPublicReadDelivered: 'public-read-delivered',
  AclPublicReadWriteDelivered: 'public-read-write-delivered',
  AclAuthenticatedRead: 'authenticated-read',
  AclBucketOwnerRead: 'bucket-owner-read',
  AclBucketOwnerFullControl: 'bucket-owner-full-control',
  AclLogDeliveryWrite: 'log-delivery-write',
  KB,
  MB,
  GB,
  MAX_UPLOAD_PART_COUNT: 10000,
  MAX_UPLOAD_PART_SIZE: 5 * GB,
  DEFAULT_UPLOAD_PART_SIZE: 5 * MB,
  MIN_UPLOAD_PART_SIZE: 100 * KB,
});

class ObsClient {
  constructor(param) {
    try {
      this._native = new NativeClient(toNativeOptions(param));
    } catch (e) {
      throw e instanceof ObsError ? e : nativeError(e);
    }
  }

  /** Swaps the credentials of this client; uploads under way sign their next requests with them. */
  refresh(accessKeyId, secretAccessKey, securityToken) {
    this._native.refresh(
      trimmed('accessKeyId', accessKeyId),
      trimmed('secretAccessKey', secretAccessKey),
      trimmed('securityToken', securityToken),
    );
  }

  /** Kept for compatibility; connections are pooled for the whole process and closed once idle (after 20 to 40 s). */
  close() {}

  /**
   * Accepted for compatibility, so that code written for the reference SDK
   * runs unchanged: obs-native writes no SDK log (errors carry their
   * details; see README).
   */
  initLog() {}

  /**
   * Resumable upload of a local file. `callback(err, result)`, or a Promise
   * when no callback is given.
   */
  uploadFile(param, callback) {
    if (isFunction(param) && callback === undefined) {
      callback = param;
      param = null;
    }
    if (present(callback) && !isFunction(callback)) {
      const e = new TypeError('callback must be a function');
      e.code = 'InvalidArgument';
      throw e;
    }
    const promise = this._upload(param);
    if (!callback) return promise;
    // Called outside the promise chain, so that an exception thrown by the
    // callback surfaces as it would from any Node callback.
    promise.then(
      (result) => process.nextTick(callback, null, result),
      (err) => process.nextTick(callback, err, undefined),
    );
    return undefined;
  }

  _upload(param) {
    let params;
    try {
      params = toNativeParams(param);
    } catch (e) {
      return Promise.reject(e);
    }
    const signal = param.AbortSignal;
    if (signal && signal.aborted) {
      return Promise.reject(abortError(signal));
    }
    const control = new UploadControl();
    const onProgress = isFunction(param.ProgressCallback) ? guarded('ProgressCallback', param.ProgressCallback) : undefined;
    const onResume = isFunction(param.ResumeCallback) ? guarded('ResumeCallback', param.ResumeCallback) : undefined;
    const unwatch = signal ? watchSignal(signal, () => control.cancel()) : () => {};
    return new Promise((resolve, reject) => {
      const onEvent = (event) => {
        switch (event.type) {
          case 'progress':
            if (onProgress) onProgress(event.transferred, event.total, event.seconds);
            break;
          case 'started':
            if (onResume) onResume({ cancel: () => control.cancel(), abort: () => control.abort() });
            break;
          case 'end':
            unwatch();
            if (event.ok) resolve(toResult(event));
            else if (signal && signal.aborted && event.error.code === CANCELLED) reject(abortError(signal, event.error));
            else reject(new ObsError(event.error));
            break;
          default:
        }
      };
      try {
        this._native.uploadFile(params, control, onEvent);
      } catch (e) {
        // Parameters the addon cannot take (checked above as far as can
        // be): refused as any bad input is, and nothing was started.
        unwatch();
        const err = nativeError(e);
        reject(err instanceof ObsError ? err : invalid(`the parameters cannot be read: ${err.message}`));
      }
    });
  }
}

ObsClient.prototype.enums = ENUMS;

// Capitalised aliases, as the reference SDK defines for every method.
for (const name of ['uploadFile', 'refresh', 'close', 'initLog']) {
  ObsClient.prototype[name[0].toUpperCase() + name.slice(1)] = ObsClient.prototype[name];
}

module.exports = ObsClient;
module.exports.ObsClient = ObsClient;
module.exports.ObsError = ObsError;
module.exports.default = ObsClient;
