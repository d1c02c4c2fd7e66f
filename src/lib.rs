//! The napi binding: converts JavaScript values to the core's types and the
//! core's results back. No logic of its own: `index.js` gives it
//! reference-compatible coercion, and `obs-core` does the work.
#![deny(clippy::all)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use napi::bindgen_prelude::*;
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode, UnknownReturnValue};
use napi_derive::napi;
use obs_core::config::{ClientConfig, ClientOptions, SslVerify};
use obs_core::http::{Client, Credentials};
use obs_core::ops::ObjectSettings;
use obs_core::upload::{self, CheckpointSettings, Control, Observer, UploadRequest};
use serde_json::{Map, Value, json};

/// Constructor options, coerced by index.js (`undefined` = absent).
#[napi(object)]
pub struct NativeClientOptions {
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    pub security_token: Option<String>,
    pub server: Option<String>,
    pub is_secure: Option<bool>,
    pub port: Option<u32>,
    pub path_style: Option<bool>,
    pub signature: Option<String>,
    pub is_signature_negotiation: Option<bool>,
    pub region: Option<String>,
    pub timeout: Option<f64>,
    pub max_retry_count: Option<f64>,
    pub ssl_verify: Option<bool>,
    pub ssl_verify_ca_file: Option<String>,
    pub is_cname: Option<bool>,
    pub max_connections: Option<f64>,
    pub user_agent: Option<String>,
    pub proxy: Option<String>,
    pub sendfile: Option<bool>,
}

/// uploadFile parameters, validated and coerced by index.js.
#[napi(object)]
pub struct NativeUploadParams {
    pub bucket: String,
    pub key: String,
    pub upload_file: String,
    pub part_size: Option<f64>,
    pub task_num: u32,
    pub checkpoint_file: Option<String>,
    pub enable_check_sum: bool,
    pub content_type: Option<String>,
    pub acl: Option<String>,
    pub website_redirect_location: Option<String>,
    pub sse_kms: Option<String>,
    pub sse_kms_key: Option<String>,
    pub sse_c: Option<String>,
    pub sse_c_key: Option<String>,
    /// Metadata as a JSON string (its key order matters to the record).
    pub metadata_json: Option<String>,
    pub expires_json: Option<String>,
    pub expires: Option<f64>,
    /// Whether JavaScript has a ProgressCallback; without one, progress is
    /// not sent to the JavaScript thread at all (no wakeups for nothing).
    pub report_progress: bool,
    /// Whether JavaScript has a ResumeCallback, the only taker of the
    /// `started` event; without one it is not sent.
    pub report_started: bool,
}

/// At load: pins this addon's image in memory (the runtime's threads
/// outlive any one JavaScript environment, such as a worker that loaded the
/// addon first and then ended, so Node must never unload the code they run),
/// and starts the runtime while the process surely has file descriptors and
/// threads to spare. Should that fail, the first upload tries again.
#[napi_derive::module_init]
fn init() {
    retain_current_module_for_unload_safety();
    let _ = runtime();
}

/// The runtime every upload runs on, made when the addon is loaded (or by
/// the first upload, if that failed) and kept for the life of the process, whichever environments (the main thread,
/// workers) come and go: an upload cancelled because its worker ended still
/// settles (aborts, or keeps its record) on it. Its threads run at a lower
/// scheduling priority than the JavaScript thread, so that on a busy machine
/// a woken event loop gets the CPU first: uploads yield, the application
/// stays responsive.
fn runtime() -> std::io::Result<&'static tokio::runtime::Runtime> {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    if let Some(rt) = RUNTIME.get() {
        return Ok(rt);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("obs-native")
        .on_thread_start(lower_thread_priority)
        .build()?;
    // Two first uploads at once on two threads: one runtime is kept, the
    // other is dropped here, before it ran anything.
    Ok(RUNTIME.get_or_init(|| rt))
}

