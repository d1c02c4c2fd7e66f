//! The resumable upload: plan the parts, load or start the checkpoint
//! record, initiate or reuse the multipart upload, send the missing parts
//! with at most `task_num` in flight, record each finished part, complete,
//! and clean up. Every way out leaves either a complete object, or a
//! multipart upload that the record points to, or nothing.

pub mod checkpoint;
pub mod plan;
mod record;
mod scheduler;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::error::{Error, ErrorKind, Result};
use crate::http::Client;
use crate::mime;
use crate::ops::{self, Completed, ObjectSettings, SseC, Target};
use crate::sign::Signature;
use checkpoint::{Checkpoint, FileStat, Loaded};
use plan::Plan;
use record::RecordWriter;

/// Where and how the record is kept.
#[derive(Debug, Clone)]
pub struct CheckpointSettings {
    pub path: PathBuf,
    /// Store the whole file's MD5 in the record and check it on resume.
    pub enable_checksum: bool,
}

/// One call of `uploadFile`, with its parameters already validated.
#[derive(Debug, Clone)]
pub struct UploadRequest {
    pub bucket: String,
    pub key: String,
    /// The path as the caller gave it; the record compares it as a string.
    pub upload_file: String,
    /// Requested part size (`parseInt` of the parameter), if any.
    pub part_size: Option<i64>,
    pub task_num: usize,
    pub checkpoint: Option<CheckpointSettings>,
    pub object: ObjectSettings,
    /// Metadata and Expires as given, kept verbatim in the record.
    pub metadata_json: Option<serde_json::Value>,
    pub expires_json: Option<serde_json::Value>,
}

/// Receives what the upload reports while it runs. Called from the
/// runtime's threads; implementations must not block.
pub trait Observer: Send + Sync {
    /// Bytes sent so far (finished parts, parts in flight, and parts a
    /// resumed record already holds), the file size, and time since start.
    fn progress(&self, transferred: u64, total: u64, elapsed: Duration);
    /// The multipart upload is known and parts are about to be sent: from
    /// now on cancel and abort have something to act on.
    fn started(&self, _upload_id: &str) {}
}

/// What the caller asked the running upload to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopRequest {
    None,
    /// Stop; keep the record and the multipart upload for a later resume.
    Cancel,
    /// Stop; abort the multipart upload and remove the record.
    Abort,
}

/// The handle behind the reference SDK's ResumeCallback.
pub struct Control {
    tx: watch::Sender<StopRequest>,
}

impl Default for Control {
    fn default() -> Self {
        Control { tx: watch::channel(StopRequest::None).0 }
    }
}

impl Control {
    pub fn cancel(&self) {
        self.request(StopRequest::Cancel);
    }

    pub fn abort(&self) {
        self.request(StopRequest::Abort);
    }

    fn request(&self, r: StopRequest) {
        // The first request wins: an abort after a cancel changes nothing.
        self.tx.send_if_modified(|cur| {
            if *cur == StopRequest::None {
                *cur = r;
                true
            } else {
                false
            }
        });
    }

    fn subscribe(&self) -> watch::Receiver<StopRequest> {
        self.tx.subscribe()
    }
}

/// A finished upload: the completion's answer and the dialect it came in.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub signature: Signature,
    pub completed: Completed,
}

pub fn cancelled_error() -> Error {
    Error::new(ErrorKind::Cancelled, "Upload suspened", "The process of uploadFile is suspened, you can try again")
}

pub fn aborted_error() -> Error {
    Error::new(ErrorKind::Aborted, "Upload isAbort", "The process of uploadFile is isAbort")
}

