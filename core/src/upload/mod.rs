//! The resumable upload: plan the parts, load or start the checkpoint
//! record, initiate or reuse the multipart upload, send the missing parts
//! with at most `task_num` in flight, record each finished part, complete,
//! and clean up. Every way out leaves either a complete object, or a
//! multipart upload that the record points to, or nothing.

pub mod checkpoint;
mod lock;
pub mod plan;
mod reconcile;
mod record;
mod scheduler;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::descriptors::Patience;
use crate::error::{Error, ErrorKind, Result};
use crate::http::Client;
use crate::mime;
use crate::ops::{self, Completed, ObjectSettings, SseC, Target};
use crate::sign::{self, Signature};
use checkpoint::{Checkpoint, FileStat, Loaded};
use plan::Plan;
use record::RecordWriter;
use scheduler::End;

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
    /// `object.metadata` is not read: the headers are made from
    /// `metadata_json` (as the record keeps it), so that a resumed upload
    /// initiates with the metadata it was started with.
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

    /// What has been asked so far.
    fn requested(&self) -> StopRequest {
        *self.tx.borrow()
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
    client.check_bucket(&req.bucket)?;
    check_key(&req.key)?;
    check_metadata(req.metadata_json.as_ref())?;
    // Held to the end of the call: past a share of the process's file
    // descriptors, uploads wait here for their turn (see `descriptors`).
    let _admitted = match crate::descriptors::try_admit() {
        Some(admitted) => admitted,
        None => {
            let mut stop = control.subscribe();
            tokio::select! {
                biased;
                request = stop_requested(&mut stop) => return Err(stopped_error(request)),
                admitted = crate::descriptors::admit() => admitted,
            }
        }
    };
    // Waits for a descriptor end at the client's `timeout`, or when the
    // call is stopped.
    let patience = {
        let control = control.clone();
        Patience::new(client.timeout(), move || control.requested() != StopRequest::None)
    };
    let (file, file_size, last_modified) = open_source(&req.upload_file, &patience, &control).await?;
    // Held until this call is done with the record. Every way out of the
    // upload but a panic waits for the record write under way, so the lock
    // is free when the caller hears the outcome.
    let (file, lock) = match &req.checkpoint {
        Some(cp) => {
            let (path, patience) = (cp.path.clone(), patience.clone());
            // One trip to a blocking thread for the checks, the folder and the lock.
            tokio::task::spawn_blocking(move || {
                let lock = prepare_record(&path, &file, patience);
                (file, lock)
            })
            .await
            .map_err(|e| Error::io("WriteCheckpointFileError", "cannot lock the checkpoint file", &std::io::Error::other(e)))
            .and_then(|(file, lock)| Ok((file, lock?.map(Arc::new))))?
        }
        None => (file, None),
    };
    let outcome = async {
        let file = Arc::new(file);
        let (record, plan, resumed) = match &req.checkpoint {
            None => {
                let plan = plan::plan_parts(file_size, req.part_size);
                (new_record(&req, plan, file_size, &last_modified), plan, false)
            }
            Some(settings) => resume_or_start(&req, settings, &client, &file, file_size, &last_modified, &control, &patience).await?,
        };
        let writer = req.checkpoint.as_ref().map(|s| RecordWriter::new(s.path.clone(), lock.clone(), patience.clone()));
        let loaded = if resumed { part_etags(&record) } else { Default::default() };
        let session = Session { req: &req, client, observer, control, file, plan, record, writer, started: false, loaded };
        session.drive(resumed).await
    }
    .await;
    lock::release(lock).await;
    outcome
}

/// URLs drop `.` and `..` path segments (RFC 3986 5.2.4, also when
/// percent-encoded), so such a key would reach the server as another key.
/// Refused before anything is sent.
fn check_key(key: &str) -> Result<()> {
    if key.split('/').any(|segment| segment == "." || segment == "..") {
        return Err(Error::invalid_argument(format!(
            "Key '{key}' has a '.' or '..' path segment, which HTTP would turn into another key"
        )));
    }
    Ok(())
}

/// Metadata keys become header names (`x-obs-meta-<key>`), which HTTP
/// allows only from a small set of characters; values are encoded, so any
/// value goes. Refused before anything is sent, instead of as a request
/// that cannot be built.
fn check_metadata(metadata: Option<&serde_json::Value>) -> Result<()> {
    let Some(serde_json::Value::Object(m)) = metadata else { return Ok(()) };
    let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    match m.keys().find(|k| !k.trim().chars().all(token)) {
        Some(k) => Err(Error::invalid_argument(format!("Metadata key {k:?} is not a valid HTTP header name"))),
        None => Ok(()),
    }
}