/// The uploads started from one JavaScript environment (the main thread or
/// one worker) and not yet ended. When the environment is torn down (a
/// worker that ends or is terminated), they are cancelled as by
/// `handle.cancel()`: an upload with a record keeps it and its multipart
/// upload, one without aborts its multipart upload. Without this they would
/// go on to the end in the background, unseen, holding their records.
#[derive(Default)]
struct EnvUploads {
    next: u64,
    live: HashMap<u64, Arc<Control>>,
}

type SharedEnvUploads = Arc<Mutex<EnvUploads>>;

fn env_uploads(env: &Env) -> napi::Result<SharedEnvUploads> {
    if let Some(uploads) = env.get_instance_data::<SharedEnvUploads>()? {
        return Ok(uploads.clone());
    }
    let uploads = SharedEnvUploads::default();
    // The hook first: instance data without it would never get one.
    env.add_env_cleanup_hook(uploads.clone(), |uploads| {
        for control in lock(&uploads).live.values() {
            control.cancel();
        }
    })?;
    env.set_instance_data(uploads.clone(), (), |_| {})?;
    Ok(uploads)
}

fn lock(uploads: &SharedEnvUploads) -> std::sync::MutexGuard<'_, EnvUploads> {
    uploads.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(target_os = "linux")]
fn lower_thread_priority() {
    // On Linux, PRIO_PROCESS with a thread id sets that thread's nice value.
    // SAFETY: plain system calls on the calling thread.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, thread_nice());
    }
}

/// The nice value of the upload threads: `OBS_NATIVE_THREAD_NICE` (0..=19),
/// default 10 (about a tenth of the CPU of a busy normal-priority thread when
/// they compete; all of what is free otherwise).
#[cfg(target_os = "linux")]
fn thread_nice() -> libc::c_int {
    std::env::var("OBS_NATIVE_THREAD_NICE")
        .ok()
        .and_then(|v| v.trim().parse::<libc::c_int>().ok())
        .map_or(10, |n| n.clamp(0, 19))
}

#[cfg(not(target_os = "linux"))]
fn lower_thread_priority() {}

fn to_core_options(o: NativeClientOptions) -> ClientOptions {
    let count = |v: Option<f64>| v.filter(|n| n.is_finite() && *n >= 0.0).map(|n| n as u64);
    ClientOptions {
        access_key_id: o.access_key_id,
        secret_access_key: o.secret_access_key,
        security_token: o.security_token,
        server: o.server,
        is_secure: o.is_secure,
        port: o.port.and_then(|p| u16::try_from(p).ok()).filter(|p| *p > 0),
        path_style: o.path_style,
        signature: o.signature,
        is_signature_negotiation: o.is_signature_negotiation,
        region: o.region,
        timeout_secs: count(o.timeout),
        max_retry_count: count(o.max_retry_count).map(|n| n.min(100) as u32),
        ssl_verify: match (o.ssl_verify_ca_file, o.ssl_verify) {
            (Some(ca), _) => Some(SslVerify::CaFile(ca)),
            (None, Some(true)) => Some(SslVerify::SystemRoots),
            (None, Some(false)) => Some(SslVerify::Off),
            (None, None) => None,
        },
        is_cname: o.is_cname,
        max_connections: count(o.max_connections).map(|n| n as usize),
        user_agent: o.user_agent,
        proxy: o.proxy,
        sendfile: o.sendfile,
    }
}

/// The error of an upload whose task failed unexpectedly (a panic). The
/// record and the multipart upload are left as they were.
fn internal_error() -> obs_core::Error {
    obs_core::Error::new(
        obs_core::error::ErrorKind::Io,
        "InternalError",
        "obs-native failed unexpectedly during the upload; the checkpoint record and the upload were left as they were",
    )
}

/// The upload could not be started for want of what the process has (no
/// file descriptors or threads left for the runtime); the same call can
/// work later.
fn not_started(why: &str) -> obs_core::Error {
    obs_core::Error::new(
        obs_core::error::ErrorKind::Io,
        "InternalError",
        format!("obs-native could not start the upload ({why}); nothing was sent"),
    )
}