/// Runs one `uploadFile` call to its end.
pub async fn run(req: UploadRequest, client: Arc<Client>, observer: Arc<dyn Observer>, control: Arc<Control>) -> Result<Outcome> {
    let path = PathBuf::from(&req.upload_file);
    let meta = match tokio::fs::metadata(&path).await {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(Error::invalid_argument("UploadFile does not exist!")),
        Err(e) => return Err(Error::invalid_argument(format!("UploadFile cannot be read: {e}"))),
    };
    if !meta.is_file() {
        return Err(Error::invalid_argument("UploadFile is not a file!"));
    }
    let file = {
        let p = path.clone();
        tokio::task::spawn_blocking(move || std::fs::File::open(p))
            .await
            .map_err(|e| Error::new(ErrorKind::Io, "FileReadError", e.to_string()))?
            .map_err(|e| Error::invalid_argument(format!("UploadFile cannot be read: {e}")))?
    };
    let file_size = meta.len();
    let last_modified = checkpoint::utc_string(meta.modified().unwrap_or(std::time::UNIX_EPOCH));

    if let Some(cp) = &req.checkpoint
        && let Some(dir) = cp.path.parent().filter(|d| !d.as_os_str().is_empty())
    {
        tokio::fs::create_dir_all(dir)
            .await
            .map_err(|e| Error::io("WriteCheckpointFileError", "cannot create the checkpoint file's folder", &e))?;
    }

    let fresh = new_record(&req, file_size, &last_modified);
    let (mut record, plan) = match &req.checkpoint {
        None => {
            let plan = plan::plan_parts(file_size, req.part_size);
            (fresh(plan), plan)
        }
        Some(settings) => resume_or_start(&req, settings, &client, &path, file_size, &last_modified, &fresh).await?,
    };
    let mut writer = req.checkpoint.as_ref().map(|s| RecordWriter::new(s.path.clone()));
    if let Some(w) = writer.as_mut()
        && record.upload_id.is_none()
    {
        // The first write: the record exists before the upload does.
        w.write_now(&mut record).await?;
    }

    let (sig, upload_id) = match record.upload_id.clone() {
        Some(id) => (client.signature_for(&req.bucket).await?, id),
        None => match start_upload(&req, &client, &record).await {
            Ok(started) => started,
            Err(e) => {
                // No upload exists that the record could point to.
                if let Some(w) = writer {
                    w.remove().await;
                }
                return Err(e);
            }
        },
    };
    if record.upload_id.is_none() {
        record.upload_id = Some(upload_id.clone());
        if let Some(w) = writer.as_mut()
            && let Err(e) = w.write_now(&mut record).await
        {
            let target = Target { bucket: &req.bucket, key: &req.key, upload_id: &upload_id };
            let _ = ops::abort_multipart_upload(&client, sig, &target).await;
            if let Some(w) = writer {
                w.remove().await;
            }
            return Err(e);
        }
    }

    let job = scheduler::Job {
        client: client.clone(),
        sig,
        bucket: req.bucket.clone(),
        key: req.key.clone(),
        upload_id: upload_id.clone(),
        plan,
        file: Arc::new(file),
        sse_c: SseC { algorithm: req.object.sse_c.clone(), key: req.object.sse_c_key.clone() },
        task_num: req.task_num.max(1),
        sent: Arc::new(AtomicU64::new(0)),
        started: Instant::now(),
    };
    observer.started(&upload_id);
    let end = scheduler::send_parts(&job, &mut record, writer.as_mut(), observer.as_ref(), control.subscribe()).await;
    finish(job, record, writer, end, req.checkpoint.is_some()).await
}

/// A record for a fresh upload of this request.
fn new_record<'a>(req: &'a UploadRequest, file_size: u64, last_modified: &'a str) -> impl Fn(Plan) -> Checkpoint + 'a {
    move |plan: Plan| Checkpoint {
        bucket_name: req.bucket.clone(),
        object_key: req.key.clone(),
        upload_file: req.upload_file.clone(),
        part_size: plan.part_size,
        part_count: plan.part_count,
        content_type: req.object.content_type.clone(),
        acl: req.object.acl.clone(),
        website_redirect_location: req.object.website_redirect_location.clone(),
        sse_kms: req.object.sse_kms.clone(),
        sse_kms_key: req.object.sse_kms_key.clone(),
        sse_c: req.object.sse_c.clone(),
        sse_c_key: None,
        metadata: req.metadata_json.clone(),
        expires: req.expires_json.clone(),
        md5: String::new(),
        upload_file_stat: FileStat { file_size, last_modified: last_modified.to_string(), check_sum: None },
        parts_meta: Default::default(),
        upload_id: None,
    }
}

/// Negotiates the dialect and initiates the multipart upload.
async fn start_upload(req: &UploadRequest, client: &Client, record: &Checkpoint) -> Result<(Signature, String)> {
    let sig = client.signature_for(&req.bucket).await.map_err(initiate_error)?;
    let settings = initiate_settings(req, record);
    let id = ops::initiate_multipart_upload(client, sig, &req.bucket, &req.key, &settings).await.map_err(initiate_error)?;
    Ok((sig, id))
}