/// Opens the file to upload: its handle, size and mtime as the record keeps
/// it. When the process has no file descriptor left, it waits for one (other
/// uploads of this process free theirs as they end) as long as `patience`
/// allows; a call stopped meanwhile ends as stopped.
async fn open_source(upload_file: &str, patience: &Patience, control: &Control) -> Result<(std::fs::File, u64, String)> {
    let since = Instant::now();
    let mut times = 0;
    loop {
        match open_source_once(upload_file).await {
            Err(OpenFailure::OutOfDescriptors(_)) if control.requested() != StopRequest::None => {
                return Err(stopped_error(control.requested()));
            }
            Err(OpenFailure::OutOfDescriptors(_)) if patience.allows(since) => {
                crate::descriptors::release_kept_connections();
                tokio::time::sleep(crate::descriptors::wait(times)).await;
                times += 1;
            }
            Err(OpenFailure::OutOfDescriptors(e)) => return Err(cannot_open(e)),
            Err(OpenFailure::Other(e)) => return Err(e),
            Ok(opened) => return Ok(opened),
        }
    }
}

enum OpenFailure {
    OutOfDescriptors(std::io::Error),
    Other(Error),
}

async fn open_source_once(upload_file: &str) -> std::result::Result<(std::fs::File, u64, String), OpenFailure> {
    let path = PathBuf::from(upload_file);
    // One trip to a blocking thread for the look and the open.
    tokio::task::spawn_blocking(move || open_blocking(&path))
        .await
        .map_err(|e| OpenFailure::Other(Error::new(ErrorKind::Io, "FileReadError", e.to_string())))?
}

fn open_blocking(path: &std::path::Path) -> std::result::Result<(std::fs::File, u64, String), OpenFailure> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(OpenFailure::Other(Error::invalid_argument("UploadFile does not exist!"))),
        Err(e) => return Err(open_failure(e)),
    };
    if !meta.is_file() {
        return Err(OpenFailure::Other(Error::invalid_argument("UploadFile is not a file!")));
    }
    // Size and mtime from the opened file itself: the path may be replaced
    // (saved by a rename) between the look above and the open, and the
    // plan must describe the bytes the parts will read.
    let file = std::fs::File::open(path).map_err(open_failure)?;
    let meta = file.metadata().map_err(open_failure)?;
    if !meta.is_file() {
        return Err(OpenFailure::Other(Error::invalid_argument("UploadFile is not a file!")));
    }
    let last_modified = checkpoint::utc_string(meta.modified().unwrap_or(std::time::UNIX_EPOCH));
    Ok((file, meta.len(), last_modified))
}

fn open_failure(e: std::io::Error) -> OpenFailure {
    if crate::descriptors::exhausted(&e) { OpenFailure::OutOfDescriptors(e) } else { OpenFailure::Other(cannot_open(e)) }
}

/// Why the file to upload could not be opened. A path that names nothing
/// readable (no permission, a file in place of a folder, a name too long, a
/// loop of links) is the caller's input, `InvalidArgument`; the machine
/// running short (too many open files, no memory) or a failing disk is not,
/// and is `FileReadError`: the same call can succeed later.
fn cannot_open(e: std::io::Error) -> Error {
    // A name Rust refuses before asking the system (a NUL byte) has no code.
    let refused_name = e.kind() == std::io::ErrorKind::InvalidInput;
    #[cfg(unix)]
    let about_the_path = matches!(
        e.raw_os_error(),
        Some(libc::EACCES | libc::EPERM | libc::ENOENT | libc::ENOTDIR | libc::EISDIR | libc::ENAMETOOLONG | libc::ELOOP | libc::ENXIO | libc::EINVAL)
    );
    #[cfg(not(unix))]
    let about_the_path = matches!(e.kind(), std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::NotFound);
    if refused_name || about_the_path {
        Error::invalid_argument(format!("UploadFile cannot be read: {e}"))
    } else {
        Error::io("FileReadError", "cannot open the file to upload", &e)
    }
}

/// A record for a fresh upload of this request.
fn new_record(req: &UploadRequest, plan: Plan, file_size: u64, last_modified: &str) -> Checkpoint {
    Checkpoint {
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

/// More than a record of 10,000 parts with long metadata can hold.
const MAX_RECORD_BYTES: u64 = 64 << 20;

#[cfg(unix)]
fn same_file(a: &std::fs::Metadata, b: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    (a.dev(), a.ino()) == (b.dev(), b.ino())
}

#[cfg(not(unix))]
fn same_file(a: &std::fs::Metadata, b: &std::fs::Metadata) -> bool {
    // Without inode numbers: the same size and modification time is taken
    // as the same file (a false match only refuses the call).
    a.len() == b.len() && a.modified().ok() == b.modified().ok()
}

/// Before the record is read: its path checked, its folder made, and its
/// lock taken (see `lock::acquire_blocking`).
fn prepare_record(path: &std::path::Path, upload: &std::fs::File, patience: Patience) -> Result<Option<lock::RecordLock>> {
    check_record_path(path, upload)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| Error::io("WriteCheckpointFileError", "cannot create the checkpoint file's folder", &e))?;
    }
    lock::acquire_blocking(path.to_path_buf(), patience)
}

