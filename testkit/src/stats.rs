//! The request log behind `GET /stats`: one record per request the front saw, with
//! the status the client received and the request body bytes the server actually
//! read (counted as the body is consumed, so faulted and cut-off requests count too),
//! the Host it addressed, how it was signed (`auth`: obs, v2, v4 or none) and the
//! connection it came on (`connection`, numbered from 1 as the server accepted them;
//! `connections` is how many it has accepted).
//!
//! It sits on the path of every request, benchmarks included, so it stays cheap:
//! a record is pushed under a mutex once per request, and bytes are added with a
//! relaxed atomic per body frame.

use std::future::Future as _;
use std::pin::Pin;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use hyper::body::{Body, Bytes, Frame, Incoming, SizeHint};
use serde::Serialize;

/// One request as the front saw it. Status and byte count fill in while it runs.
#[derive(Debug)]
pub struct RequestRecord {
    method: String,
    path: String,
    query: String,
    host: String,
    auth: &'static str,
    connection: u64,
    fault: Option<u64>,
    /// Arrival time, milliseconds since the Unix epoch (benchmarks measure
    /// the time from a client's call to its first part with it).
    at_ms: u64,
    /// 0 until a response head is sent; stays 0 when none is (reset, hang, dropped response).
    status: AtomicU16,
    body_bytes: AtomicU64,
}

impl RequestRecord {
    pub fn set_status(&self, status: u16) {
        self.status.store(status, Ordering::Relaxed);
    }

    pub fn body_bytes(&self) -> u64 {
        self.body_bytes.load(Ordering::Relaxed)
    }
}

/// What the log records of a request as it arrives.
pub struct Target<'a> {
    pub method: &'a str,
    /// Percent-decoded path.
    pub path: &'a str,
    /// Raw query.
    pub query: &'a str,
    pub host: &'a str,
    /// obs, v2, v4 or none.
    pub auth: &'static str,
    /// The connection it came on (numbered from 1 as accepted).
    pub connection: u64,
}

#[derive(Default)]
pub struct RequestLog {
    records: Mutex<Vec<Arc<RequestRecord>>>,
}

#[derive(Serialize)]
struct RecordView<'a> {
    method: &'a str,
    path: &'a str,
    query: &'a str,
    host: &'a str,
    auth: &'a str,
    connection: u64,
    status: Option<u16>,
    body_bytes: u64,
    fault: Option<u64>,
    at_ms: u64,
}

#[derive(Serialize)]
struct StatsView<'a> {
    requests: Vec<RecordView<'a>>,
    body_bytes: u64,
    /// Connections the server has accepted, ever (not cleared by a reset).
    connections: u64,
}

impl RequestLog {
    pub fn begin(&self, target: &Target<'_>, fault: Option<u64>) -> Arc<RequestRecord> {
        let record = Arc::new(RequestRecord {
            method: target.method.to_owned(),
            path: target.path.to_owned(),
            query: target.query.to_owned(),
            host: target.host.to_owned(),
            auth: target.auth,
            connection: target.connection,
            fault,
            at_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            status: AtomicU16::new(0),
            body_bytes: AtomicU64::new(0),
        });
        self.lock().push(record.clone());
        record
    }

    pub fn reset(&self) {
        self.lock().clear();
    }

    /// `{"requests":[...],"body_bytes":total,"connections":accepted}`; the total is
    /// summed from the listed records so that it always agrees with them, even while
    /// requests are in flight.
    pub fn to_json(&self, accepted: u64) -> serde_json::Result<String> {
        let records = self.lock().clone();
        let requests: Vec<RecordView<'_>> = records
            .iter()
            .map(|r| {
                let status = r.status.load(Ordering::Relaxed);
                RecordView {
                    method: &r.method,
                    path: &r.path,
                    query: &r.query,
                    host: &r.host,
                    auth: r.auth,
                    connection: r.connection,
                    status: (status != 0).then_some(status),
                    body_bytes: r.body_bytes(),
                    fault: r.fault,
                    at_ms: r.at_ms,
                }
            })
            .collect();
        let body_bytes = requests.iter().map(|r| r.body_bytes).sum();
        serde_json::to_string(&StatsView {
            requests,
            body_bytes,
            connections: accepted,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Arc<RequestRecord>>> {
        // A panic elsewhere while holding the lock leaves a Vec that is still valid.
        self.records
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A request body that adds every data frame it yields to its request's record.
pub struct CountedBody {
    inner: Incoming,
    record: Arc<RequestRecord>,
    throttle: Option<Throttle>,
}

/// Reads the body no faster than `per_sec` bytes a second: the server's side
/// of a slow link. Unread bytes wait in the connection (the kernel's buffers,
/// then the client's), as they do behind a slow uplink.
struct Throttle {
    per_sec: u64,
    start: tokio::time::Instant,
    read: u64,
    wait: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl CountedBody {
    pub fn new(inner: Incoming, record: Arc<RequestRecord>) -> Self {
        Self { inner, record, throttle: None }
    }

    /// From now on, reads at most `per_sec` bytes a second (at least 1).
    pub fn throttle(&mut self, per_sec: u64) {
        let per_sec = per_sec.max(1);
        self.throttle = Some(Throttle { per_sec, start: tokio::time::Instant::now(), read: 0, wait: None });
    }
}

impl Body for CountedBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        if let Some(t) = self.throttle.as_mut() {
            // The moment the bytes read so far are due at the rate.
            let due = t.start + std::time::Duration::from_secs_f64(t.read as f64 / t.per_sec as f64);
            if due > tokio::time::Instant::now() {
                let wait = t.wait.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(due)));
                wait.as_mut().reset(due);
                if wait.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
            }
        }
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
        {
            let n = data.len() as u64;
            self.record.body_bytes.fetch_add(n, Ordering::Relaxed);
            if let Some(t) = self.throttle.as_mut() {
                t.read += n;
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