/// Loads the record and checks it against this call and the file; a record
/// that does not fit is thrown away (its upload aborted) with an error, so
/// that the next call starts clean.
async fn resume_or_start(
    req: &UploadRequest,
    settings: &CheckpointSettings,
    client: &Client,
    path: &std::path::Path,
    file_size: u64,
    last_modified: &str,
    fresh: &impl Fn(Plan) -> Checkpoint,
) -> Result<(Checkpoint, Plan)> {
    if tokio::fs::metadata(&settings.path).await.is_ok_and(|m| m.is_dir()) {
        // Not ours to remove: say so every time instead.
        return Err(Error::invalid_argument("CheckpointFile is a directory!"));
    }
    match checkpoint::load(&settings.path).await {
        Err(e) => {
            checkpoint::remove(&settings.path).await;
            Err(e)
        }
        Ok(Loaded::Missing) => {
            let plan = plan::plan_parts(file_size, req.part_size);
            let mut record = fresh(plan);
            if settings.enable_checksum {
                record.upload_file_stat.check_sum = Some(file_md5(path).await?);
            }
            Ok((record, plan))
        }
        Ok(Loaded::Found(record)) => {
            let record = *record;
            let fits = record.bucket_name == req.bucket
                && record.object_key == req.key
                && record.upload_file == req.upload_file
                && record.upload_file_stat.file_size == file_size
                && record.upload_file_stat.last_modified == last_modified
                && record.md5_is_valid();
            let plan = plan::plan_from_record(file_size, record.part_size, record.part_count);
            let checksum_ok = match (&record.upload_file_stat.check_sum, fits) {
                (Some(sum), true) if !sum.is_empty() => file_md5(path).await.map(|s| &s == sum).unwrap_or(false),
                _ => true,
            };
            match plan {
                Some(plan) if fits && checksum_ok => Ok((record, plan)),
                _ => {
                    discard_record(client, &record, &settings.path).await;
                    Err(Error::new(ErrorKind::Checkpoint, "CheckpointFileInvalid", "CheckpointFile is invalid!"))
                }
            }
        }
    }
}

/// Aborts the upload a stale record points to and removes the record.
async fn discard_record(client: &Client, record: &Checkpoint, path: &std::path::Path) {
    if let Some(id) = &record.upload_id
        && let Ok(sig) = client.signature_for(&record.bucket_name).await
    {
        let target = Target { bucket: &record.bucket_name, key: &record.object_key, upload_id: id };
        let _ = ops::abort_multipart_upload(client, sig, &target).await;
    }
    checkpoint::remove(path).await;
}

/// The object settings to initiate with: the record's (a resumed record
/// keeps the settings it was started with), the content type guessed from
/// the key's extension, then the file's, when none is given.
fn initiate_settings(req: &UploadRequest, record: &Checkpoint) -> ObjectSettings {
    let metadata = match &record.metadata {
        Some(serde_json::Value::Object(m)) => m.iter().map(|(k, v)| (k.clone(), js_string(v))).collect(),
        _ => Vec::new(),
    };
    let content_type = record
        .content_type
        .clone()
        .filter(|c| !c.is_empty())
        .or_else(|| mime::content_type_for(&req.key).map(str::to_string))
        .or_else(|| mime::content_type_for(&req.upload_file).map(str::to_string));
    ObjectSettings {
        content_type,
        acl: record.acl.clone(),
        metadata,
        website_redirect_location: record.website_redirect_location.clone(),
        sse_kms: record.sse_kms.clone(),
        sse_kms_key: record.sse_kms_key.clone(),
        sse_c: req.object.sse_c.clone(),
        sse_c_key: req.object.sse_c_key.clone(),
        expires: req.object.expires,
    }
}

/// JavaScript's `String(v)` for the JSON values metadata can hold.
fn js_string(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => "null".into(),
        serde_json::Value::Array(a) => a.iter().map(js_string).collect::<Vec<_>>().join(","),
        serde_json::Value::Object(_) => "[object Object]".into(),
        other => other.to_string(),
    }
}

/// Initiation failures that carry no server answer get the reference SDK's
/// code; server answers keep theirs.
fn initiate_error(e: Error) -> Error {
    if e.service.is_some() {
        e
    } else {
        Error { code: "InitiateMultipartUploadFailed".into(), message: format!("Error: {}", e.message), ..e }
    }
}