/// What is at the record's path and is plainly not a record is not ours to
/// remove (an unparsable record is), nor to lock: say so every time instead.
fn check_record_path(path: &std::path::Path, upload: &std::fs::File) -> Result<()> {
    if path.as_os_str().as_encoded_bytes().contains(&0) {
        return Err(Error::invalid_argument("CheckpointFile contains a NUL byte"));
    }
    let name = path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default();
    if name.ends_with(lock::LOCK_SUFFIX) || name.ends_with(checkpoint::LOCKED_TEMP_SUFFIX) {
        return Err(Error::invalid_argument("CheckpointFile is a name obs-native keeps for its own files"));
    }
    if let Ok(found) = std::fs::metadata(path) {
        if found.is_dir() {
            return Err(Error::invalid_argument("CheckpointFile is a directory!"));
        }
        // A device, a FIFO, a socket: reading could wait forever, and
        // removing it (as an unreadable record) could take /dev/null away.
        if !found.is_file() {
            return Err(Error::invalid_argument("CheckpointFile is not a regular file"));
        }
        if upload.metadata().is_ok_and(|upload| same_file(&found, &upload)) {
            return Err(Error::invalid_argument("CheckpointFile is the file to upload"));
        }
        if found.len() > MAX_RECORD_BYTES {
            return Err(Error::invalid_argument(format!(
                "CheckpointFile is not an upload record ({} bytes, more than any record holds)",
                found.len()
            )));
        }
    }
    // A record is written by renaming over its path, which would put the
    // record in the link's place, and an unparsable one is removed: a link
    // (say /dev/stdout, sent to a log file), even one to nothing, is neither
    // ours to replace nor to remove.
    if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) {
        return Err(Error::invalid_argument("CheckpointFile is a symbolic link; give the record's own path"));
    }
    Ok(())
}

/// Loads the record and checks it against this call and the file; a record
/// that does not fit is thrown away (its upload aborted) with an error, so
/// that the next call starts clean. Returns the record, its plan, and
/// whether it was resumed from disk.
#[allow(clippy::too_many_arguments)]
async fn resume_or_start(
    req: &UploadRequest,
    settings: &CheckpointSettings,
    client: &Client,
    file: &Arc<std::fs::File>,
    file_size: u64,
    last_modified: &str,
    control: &Control,
    patience: &Patience,
) -> Result<(Checkpoint, Plan, bool)> {
    match checkpoint::load(&settings.path, patience.clone()).await {
        // A record that cannot be parsed is garbage, removed so that the
        // next call starts clean; one that cannot be read (another user's,
        // say) is left alone.
        Err(e) => {
            if e.code == "ParseCheckpointFileError" {
                checkpoint::remove(&settings.path).await;
            }
            Err(e)
        }
        Ok(Loaded::Missing) => {
            let plan = plan::plan_parts(file_size, req.part_size);
            let mut record = new_record(req, plan, file_size, last_modified);
            if settings.enable_checksum {
                // Nothing exists yet that a stop would keep or remove.
                let sum = file_md5(file, file_size, control).await.map_err(stopped_error)??;
                record.upload_file_stat.check_sum = Some(sum);
            }
            Ok((record, plan, false))
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
                (Some(sum), true) if !sum.is_empty() => match file_md5(file, file_size, control).await {
                    Ok(Ok(local)) => &local == sum,
                    // A file that cannot be read says nothing about the
                    // upload: the record and the upload stay for a call
                    // that can read it.
                    Ok(Err(e)) => return Err(e),
                    // Cancel keeps the record and its upload, as it would
                    // once parts are going; abort removes both.
                    Err(StopRequest::Abort) => {
                        let mut e = aborted_error();
                        if let Some(failed) = discard_record(client, &record, &settings.path).await {
                            e = kept_because(e, &failed, &record);
                        }
                        return Err(e);
                    }
                    Err(_) => return Err(cancelled_error()),
                },
                _ => true,
            };
            match plan {
                Some(plan) if fits && checksum_ok => Ok((record, plan, true)),
                _ => {
                    let e = Error::new(ErrorKind::Checkpoint, "CheckpointFileInvalid", "CheckpointFile is invalid!");
                    match discard_record(client, &record, &settings.path).await {
                        Some(failed) => Err(kept_because(e, &failed, &record)),
                        None => Err(e),
                    }
                }
            }
        }
    }
}

