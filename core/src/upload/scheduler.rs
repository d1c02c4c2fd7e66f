//! Sends the parts that are missing: at most `task_num` in flight, a new
//! one starting as soon as any finishes (a sliding window, never waiting
//! for a batch). Each finished part is recorded; progress is reported per
//! finished part and a few times a second in between.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use futures_util::stream::FuturesUnordered;
use tokio::sync::watch;

use super::checkpoint::{Checkpoint, PartMeta};
use super::plan::Plan;
use super::record::RecordWriter;
use super::{Observer, StopRequest};
use crate::error::{Error, ErrorKind};
use crate::http::{Client, FileRange};
use crate::ops::{self, SseC, Target};
use crate::sign::Signature;

const PROGRESS_INTERVAL: Duration = Duration::from_millis(200);

/// Everything the part workers share.
pub struct Job {
    pub client: Arc<Client>,
    pub sig: Signature,
    pub bucket: String,
    pub key: String,
    pub upload_id: String,
    pub plan: Plan,
    pub file: Arc<std::fs::File>,
    pub sse_c: SseC,
    pub task_num: usize,
    /// Bytes sent: finished parts plus what parts in flight have sent.
    pub sent: Arc<AtomicU64>,
    pub started: Instant,
}

/// How sending the parts ended.
pub enum End {
    /// Every part is recorded as finished.
    AllSent,
    /// Some parts failed after their retries (the first failure is kept);
    /// the others were sent.
    PartsFailed(Error),
    /// A failure that sending more cannot fix (the server refused a part,
    /// the file could not be read, the record could not be written).
    Fatal(Error),
    /// The caller cancelled or aborted.
    Stopped(StopRequest),
}

fn is_fatal(e: &Error) -> bool {
    match e.kind {
        ErrorKind::Service => !e.retryable,
        ErrorKind::Network | ErrorKind::Incomplete => false,
        _ => true,
    }
}

pub async fn send_parts(
    job: &Job,
    record: &mut Checkpoint,
    mut writer: Option<&mut RecordWriter>,
    observer: &dyn Observer,
    mut stop: watch::Receiver<StopRequest>,
) -> End {
    let plan = job.plan;
    let done = |record: &Checkpoint, n: u32| record.parts_meta.get(&n).is_some_and(|p| p.is_completed && p.etag.is_some());
    let already: u64 = (1..=plan.part_count).filter(|n| done(record, *n)).map(|n| plan.part(n).1).sum();
    job.sent.store(already, Ordering::Relaxed);
    let mut todo = (1..=plan.part_count).filter(|n| !done(record, *n)).collect::<Vec<_>>().into_iter();
    let target = Target { bucket: &job.bucket, key: &job.key, upload_id: &job.upload_id };
    let send = |n: u32| {
        let (offset, len) = plan.part(n);
        let range = FileRange { file: job.file.clone(), offset, len, sent: Some(job.sent.clone()) };
        async move { (n, ops::upload_part(&job.client, job.sig, &target, n, range, &job.sse_c).await) }
    };
    let mut inflight = FuturesUnordered::new();
    for n in todo.by_ref().take(job.task_num) {
        inflight.push(send(n));
    }
    // Reports what was sent: on every finished part, and on ticks when it
    // changed since the last report.
    let report = |last: &mut u64, always: bool| {
        let now = job.sent.load(Ordering::Relaxed).min(plan.file_size);
        if always || now != *last {
            *last = now;
            observer.progress(now, plan.file_size, job.started.elapsed());
        }
    };
    let mut last_reported = already;
    let mut tick = tokio::time::interval(PROGRESS_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut failed: Option<Error> = None;

    loop {
        let requested = *stop.borrow();
        if requested != StopRequest::None {
            return End::Stopped(requested);
        }
        if inflight.is_empty() {
            break;
        }
        let writing = writer.as_ref().is_some_and(|w| w.is_writing());
        tokio::select! {
            biased;
            Ok(()) = stop.changed() => {}
            r = async { writer.as_mut().expect("writing implies a writer").write_finished(record).await }, if writing => {
                if let Err(e) = r {
                    return End::Fatal(e);
                }
            }
            Some((n, result)) = inflight.next() => {
                let (offset, len) = plan.part(n);
                match result {
                    Ok(etag) => {
                        record.parts_meta.insert(n, PartMeta { offset, part_size: len, etag: Some(etag), is_completed: true });
                        report(&mut last_reported, true);
                    }
                    Err(e) if is_fatal(&e) => return End::Fatal(e),
                    Err(e) => {
                        record.parts_meta.insert(n, PartMeta { offset, part_size: len, etag: None, is_completed: false });
                        failed.get_or_insert(e);
                    }
                }
                if let Some(w) = writer.as_mut() {
                    w.mark(record);
                }
                if let Some(next) = todo.next() {
                    inflight.push(send(next));
                }
            }
            _ = tick.tick() => report(&mut last_reported, false),
        }
    }
    match failed {
        Some(e) => End::PartsFailed(e),
        None => End::AllSent,
    }
}