/// Base64 MD5 of the whole file, computed off the async threads.
pub async fn file_md5(path: &std::path::Path) -> Result<String> {
    let p = path.to_path_buf();
    tokio::task::spawn_blocking(move || -> std::io::Result<String> {
        use base64::Engine as _;
        use md5::Digest as _;
        use std::io::Read as _;
        let mut f = std::fs::File::open(&p)?;
        let mut h = md5::Md5::new();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = f.read(&mut buf)?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
        Ok(base64::engine::general_purpose::STANDARD.encode(h.finalize()))
    })
    .await
    .map_err(|e| Error::new(ErrorKind::Io, "FileReadError", e.to_string()))?
    .map_err(|e| Error::io("FileReadError", "cannot read the file to compute its MD5", &e))
}

/// Turns how the parts ended into the call's result, leaving the server
/// and the record consistent with it.
async fn finish(
    job: scheduler::Job,
    mut record: Checkpoint,
    mut writer: Option<RecordWriter>,
    end: scheduler::End,
    keep_record: bool,
) -> Result<Outcome> {
    let target = Target { bucket: &job.bucket, key: &job.key, upload_id: &job.upload_id };
    let client = &job.client;
    let abort_and_forget = |writer: Option<RecordWriter>| async {
        let _ = ops::abort_multipart_upload(client, job.sig, &target).await;
        if let Some(w) = writer {
            w.remove().await;
        }
    };
    let with_ids = |e: Error| e.with_upload_id(&job.upload_id);
    match end {
        scheduler::End::Stopped(StopRequest::Abort) => {
            abort_and_forget(writer).await;
            Err(with_ids(aborted_error()))
        }
        scheduler::End::Stopped(_) => {
            match writer.as_mut() {
                Some(w) => w.flush(&mut record).await?,
                // Nothing could resume it: do not leave it on the server.
                None => abort_and_forget(None).await,
            }
            Err(with_ids(cancelled_error()))
        }
        scheduler::End::Fatal(e) => {
            let keep = keep_record && e.kind != ErrorKind::Service;
            if keep {
                if let Some(w) = writer.as_mut() {
                    w.flush(&mut record).await?;
                }
            } else {
                abort_and_forget(writer).await;
            }
            Err(with_ids(e))
        }
        scheduler::End::PartsFailed(first) => {
            if keep_record {
                if let Some(w) = writer.as_mut() {
                    w.flush(&mut record).await?;
                }
                let mut e = Error::new(
                    ErrorKind::Incomplete,
                    "IncompletedUpload",
                    "UploadFile finished with error, you can retry with the same parameters",
                );
                e.retryable = true;
                e.part_number = first.part_number;
                e.service = first.service;
                Err(with_ids(e))
            } else {
                abort_and_forget(writer).await;
                let mut e = Error::new(ErrorKind::Incomplete, "UploadFileFailed", "UploadFile finished with error!");
                e.part_number = first.part_number;
                e.service = first.service;
                Err(with_ids(e))
            }
        }
        scheduler::End::AllSent => {
            if let Some(w) = writer.as_mut() {
                w.flush(&mut record).await?;
            }
            let parts = completed_parts(&record, job.plan.part_count)?;
            match ops::complete_multipart_upload(client, job.sig, &target, &parts).await {
                Ok(completed) => {
                    if let Some(w) = writer {
                        w.remove().await;
                    }
                    Ok(Outcome { signature: job.sig, completed })
                }
                Err(e) if e.kind == ErrorKind::Service && !e.retryable => {
                    abort_and_forget(writer).await;
                    Err(with_ids(e))
                }
                Err(e) if keep_record => {
                    Err(with_ids(Error { kind: ErrorKind::Incomplete, code: "IncompletedUpload".into(), message: e.summary(), ..e }))
                }
                Err(e) => {
                    abort_and_forget(writer).await;
                    Err(with_ids(Error { kind: ErrorKind::Incomplete, code: "UploadFileFailed".into(), message: e.summary(), ..e }))
                }
            }
        }
    }
}

/// The part list for completion, checked for gaps: every part 1..=count
/// finished, with an ETag.
fn completed_parts(record: &Checkpoint, count: u32) -> Result<Vec<(u32, String)>> {
    (1..=count)
        .map(|n| match record.parts_meta.get(&n) {
            Some(p) if p.is_completed => p.etag.clone().map(|e| (n, e)),
            _ => None,
        }
        .ok_or_else(|| Error::new(ErrorKind::Incomplete, "IncompletedUpload", format!("part {n} has not been uploaded")).with_part(n)))
        .collect()
}