/// The one place where a core error becomes something JavaScript sees: a
/// plain description that index.js turns into an `Error` with `code`.
fn error_value(e: &obs_core::Error) -> Value {
    let mut v = json!({
        "code": e.code,
        "message": e.message,
        // Printed as the code alone while the message is empty (Display).
        "bareWhenEmpty": e.bare_when_empty,
        "kind": format!("{:?}", e.kind),
        "retryable": e.retryable,
    });
    if let Some(s) = &e.service {
        v["status"] = json!(s.status);
        v["serviceCode"] = json!(s.code);
        v["serviceMessage"] = json!(s.message);
        v["requestId"] = json!(s.request_id);
        v["hostId"] = json!(s.host_id);
        v["id2"] = json!(s.id2);
        v["indicator"] = json!(s.indicator);
    }
    if let Some(id) = &e.upload_id {
        v["uploadId"] = json!(id);
    }
    if let Some(n) = e.part_number {
        v["partNumber"] = json!(n);
    }
    v
}

fn throw(e: obs_core::Error) -> napi::Error {
    napi::Error::new(Status::InvalidArg, serde_json::to_string(&error_value(&e)).unwrap_or_default())
}

#[napi]
pub struct NativeClient {
    inner: Arc<Client>,
}

#[napi]
impl NativeClient {
    /// Throws (with a JSON description as message) when the options are
    /// unusable; index.js rethrows it as the reference SDK's error.
    #[napi(constructor)]
    pub fn new(options: NativeClientOptions) -> napi::Result<Self> {
        let credentials = Credentials {
            access_key: options.access_key_id.clone().map(|s| s.trim().to_string()).unwrap_or_default(),
            secret_key: options.secret_access_key.clone().map(|s| s.trim().to_string()).unwrap_or_default(),
            security_token: options.security_token.clone().map(|s| s.trim().to_string()).filter(|s| !s.is_empty()),
        };
        let config = ClientConfig::from_options(&to_core_options(options)).map_err(throw)?;
        let client = Client::new(config, credentials).map_err(throw)?;
        Ok(NativeClient { inner: Arc::new(client) })
    }

    #[napi]
    pub fn refresh(&self, access_key_id: Option<String>, secret_access_key: Option<String>, security_token: Option<String>) {
        self.inner.refresh(Credentials {
            access_key: access_key_id.map(|s| s.trim().to_string()).unwrap_or_default(),
            secret_key: secret_access_key.map(|s| s.trim().to_string()).unwrap_or_default(),
            security_token: security_token.map(|s| s.trim().to_string()).filter(|s| !s.is_empty()),
        });
    }

    /// Starts the upload on the tokio runtime and returns at once. Every
    /// report goes through `on_event`, in order: `{type: 'started',
    /// uploadId}`, `{type: 'progress', transferred, total, seconds}`..., and
    /// last `{type: 'end', ok: true, ...answer}` or `{type: 'end', ok: false,
    /// error}`. One queue keeps progress from arriving after the end.
    #[napi]
    pub fn upload_file(&self, env: &Env, params: NativeUploadParams, control: &UploadControl, on_event: EventFn) -> napi::Result<()> {
        let (report_progress, report_started) = (params.report_progress, params.report_started);
        let request = to_request(params)?;
        let runtime = runtime().map_err(|e| throw(not_started(&e.to_string())))?;
        let client = self.inner.clone();
        let control = control.inner.clone();
        let env_uploads = env_uploads(env).map_err(|e| throw(not_started(&e.reason)))?;
        let id = {
            let mut uploads = lock(&env_uploads);
            uploads.next += 1;
            let id = uploads.next;
            uploads.live.insert(id, control.clone());
            id
        };
        let events = Arc::new(on_event);
        let observer = Arc::new(JsObserver { events: events.clone(), report_progress, report_started });
        // The upload runs as a task of its own, so that a bug that panics
        // in it still ends the call with an error instead of never.
        runtime.spawn(async move {
            let mut end = match tokio::spawn(upload::run(request, client, observer, control)).await {
                Ok(Ok(outcome)) => outcome_value(&outcome),
                Ok(Err(e)) => json!({"ok": false, "error": error_value(&e)}),
                Err(_) => json!({"ok": false, "error": error_value(&internal_error())}),
            };
            lock(&env_uploads).live.remove(&id);
            end["type"] = json!("end");
            events.call(end, ThreadsafeFunctionCallMode::Blocking);
        });
        Ok(())
    }
}