/// Aborts the upload a stale record points to and removes the record. When
/// the upload may still be on the server (the abort failed, or could not be
/// sent), the record is kept, so that the upload is not lost track of: the
/// next call tries again, as with the reference SDK. The failure is
/// returned. A bucket that does not exist (404 at negotiation), or a name
/// that cannot be one, holds no upload: the record goes.
async fn discard_record(client: &Client, record: &Checkpoint, path: &std::path::Path) -> Option<Error> {
    if let Some(id) = &record.upload_id {
        let target = Target { bucket: &record.bucket_name, key: &record.object_key, upload_id: id };
        let failed = match client.signature_for(&record.bucket_name).await {
            Ok(sig) => ops::abort_multipart_upload(client, sig, &target).await.err(),
            Err(e) if e.status() == Some(404) || e.kind == ErrorKind::InvalidArgument => None,
            Err(e) => Some(e),
        };
        if failed.is_some() {
            return failed;
        }
    }
    checkpoint::remove(path).await;
    None
}

/// `e` for a call that kept a record because its upload could not be aborted.
fn kept_because(e: Error, failed: &Error, record: &Checkpoint) -> Error {
    let message = format!("{}; its upload could not be aborted ({}), the record is kept", e.message, failed.summary());
    let e = Error { message, service: failed.service.clone(), ..e };
    match &record.upload_id {
        Some(id) => e.with_upload_id(id),
        None => e,
    }
}

