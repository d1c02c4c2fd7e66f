//! Sends the parts that are missing: at most `task_num` in flight, a new
//! one starting as soon as any finishes (a sliding window, never waiting
//! for a batch). Each finished part is recorded; progress is reported per
//! finished part and a few times a second in between.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
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
    /// Set when the parts in flight are to hand over no more of their
    /// bodies (see `Drain`).
    pub halt: Arc<AtomicBool>,
    pub started: Instant,
    /// The last part's record write may wait for the complete (see
    /// `send_parts`): not for encrypted uploads, whose part ETags are not
    /// the MD5 of their bytes, so that a part the record misses could not
    /// be told from the file (`Session::encrypted`).
    pub defer_last_write: bool,
}

/// How sending the parts ended.
pub enum End {
    /// Every part is recorded as finished.
    AllSent,
    /// Some parts failed after their retries (the first failure is kept);
    /// the others were sent.
    PartsFailed(Error),
    /// A failure that sending more cannot fix (the server refused a part,
    /// the file could not be read). A record that could not be written is
    /// not one: the parts go on, and the next change writes it again.
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
        let range = FileRange { file: job.file.clone(), offset, len, sent: Some(job.sent.clone()), halt: Some(job.halt.clone()) };
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

    let early = loop {
        let requested = *stop.borrow();
        if requested != StopRequest::None {
            break Some(End::Stopped(requested));
        }
        if inflight.is_empty() {
            break None;
        }
        let writing = writer.as_ref().is_some_and(|w| w.is_writing());
        tokio::select! {
            biased;
            Ok(()) = stop.changed() => {}
            // A record write that fails (a full disk, the folder removed)
            // does not stop the parts: the record on disk stays as it was,
            // still pointing to this upload, and a resume from it finds the
            // parts sent since in the server's list. The next change
            // writes it again.
            _ = async { writer.as_mut().expect("writing implies a writer").write_finished(record).await }, if writing => {}
            Some((n, result)) = inflight.next() => {
                // The last part: the complete follows at once, and the
                // record is removed when it succeeds, so writing the part
                // would cost a synced write for nothing. The record is
                // first brought up to date with every other part, so that a
                // kill during the complete leaves it missing this part
                // alone, which the next call finds in the server's part
                // list, or in the object if the complete went through.
                // Whatever else ends the upload writes the part first.
                let last = job.defer_last_write && result.is_ok() && inflight.is_empty() && todo.len() == 0 && failed.is_none();
                if last && let Some(w) = writer.as_mut() {
                    // A write that fails leaves the record on disk as it
                    // was (see above); the complete goes on.
                    let _ = w.flush(record).await;
                }
                match result {
                    Ok(etag) => {
                        record_part(record, plan, n, Some(etag));
                        report(&mut last_reported, true);
                    }
                    Err(e) if is_fatal(&e) => break Some(End::Fatal(e)),
                    Err(e) => {
                        record_part(record, plan, n, None);
                        failed.get_or_insert(e);
                    }
                }
                if let Some(next) = todo.next() {
                    inflight.push(send(next));
                }
                if let Some(w) = writer.as_mut() {
                    if last {
                        w.mark_later();
                    } else {
                        w.mark(record);
                    }
                }
            }
            _ = tick.tick() => report(&mut last_reported, false),
        }
    };
    if let Some(end) = early {
        // A cancel that keeps the record keeps the upload too: the parts
        // in flight are dropped, and the next call sends what is missing.
        let kept = matches!(end, End::Stopped(StopRequest::Cancel)) && writer.is_some();
        if !kept {
            let drain = Drain { halt: &job.halt, plan, limit: DRAIN_LIMIT };
            drain.run(inflight, record, writer).await;
        }
        return end;
    }
    match failed {
        Some(e) => End::PartsFailed(e),
        None => End::AllSent,
    }
}

/// How long parts whose body the server may have whole get to answer
/// before the upload is given up anyway.
const DRAIN_LIMIT: Duration = Duration::from_secs(10);