/// Events of one upload, delivered in order on the JavaScript thread. Not
/// weak: it keeps Node alive until the upload has ended.
type EventFn = ThreadsafeFunction<Value, UnknownReturnValue, Value, Status, false>;

struct JsObserver {
    events: Arc<EventFn>,
    report_progress: bool,
    report_started: bool,
}

impl Observer for JsObserver {
    fn progress(&self, transferred: u64, total: u64, elapsed: Duration) {
        if !self.report_progress {
            return;
        }
        let event = json!({"type": "progress", "transferred": transferred, "total": total, "seconds": elapsed.as_secs_f64()});
        self.events.call(event, ThreadsafeFunctionCallMode::NonBlocking);
    }

    fn started(&self, upload_id: &str) {
        if !self.report_started {
            return;
        }
        self.events.call(json!({"type": "started", "uploadId": upload_id}), ThreadsafeFunctionCallMode::NonBlocking);
    }
}

fn to_request(p: NativeUploadParams) -> napi::Result<UploadRequest> {
    let parse_json = |s: Option<String>| -> napi::Result<Option<Value>> {
        s.map(|s| serde_json::from_str(&s).map_err(|e| napi::Error::new(Status::InvalidArg, e.to_string()))).transpose()
    };
    Ok(UploadRequest {
        bucket: p.bucket,
        key: p.key,
        upload_file: p.upload_file.clone(),
        part_size: p.part_size.filter(|n| n.is_finite()).map(|n| n.clamp(i64::MIN as f64, i64::MAX as f64) as i64),
        task_num: p.task_num as usize,
        checkpoint: p.checkpoint_file.map(|path| CheckpointSettings { path: path.into(), enable_checksum: p.enable_check_sum }),
        object: ObjectSettings {
            content_type: p.content_type,
            acl: p.acl,
            // Headers come from `metadata_json`, through the record.
            metadata: Vec::new(),
            website_redirect_location: p.website_redirect_location,
            sse_kms: p.sse_kms,
            sse_kms_key: p.sse_kms_key,
            sse_c: p.sse_c,
            sse_c_key: p.sse_c_key,
            expires: p.expires.filter(|n| n.is_finite()).map(|n| n as i64),
        },
        metadata_json: parse_json(p.metadata_json)?,
        expires_json: parse_json(p.expires_json)?,
    })
}

fn outcome_value(o: &upload::Outcome) -> Value {
    let c = &o.completed;
    let mut headers = Map::new();
    for (k, v) in &c.headers {
        headers.entry(k.clone()).or_insert_with(|| json!(v));
    }
    json!({
        "ok": true,
        "signature": format!("{:?}", o.signature).to_lowercase(),
        "status": c.status,
        "headers": headers,
        "body": if c.has_body {
            json!({
                "Location": c.location,
                "Bucket": c.bucket,
                "Key": c.key,
                "ETag": c.etag,
                "EncodingType": c.encoding_type,
            })
        } else {
            json!({})
        },
    })
}

/// Cancel and abort for one running upload (the ResumeCallback handle).
#[napi]
pub struct UploadControl {
    inner: Arc<Control>,
}

#[napi]
impl UploadControl {
    #[napi(constructor)]
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        UploadControl { inner: Arc::new(Control::default()) }
    }

    /// Stop; keep the record and the multipart upload for a later call.
    #[napi]
    pub fn cancel(&self) {
        self.inner.cancel();
    }

    /// Stop; abort the multipart upload and remove the record.
    #[napi]
    pub fn abort(&self) {
        self.inner.abort();
    }
}