/// The object settings to initiate with: the record's (a resumed record
/// keeps the settings it was started with), the content type guessed from
/// the key's extension, then the file's, when none is given.
fn initiate_settings(req: &UploadRequest, record: &Checkpoint) -> ObjectSettings {
    let metadata = match &record.metadata {
        Some(serde_json::Value::Object(m)) => m.iter().map(|(k, v)| (k.clone(), checkpoint::js_string(v))).collect(),
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


/// Initiation failures that carry no server answer get the reference SDK's
/// code; server answers keep theirs.
fn initiate_error(e: Error) -> Error {
    if e.service.is_some() {
        e
    } else {
        Error { code: "InitiateMultipartUploadFailed".into(), message: format!("Error: {}", e.message), ..e }
    }
}

/// The whole file's MD5 (base64), as the record keeps it, computed off the
/// async threads. `Err(stop)` when the caller cancels or aborts meanwhile:
/// hashing a large file takes a while, and a stop should not wait for it.
async fn file_md5(file: &Arc<std::fs::File>, size: u64, control: &Control) -> std::result::Result<Result<String>, StopRequest> {
    use base64::Engine as _;
    let mut stop = control.subscribe();
    tokio::select! {
        digest = reconcile::range_md5(file.clone(), 0, size) => {
            Ok(digest.map(|d| base64::engine::general_purpose::STANDARD.encode(d)))
        }
        request = stop_requested(&mut stop) => Err(request),
    }
}

/// Waits for a cancel or an abort.
async fn stop_requested(stop: &mut watch::Receiver<StopRequest>) -> StopRequest {
    loop {
        let request = *stop.borrow_and_update();
        if request != StopRequest::None {
            return request;
        }
        if stop.changed().await.is_err() {
            return std::future::pending().await;
        }
    }
}

/// The error of a call stopped before its multipart upload existed.
fn stopped_error(request: StopRequest) -> Error {
    if request == StopRequest::Abort { aborted_error() } else { cancelled_error() }
}

/// What to do after a round of sending parts.
enum Next {
    Done(Outcome),
    /// The multipart upload is gone and the object is not this upload:
    /// start a new multipart upload. With the refusal that said so.
    Restart(Error),
    Fail(Error),
}

/// One call's state: the record (in memory and on disk) and the plan.
struct Session<'a> {
    req: &'a UploadRequest,
    client: Arc<Client>,
    observer: Arc<dyn Observer>,
    control: Arc<Control>,
    file: Arc<std::fs::File>,
    plan: Plan,
    record: Checkpoint,
    writer: Option<RecordWriter>,
    started: bool,
    /// The ETags of the parts the record, as loaded, had finished: what a
    /// completed upload of it is made of, even after reconciling.
    loaded: BTreeMap<u32, String>,
}

impl Session<'_> {
    async fn drive(mut self, mut resumed: bool) -> Result<Outcome> {
        // A new record is first written once its upload exists
        // (`initiate`). The reference SDK writes one before the initiate as
        // well; that one points to no upload and cost a synced write and a
        // new file per call. A record that cannot be written after the
        // initiate (a full disk, a folder that cannot be written) aborts
        // the upload and fails the call with `WriteCheckpointFileError`,
        // the code the reference SDK's first write gives before any request.
        let mut restarts = 0;
        loop {
            let (sig, upload_id) = match self.record.upload_id.clone() {
                Some(id) => match self.client.signature_for(&self.req.bucket).await {
                    Ok(sig) => (sig, id),
                    // A resume that negotiates first (a new client or
                    // process): a refusal is the server's answer; no answer
                    // or a 5xx leaves the upload resumable, as a part that
                    // failed would, with its record.
                    Err(e) if e.kind == ErrorKind::Service && !e.retryable => return Err(e.with_upload_id(&id)),
                    Err(e) => return Err(incomplete(e, self.writer.is_some()).with_upload_id(&id)),
                },
                None => {
                    // Stopped before the upload exists: none is made. A
                    // cancel keeps whatever record is on disk (none for a
                    // new call; the next call starts from it); an abort
                    // removes it.
                    let request = self.control.requested();
                    if request != StopRequest::None {
                        if request == StopRequest::Abort {
                            self.forget().await;
                        }
                        return Err(stopped_error(request));
                    }
                    self.initiate().await?
                }
            };
            // How the round ends before any part is sent, if it does.
            let mut ended = None;
            if resumed {
                let target = Target { bucket: &self.req.bucket, key: &self.req.key, upload_id: &upload_id };
                // Listing and checking parts the record missed (hashing up
                // to a whole part each) gives way to a cancel or an abort.
                let reconciled = {
                    let mut stop = self.control.subscribe();
                    tokio::select! {
                        r = reconcile::reconcile(&self.client, sig, &target, self.plan, &mut self.record, &self.file) => Ok(r),
                        request = stop_requested(&mut stop) => Err(request),
                    }
                };
                match reconciled {
                    Err(request) => ended = Some(End::Stopped(request)),
                    Ok(Ok(reconcile::Reconciled::Live { changed: true })) => {
                        // Parts the record had, which the server no longer
                        // lists: killed after completing, before removing
                        // the record? (Some stores list a completed
                        // upload's parts as none rather than refusing.)
                        let now = part_etags(&self.record);
                        let lost = self.loaded.keys().any(|n| !now.contains_key(n));
                        match if lost { self.already_complete(sig).await } else { Ok(None) } {
                            Ok(Some(outcome)) => {
                                // The server still answers for the upload, so
                                // it is removed too (an upload completed
                                // already is unknown to the abort, which is
                                // fine); only the object is kept.
                                let _ = ops::abort_multipart_upload(&self.client, sig, &target).await;
                                self.forget().await;
                                return Ok(outcome);
                            }
                            // The record on disk stays as loaded.
                            Err(request) => ended = Some(End::Stopped(request)),
                            Ok(None) => {
                                if let Some(w) = self.writer.as_mut() {
                                    w.write_now(&mut self.record).await?;
                                }
                            }
                        }
                    }
                    Ok(Ok(reconcile::Reconciled::Live { changed: false })) => {}
                    Ok(Ok(reconcile::Reconciled::Refused(e))) if e.code == "NoSuchUpload" => ended = Some(End::Fatal(e)),
                    // Refused otherwise: a policy that allows uploading
                    // parts but not listing them (a PutObject-only policy
                    // does). Go on from the record, as the reference SDK
                    // always does; a part or the complete then finds out
                    // whether the upload still lives.
                    Ok(Ok(reconcile::Reconciled::Refused(_))) => {}
                    Ok(Err(e)) => return Err(self.keep_or_abort(sig, &upload_id, incomplete(e, self.writer.is_some())).await),
                }
            }
            let end = match ended {
                Some(end) => end,
                None => self.send(sig, &upload_id).await,
            };
            resumed = false;
            let next = match end {
                End::AllSent => self.complete(sig, &upload_id).await,
                other => self.settle(sig, &upload_id, other).await,
            };
            match next {
                Next::Done(outcome) => return Ok(outcome),
                Next::Fail(e) => return Err(e),
                Next::Restart(_) if restarts == 0 => {
                    restarts += 1;
                    self.record.upload_id = None;
                    self.record.parts_meta.clear();
                    if let Some(w) = self.writer.as_mut() {
                        w.write_now(&mut self.record).await?;
                    }
                }
                Next::Restart(refusal) => {
                    // Refused the same way on a new upload too: the refusal
                    // is the answer (the server's code and status, as the
                    // reference SDK reports it), not a vanished upload.
                    self.forget().await;
                    return Err(refusal.with_upload_id(&upload_id));
                }
            }
        }
    }

    /// Encrypted with SSE-KMS or SSE-C: part ETags are then not the MD5 of
    /// the parts' bytes.
    fn encrypted(&self) -> bool {
        self.record.sse_kms.is_some() || self.req.object.sse_c.is_some() || self.req.object.sse_c_key.is_some()
    }

    /// Negotiates the dialect, initiates the multipart upload and records it.
    async fn initiate(&mut self) -> Result<(Signature, String)> {
        let started = async {
            let sig = self.client.signature_for(&self.req.bucket).await?;
            let settings = initiate_settings(self.req, &self.record);
            let id = ops::initiate_multipart_upload(&self.client, sig, &self.req.bucket, &self.req.key, &settings).await?;
            Ok::<_, Error>((sig, id))
        };
        let (sig, id) = match started.await {
            Ok(s) => s,
            Err(e) => {
                // No upload exists that the record could point to.
                self.forget().await;
                return Err(initiate_error(e));
            }
        };
        self.record.upload_id = Some(id.clone());
        if let Some(w) = self.writer.as_mut()
            && let Err(e) = w.write_now(&mut self.record).await
        {
            // Nothing points to the upload: aborted. One that cannot be
            // aborted either is named in the error, so that it is not lost
            // track of.
            return Err(match self.abort_and_forget(sig, &id).await {
                None => e,
                Some(failed) => Error {
                    message: format!("{}; its upload could not be aborted ({})", e.message, failed.summary()),
                    ..e
                }
                .with_upload_id(&id),
            });
        }
        Ok((sig, id))
    }

    async fn send(&mut self, sig: Signature, upload_id: &str) -> End {
        if !self.started {
            self.started = true;
            self.observer.started(upload_id);
        }
        let job = scheduler::Job {
            client: self.client.clone(),
            sig,
            bucket: self.req.bucket.clone(),
            key: self.req.key.clone(),
            upload_id: upload_id.to_string(),
            plan: self.plan,
            file: self.file.clone(),
            sse_c: SseC { algorithm: self.req.object.sse_c.clone(), key: self.req.object.sse_c_key.clone() },
            task_num: self.req.task_num.max(1),
            sent: Arc::new(AtomicU64::new(0)),
            halt: Default::default(),
            started: Instant::now(),
            defer_last_write: !self.encrypted(),
        };
        scheduler::send_parts(&job, &mut self.record, self.writer.as_mut(), self.observer.as_ref(), self.control.subscribe()).await
    }

    async fn complete(&mut self, sig: Signature, upload_id: &str) -> Next {
        // The record is written before the complete but for the last part,
        // whose write waits (`send_parts`): a complete that succeeds
        // removes the record; one that fails has `settle` write it or abort
        // the upload. Encrypted uploads write that part too. A record that
        // cannot be written (a full disk) does not hold the complete up.
        if self.encrypted()
            && let Some(w) = self.writer.as_mut()
        {
            let _ = w.flush(&mut self.record).await;
        }
        let parts = match completed_parts(&self.record, self.plan.part_count) {
            Ok(p) => p,
            Err(e) => return Next::Fail(e),
        };
        let target = Target { bucket: &self.req.bucket, key: &self.req.key, upload_id };
        match ops::complete_multipart_upload(&self.client, sig, &target, &parts).await {
            Ok(completed) => {
                self.forget().await;
                Next::Done(Outcome { signature: sig, completed })
            }
            Err(e) => self.settle(sig, upload_id, End::Fatal(e)).await,
        }
    }

    /// Turns how a round ended into the call's result, leaving the server
    /// and the record consistent with it.
    async fn settle(&mut self, sig: Signature, upload_id: &str, end: End) -> Next {
        match end {
            End::AllSent => unreachable!("completed by the caller"),
            End::Stopped(request) => self.stopped(sig, upload_id, request).await,
            End::PartsFailed(first) => {
                let e = if self.writer.is_some() {
                    Error::new(ErrorKind::Incomplete, "IncompletedUpload", "UploadFile finished with error, you can retry with the same parameters")
                } else {
                    Error::new(ErrorKind::Incomplete, "UploadFileFailed", "UploadFile finished with error!")
                };
                let e = Error { retryable: true, part_number: first.part_number, service: first.service, ..e };
                Next::Fail(self.keep_or_abort(sig, upload_id, e).await)
            }
            End::Fatal(e) if e.kind == ErrorKind::Service && !e.retryable => self.refused(sig, upload_id, e).await,
            End::Fatal(e) => {
                let e = incomplete(e, self.writer.is_some());
                Next::Fail(self.keep_or_abort(sig, upload_id, e).await)
            }
        }
    }

    /// A cancel keeps the record and the upload; an abort aborts the
    /// upload and removes the record.
    async fn stopped(&mut self, sig: Signature, upload_id: &str, request: StopRequest) -> Next {
        if request != StopRequest::Abort {
            return Next::Fail(self.keep_or_abort(sig, upload_id, cancelled_error()).await);
        }
        let mut e = aborted_error().with_upload_id(upload_id);
        if let Some(failed) = self.abort_and_forget(sig, upload_id).await {
            e.message = format!("{}; the upload could not be aborted ({}), the record is kept", e.message, failed.summary());
            e.service = failed.service;
        }
        Next::Fail(e)
    }

    /// The server refused a request of this upload with a 4xx. The upload
    /// may be gone (completed by an earlier call, aborted, expired), the
    /// credentials may have expired, or the request may never pass.
    async fn refused(&mut self, sig: Signature, upload_id: &str, e: Error) -> Next {
        let e = Error { bare_when_empty: true, ..e };
        let status = e.status().unwrap_or(0);
        let gone = if e.code == "NoSuchUpload" {
            true
        } else if e.code == "RequestTimeTooSkewed" {
            // The clock, not the upload: it stays for a call that passes.
            return Next::Fail(self.keep_or_abort(sig, upload_id, e).await);
        } else if status == 401 || status == 403 {
            // Credentials that still open the bucket mean the refusal is
            // about the upload, not about who asks.
            match ops::head_bucket(&self.client, sig, &self.req.bucket).await {
                Ok(s) if (200..300).contains(&s) => true,
                _ => return Next::Fail(self.keep_or_abort(sig, upload_id, e).await),
            }
        } else {
            false
        };
        if !gone {
            let _ = self.abort_and_forget(sig, upload_id).await;
            return Next::Fail(e.with_upload_id(upload_id));
        }
        match self.already_complete(sig).await {
            Ok(Some(outcome)) => {
                self.forget().await;
                Next::Done(outcome)
            }
            // Not known either way. A cancel keeps the record for the next
            // call; an abort gives the upload up, which the server has
            // already let go of (its abort may well be refused).
            Err(StopRequest::Abort) => {
                let target = Target { bucket: &self.req.bucket, key: &self.req.key, upload_id };
                let _ = ops::abort_multipart_upload(&self.client, sig, &target).await;
                self.forget().await;
                Next::Fail(aborted_error().with_upload_id(upload_id))
            }
            Err(request) => self.stopped(sig, upload_id, request).await,
            Ok(None) => {
                // A 403 only suggests the upload is gone (s3s-fs answers so
                // for unknown ids); a policy that denies one request of an
                // upload looks the same. Abort it, so that the new upload
                // does not leave the old one behind.
                if e.code != "NoSuchUpload" {
                    let target = Target { bucket: &self.req.bucket, key: &self.req.key, upload_id };
                    let _ = ops::abort_multipart_upload(&self.client, sig, &target).await;
                }
                Next::Restart(e)
            }
        }
    }

    /// Whether the object at the key already is this upload: its size, and
    /// the multipart ETag its parts make. `Err` when the caller cancels or
    /// aborts while the file is hashed for it (see `expected_etag`).
    async fn already_complete(&self, sig: Signature) -> std::result::Result<Option<Outcome>, StopRequest> {
        let Ok(Some(head)) = ops::head_object_response(&self.client, sig, &self.req.bucket, &self.req.key).await else {
            return Ok(None);
        };
        let etag = head.header("etag").unwrap_or_default().trim_matches('"').to_string();
        let size = head.header("content-length").and_then(|l| l.parse::<u64>().ok());
        if size != Some(self.plan.file_size) || !etag.ends_with(&format!("-{}", self.plan.part_count)) {
            return Ok(None);
        }
        let Some(expected) = self.expected_etag().await? else {
            return Ok(None);
        };
        Ok(etag.eq_ignore_ascii_case(&expected).then(|| Outcome {
            signature: sig,
            completed: Completed {
                status: head.status,
                headers: head.headers.iter().filter(|(k, _)| k != "content-length").cloned().collect(),
                location: None,
                bucket: Some(self.req.bucket.clone()),
                key: Some(self.req.key.clone()),
                etag: head.header("etag").map(str::to_string),
                encoding_type: None,
                has_body: true,
            },
        }))
    }

    /// The multipart ETag of this upload: the ETags of the record (now or as
    /// loaded), and the MD5 of the file's bytes for the one part it may
    /// miss (the last part's write waits for the complete). A record that
    /// misses more is not this upload's whole: `None`, as when a read
    /// fails. `Err` when the caller cancels or aborts during the hashing.
    async fn expected_etag(&self) -> std::result::Result<Option<String>, StopRequest> {
        let now = part_etags(&self.record);
        let known = |n: u32| now.get(&n).or_else(|| self.loaded.get(&n)).cloned();
        let missing = (1..=self.plan.part_count).filter(|n| known(*n).is_none()).count();
        if missing > 1 {
            return Ok(None);
        }
        let hashed = async {
            let mut etags = Vec::with_capacity(self.plan.part_count as usize);
            for n in 1..=self.plan.part_count {
                match known(n) {
                    Some(e) => etags.push(e),
                    None => {
                        let (offset, len) = self.plan.part(n);
                        etags.push(sign::hex(&reconcile::range_md5(self.file.clone(), offset, len).await.ok()?));
                    }
                }
            }
            reconcile::multipart_etag(etags.iter().map(String::as_str))
        };
        let mut stop = self.control.subscribe();
        tokio::select! {
            // Nothing to hash: answered at once, whatever was asked meanwhile.
            biased;
            etag = hashed => Ok(etag),
            request = stop_requested(&mut stop) => Err(request),
        }
    }

    /// With a record: keep it (flushed) and the upload, for the next call.
    /// Without: abort the upload, since nothing could resume it. Returns
    /// `e`. A record that cannot be written now (a full disk, its folder
    /// removed) keeps the upload only while an older record of it is still
    /// on disk (a resume from it finds the parts sent since); with none
    /// there, the upload is aborted and the write error returned.
    async fn keep_or_abort(&mut self, sig: Signature, upload_id: &str, e: Error) -> Error {
        match self.writer.as_mut() {
            Some(w) => {
                if let Err(write) = w.flush(&mut self.record).await {
                    let kept = match &self.req.checkpoint {
                        Some(cp) => checkpoint::points_to(&cp.path, upload_id).await,
                        None => false,
                    };
                    if kept {
                        return e.with_upload_id(upload_id);
                    }
                    let _ = self.abort_and_forget(sig, upload_id).await;
                    return write.with_upload_id(upload_id);
                }
            }
            None => {
                let _ = self.abort_and_forget(sig, upload_id).await;
            }
        }
        e.with_upload_id(upload_id)
    }

    /// Aborts the upload and removes the record. When the abort fails (after
    /// its retries) the record is kept, so that the upload is not lost track
    /// of; the failure is returned.
    async fn abort_and_forget(&mut self, sig: Signature, upload_id: &str) -> Option<Error> {
        let target = Target { bucket: &self.req.bucket, key: &self.req.key, upload_id };
        match ops::abort_multipart_upload(&self.client, sig, &target).await {
            Ok(()) => {
                self.forget().await;
                None
            }
            Err(e) => {
                if let Some(w) = self.writer.as_mut() {
                    let _ = w.flush(&mut self.record).await;
                }
                Some(e)
            }
        }
    }

    /// Removes the record (after any write under way).
    async fn forget(&mut self) {
        if let Some(w) = self.writer.take() {
            w.remove().await;
        }
    }
}