/// Before an upload is given up (aborted, or left on a fatal error): a
/// part whose whole body reached the server can still be stored by it
/// after anything the client does next, an abort included (S3 documents
/// that race, and leaves the part's storage behind). So no part in flight
/// hands over any more of its body (`halt`): one that has not handed all
/// of it fails and is never stored. The others are waited for, at most
/// `limit`, and recorded when stored, so that whatever follows comes after
/// them.
struct Drain<'a> {
    halt: &'a AtomicBool,
    plan: Plan,
    limit: Duration,
}

impl Drain<'_> {
    async fn run<F>(&self, mut inflight: FuturesUnordered<F>, record: &mut Checkpoint, mut writer: Option<&mut RecordWriter>)
    where
        F: std::future::Future<Output = (u32, Result<String, Error>)>,
    {
        self.halt.store(true, Ordering::Release);
        let limit = tokio::time::sleep(self.limit);
        tokio::pin!(limit);
        loop {
            tokio::select! {
                _ = &mut limit => return,
                next = inflight.next() => match next {
                    None => return,
                    Some((n, Ok(etag))) => {
                        record_part(record, self.plan, n, Some(etag));
                        if let Some(w) = writer.as_mut() {
                            w.mark(record);
                        }
                    }
                    Some(_) => {}
                },
            }
        }
    }
}

/// Records how part `n` ended: stored with `etag`, or failed (`None`).
fn record_part(record: &mut Checkpoint, plan: Plan, n: u32, etag: Option<String>) {
    let (offset, part_size) = plan.part(n);
    let is_completed = etag.is_some();
    record.parts_meta.insert(n, PartMeta { offset, part_size, etag, is_completed });
}

#[cfg(test)]
mod tests {
    use super::*;

    type Part = std::pin::Pin<Box<dyn std::future::Future<Output = (u32, Result<String, Error>)>>>;

    fn empty_record() -> Checkpoint {
        let json = r#"{"bucketName":"b","objectKey":"k","uploadFile":"f","partSize":10,"partCount":3,"uploadFileStat":{"fileSize":30,"lastModified":"x"}}"#;
        serde_json::from_str(json).unwrap()
    }

    #[tokio::test]
    async fn a_drain_halts_records_what_is_stored_and_gives_up_at_its_limit() {
        let plan = Plan { file_size: 30, part_size: 10, part_count: 3 };
        let halt = AtomicBool::new(false);
        let inflight: FuturesUnordered<Part> = FuturesUnordered::new();
        // Part 1 is stored a little later; part 2 fails; part 3 never answers.
        inflight.push(Box::pin(async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            (1, Ok("e1".to_string()))
        }));
        inflight.push(Box::pin(async { (2, Err(Error::network("cut"))) }));
        inflight.push(Box::pin(async { (3, std::future::pending::<Result<String, Error>>().await) }));
        let mut record = empty_record();
        let started = std::time::Instant::now();
        Drain { halt: &halt, plan, limit: Duration::from_millis(300) }.run(inflight, &mut record, None).await;
        assert!(halt.load(Ordering::Acquire), "the parts were told to stop");
        assert!(started.elapsed() >= Duration::from_millis(300), "part 3 was waited for up to the limit");
        assert_eq!(record.parts_meta.keys().copied().collect::<Vec<_>>(), [1], "only the stored part is recorded");
        let p1 = &record.parts_meta[&1];
        assert_eq!((p1.offset, p1.part_size, p1.etag.as_deref(), p1.is_completed), (0, 10, Some("e1"), true));
    }

    #[tokio::test]
    async fn a_drain_ends_when_the_last_part_answers() {
        let plan = Plan { file_size: 10, part_size: 10, part_count: 1 };
        let halt = AtomicBool::new(false);
        let inflight: FuturesUnordered<Part> = FuturesUnordered::new();
        inflight.push(Box::pin(async { (1, Ok("e".to_string())) }));
        let mut record = empty_record();
        let started = std::time::Instant::now();
        Drain { halt: &halt, plan, limit: Duration::from_secs(30) }.run(inflight, &mut record, None).await;
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(record.parts_meta[&1].is_completed);
    }
}