/// A failure worth another call, worded as the reference SDK words it:
/// `IncompletedUpload` when the record is kept for that call (`kept`),
/// `UploadFileFailed` when there is none (the upload was aborted).
fn incomplete(e: Error, kept: bool) -> Error {
    let code = if kept { "IncompletedUpload" } else { "UploadFileFailed" };
    match e.kind {
        ErrorKind::Service | ErrorKind::Network => Error { kind: ErrorKind::Incomplete, code: code.into(), message: e.summary(), ..e },
        _ => e,
    }
}

/// The ETags of the parts the record has finished.
fn part_etags(record: &Checkpoint) -> BTreeMap<u32, String> {
    record.parts_meta.iter().filter(|(_, p)| p.is_completed).filter_map(|(n, p)| Some((*n, p.etag.clone()?))).collect()
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ClientConfig, ClientOptions};
    use crate::http::Credentials;

    /// A record whose whole-file MD5 cannot be checked because the file
    /// cannot be read (here: opened write-only, so every read fails) is
    /// kept, with its upload, and the call fails with FileReadError: a read
    /// error says nothing about whether the record still fits.
    #[tokio::test]
    async fn a_checksum_that_cannot_be_read_keeps_the_record() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data.bin");
        std::fs::write(&data, vec![7u8; 300 * 1024]).unwrap();
        let settings = CheckpointSettings { path: dir.path().join("data.bin.upload_record"), enable_checksum: true };
        let req = UploadRequest {
            bucket: "b".into(),
            key: "k".into(),
            upload_file: data.to_string_lossy().into_owned(),
            part_size: Some(100 * 1024),
            task_num: 1,
            checkpoint: Some(settings.clone()),
            object: Default::default(),
            metadata_json: None,
            expires_json: None,
        };
        let size = 300 * 1024;
        let last_modified = "1700000000000";
        let mut record = new_record(&req, plan::plan_parts(size, req.part_size), size, last_modified);
        record.upload_id = Some("upload-1".into());
        record.upload_file_stat.check_sum = Some("c29tZSBzdW0=".into());
        record.seal();
        checkpoint::save(&settings.path, &serde_json::to_vec(&record).unwrap(), false).unwrap();

        // Nothing listens there: a discard would have to fail to keep the record.
        let config = ClientConfig::from_options(&ClientOptions { server: Some("http://127.0.0.1:1".into()), ..Default::default() }).unwrap();
        let client = Client::new(config, Credentials { access_key: "a".into(), secret_key: "s".into(), security_token: None }).unwrap();
        let write_only = Arc::new(std::fs::OpenOptions::new().write(true).open(&data).unwrap());
        let patience = Patience::new(Duration::from_secs(5), || false);
        let e = resume_or_start(&req, &settings, &client, &write_only, size, last_modified, &Control::default(), &patience).await.unwrap_err();
        assert_eq!(e.code, "FileReadError", "{e:?}");
        let kept = std::fs::read(&settings.path).unwrap();
        assert_eq!(kept, serde_json::to_vec(&record).unwrap(), "the record is left as it was");
    }
}
