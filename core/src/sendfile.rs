//! Part uploads over plain HTTP on Linux without copying the part through
//! user space: the request head is written to the socket, then the part's
//! bytes go from the page cache to the socket with sendfile(2), called on
//! the blocking pool (it reads the file synchronously). A profile of
//! the buffered path showed the two copies (file into a buffer, buffer into
//! the socket) and the thread hand-offs around them as most of the client's
//! CPU. HTTPS, proxies and other platforms keep the buffered path in
//! `http.rs`, and so does a file sendfile refuses (some filesystems).
//!
//! Connections are kept per host and port, HTTP/1.1 keep-alive, and checked
//! for a close by the server before they are used again. The caller (the
//! same retry loop and idle watchdog as every other request) decides what a
//! failure means.

use std::collections::HashMap;
use std::io;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::TcpStream;

use crate::http::{Activity, Attempt, FileRange, Response};

/// A kept connection older than this is closed rather than reused: servers
/// close idle connections, and a reused one that turns out closed costs a
/// retry.
const IDLE_KEEP: Duration = Duration::from_secs(20);
/// Idle connections kept per host and port (in the process's pool, over
/// all clients).
const MAX_IDLE: usize = 128;
/// Most bytes one sendfile call is asked for (the socket's free space is
/// what it really sends). Kernels built without preemption run the whole
/// call, loopback delivery included, before another thread gets the CPU;
/// 1 MiB bounds that stint and measured no dearer than 4 MiB.
const SENDFILE_MAX: usize = 1 << 20;
/// Most bytes one trip to the blocking pool sends (see `BodySender`). Over
/// loopback a sender that never pauses also does the receiver's share of
/// the kernel's work: at 4 MiB and more, one upload at TaskNum 1 held the
/// event loop's p99 above 2 ms (2.2-2.5 against 1.5-1.8 at 1 and 2 MiB).
const TRIP_MAX: usize = 2 << 20;
/// Interim (1xx) answers skipped before one is taken as a broken server.
const MAX_INTERIM: usize = 16;
/// A response head larger than this is refused.
const MAX_HEAD: usize = 64 * 1024;

/// How a sendfile upload failed.
#[derive(Debug)]
pub enum Failure {
    /// sendfile refuses this file before anything was sent: use the
    /// buffered path for it.
    Unsupported,
    /// Connecting failed.
    Connect(io::Error),
    /// The connection failed or the server broke HTTP.
    Network(io::Error),
    /// Reading the file failed, or it ended before the part did.
    File(io::Error),
    /// A kept connection failed before it took any of the body: the server
    /// had closed it. Worth one more go on a new connection.
    Stale(io::Error),
}

/// Connections waiting for their next request, with when they were put back.
type Idle = Vec<(TcpStream, Instant)>;

/// Idle keep-alive connections by host and port, and whether a sweeper is
/// running (it closes connections idle too long, so that a client that
/// stops uploading does not hold sockets the server has closed).
#[derive(Default)]
struct Kept {
    by_host: HashMap<(String, u16), Idle>,
    sweeping: bool,
}

impl Kept {
    /// Keeps only the connections to `host`:`port`.
    fn keep_only(&mut self, host: &str, port: u16) {
        self.by_host.retain(|(h, p), _| h == host && *p == port);
    }

    /// Drops connections idle too long or closed by the server, and hosts
    /// left with none.
    fn sweep(&mut self) {
        self.by_host.retain(|_, list| {
            list.retain(|(stream, since)| reusable(stream, *since));
            !list.is_empty()
        });
    }
}

/// Idle keep-alive connections by host and port.
#[derive(Clone)]
pub struct Pool {
    idle: Arc<Mutex<Kept>>,
}

/// Every pool's kept connections, so that a process out of file
/// descriptors can close them all (see `close_all_idle`): the process's
/// shared pool, and any other one (the unit tests make their own).
static POOLS: Mutex<Vec<std::sync::Weak<Mutex<Kept>>>> = Mutex::new(Vec::new());

impl Default for Pool {
    fn default() -> Self {
        let idle = Arc::new(Mutex::new(Kept::default()));
        let mut pools = POOLS.lock().unwrap_or_else(|p| p.into_inner());
        pools.retain(|p| p.strong_count() > 0);
        pools.push(Arc::downgrade(&idle));
        Pool { idle }
    }
}

/// Closes the kept connections of every pool: the process has no file
/// descriptor left, and something other than a part (a record write, a
/// file to open, a small request) needs one.
pub(crate) fn close_all_idle() {
    for idle in registered_pools() {
        idle.lock().unwrap_or_else(|p| p.into_inner()).by_host.clear();
    }
}

/// Closes the kept connections of every pool, but for those to `host`:`port`:
/// a part to that host is short of a descriptor, and can take one of those.
pub(crate) fn close_all_idle_except(host: &str, port: u16) {
    for idle in registered_pools() {
        idle.lock().unwrap_or_else(|p| p.into_inner()).keep_only(host, port);
    }
}

/// The kept connections of every pool still in use.
fn registered_pools() -> Vec<Arc<Mutex<Kept>>> {
    POOLS.lock().unwrap_or_else(|p| p.into_inner()).iter().filter_map(std::sync::Weak::upgrade).collect()
}

impl Pool {
    /// The process's pool, which every client uses: a client made for each
    /// upload still finds the connections the one before kept. A connection
    /// is a plain TCP stream to a host and port; no client's credentials or
    /// settings go with it. Connections outlive the client that kept them
    /// until the sweeper closes them (idle over `IDLE_KEEP`).
    pub fn shared() -> Self {
        static SHARED: std::sync::OnceLock<Pool> = std::sync::OnceLock::new();
        SHARED.get_or_init(Pool::default).clone()
    }

    fn checkout(&self, host: &str, port: u16) -> Option<TcpStream> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let list = idle.by_host.get_mut(&(host.to_string(), port))?;
        while let Some((stream, since)) = list.pop() {
            if reusable(&stream, since) {
                return Some(stream);
            }
        }
        None
    }

    fn checkin(&self, host: &str, port: u16, stream: TcpStream) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let list = idle.by_host.entry((host.to_string(), port)).or_default();
        list.retain(|(_, since)| since.elapsed() < IDLE_KEEP);
        if list.len() < MAX_IDLE {
            list.push((stream, Instant::now()));
        }
        if !idle.sweeping {
            idle.sweeping = true;
            tokio::spawn(sweep_until_empty(Arc::downgrade(&self.idle), IDLE_KEEP));
        }
    }


    /// Connections kept, over all hosts.
    #[cfg(test)]
    fn kept(&self) -> usize {
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).by_host.values().map(Vec::len).sum()
    }

    /// Sends `put.head` then the file range, and reads the answer.
    pub async fn put(&self, put: &Put<'_>) -> Result<Response, Failure> {
        if put.range.halted() {
            return Err(Failure::Network(crate::http::halted_error()));
        }
        // A kept connection the server closed meanwhile fails before any
        // answer; that gets one more go on a new connection, not a retry.
        if let Some(stream) = self.checkout(put.host, put.port) {
            match self.exchange(put, stream, true).await {
                Err(Failure::Stale(_)) => {}
                other => return other,
            }
        }
        let stream = connect(put.host, put.port).await.map_err(Failure::Connect)?;
        put.activity.touch();
        if put.range.halted() {
            return Err(Failure::Network(crate::http::halted_error()));
        }
        self.exchange(put, stream, false).await
    }

    async fn exchange(&self, put: &Put<'_>, stream: TcpStream, reused: bool) -> Result<Response, Failure> {
        let mut moved = 0u64;
        let shared = Arc::new(stream);
        // The body's calls count its bytes into `put.attempt` themselves.
        let written = send_request(&shared, put, |n| moved += n).await;
        // The body's calls are over (each is awaited), so the connection is
        // this request's alone again.
        let Ok(mut stream) = Arc::try_unwrap(shared) else {
            return Err(written.err().unwrap_or_else(|| Failure::Network(io::Error::other("the connection is still in use"))));
        };
        if let Err(failure) = written {
            // Stopped on purpose: no answer is awaited, no connection tried again.
            if put.range.halted() {
                return Err(Failure::Network(crate::http::halted_error()));
            }
            let failure = match failure {
                Failure::Network(e) if reused && moved == 0 => return Err(Failure::Stale(e)),
                other => other,
            };
            // A server that refuses a request may answer and close (or stop
            // reading) before taking it all; its answer says more than the
            // broken pipe. A success for a body that did not all go out is
            // not believed.
            if let Failure::Network(_) = failure
                && let Ok(Ok((resp, _))) =
                    tokio::time::timeout(Duration::from_secs(1), read_response(&mut stream, put.activity)).await
                && !resp.is_success()
            {
                return Ok(resp);
            }
            return Err(failure);
        }
        match read_response(&mut stream, put.activity).await {
            Ok((resp, reusable)) => {
                if reusable {
                    self.checkin(put.host, put.port, stream);
                }
                Ok(resp)
            }
            Err(e) if reused && moved == 0 => Err(Failure::Stale(e)),
            Err(e) => Err(Failure::Network(e)),
        }
    }
}

/// One PUT with a file body.
pub struct Put<'a> {
    pub host: &'a str,
    pub port: u16,
    /// Request line and headers, ending with the empty line.
    pub head: &'a [u8],
    pub range: &'a FileRange,
    pub activity: &'a Arc<Activity>,
    /// Counts the part's bytes as the kernel takes them; the caller takes
    /// them back if the attempt fails.
    pub attempt: &'a Arc<Attempt>,
}

/// How long an address that is not the host's last one gets to answer
/// before the next is tried: an address whose route drops packets (an
/// IPv6 route that goes nowhere, say) would otherwise hold every part until
/// the request's idle timeout, while the next address works.
const ADDRESS_TRY: std::time::Duration = std::time::Duration::from_secs(2);

/// Every `every`, closes what is idle too long, until nothing is kept (a
/// later checkin starts another) or the pool is gone.
fn sweep_until_empty(kept: std::sync::Weak<Mutex<Kept>>, every: Duration) -> impl Future<Output = ()> {
    // Dropped before its end, polled or not (the runtime it was spawned on
    // shut down), it says so, and the next checkin starts another.
    struct Unfinished(Option<std::sync::Weak<Mutex<Kept>>>);
    impl Drop for Unfinished {
        fn drop(&mut self) {
            if let Some(kept) = self.0.take().and_then(|k| k.upgrade()) {
                kept.lock().unwrap_or_else(|p| p.into_inner()).sweeping = false;
            }
        }
    }
    let unfinished = Unfinished(Some(kept.clone()));
    async move {
        let mut unfinished = unfinished;
        loop {
            tokio::time::sleep(every).await;
            let Some(kept) = kept.upgrade() else { return };
            let mut kept = kept.lock().unwrap_or_else(|p| p.into_inner());
            kept.sweep();
            if kept.by_host.is_empty() {
                kept.sweeping = false;
                unfinished.0 = None;
                return;
            }
        }
    }
}

async fn connect(host: &str, port: u16) -> io::Result<TcpStream> {
    // An IPv6 literal comes in brackets, as in the Host header.
    let name = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    let addrs: Vec<std::net::SocketAddr> = tokio::net::lookup_host((name, port)).await?.collect();
    if addrs.is_empty() {
        return Err(io::Error::new(io::ErrorKind::NotFound, format!("getaddrinfo ENOTFOUND {host}")));
    }
    connect_any(&addrs, ADDRESS_TRY).await
}

/// Connects to the first of `addrs` that answers, each but the last given
/// `each` (the last has the caller's whole timeout).
async fn connect_any(addrs: &[std::net::SocketAddr], each: std::time::Duration) -> io::Result<TcpStream> {
    let mut last = None;
    for (i, addr) in addrs.iter().enumerate() {
        let attempt = TcpStream::connect(addr);
        let outcome = if i + 1 < addrs.len() {
            tokio::time::timeout(each, attempt)
                .await
                .unwrap_or_else(|_| Err(io::Error::new(io::ErrorKind::TimedOut, format!("connect {addr} timed out"))))
        } else {
            attempt.await
        };
        match outcome {
            Ok(s) => {
                s.set_nodelay(true)?;
                return Ok(s);
            }
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no address to connect to")))
}

/// Whether a kept connection may carry another request: not idle too long,
/// and still open.
fn reusable(stream: &TcpStream, since: Instant) -> bool {
    since.elapsed() < IDLE_KEEP && still_open(stream)
}

/// False when the server closed the connection or sent something unasked.
fn still_open(stream: &TcpStream) -> bool {
    let mut byte = 0u8;
    // SAFETY: a one-byte peek into a local, on a socket we own.
    let n = unsafe {
        libc::recv(stream.as_raw_fd(), (&mut byte as *mut u8).cast(), 1, libc::MSG_PEEK | libc::MSG_DONTWAIT)
    };
    n < 0 && io::Error::last_os_error().kind() == io::ErrorKind::WouldBlock
}

/// Runs a non-blocking write `op` once the socket can take bytes, until it
/// moves some: waits out a full socket and tries again after a signal.
async fn write_some(stream: &TcpStream, mut op: impl FnMut() -> io::Result<usize>) -> io::Result<usize> {
    loop {
        stream.writable().await?;
        match stream.try_io(tokio::io::Interest::WRITABLE, &mut op) {
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted) => {}
            other => return other,
        }
    }
}

/// The result of a system call that returns a count or -1.
fn count(n: isize) -> io::Result<usize> {
    if n < 0 { Err(io::Error::last_os_error()) } else { Ok(n as usize) }
}

/// Writes the head (held back with MSG_MORE so that it leaves with the
/// first body bytes), then the file range with sendfile.
async fn send_request(stream: &Arc<TcpStream>, put: &Put<'_>, mut progress: impl FnMut(u64)) -> Result<(), Failure> {
    let fd = stream.as_raw_fd();
    let range = put.range;
    let more = if range.len > 0 { libc::MSG_MORE } else { 0 };
    let mut rest = put.head;
    while !rest.is_empty() {
        // SAFETY: `rest` is a live slice; the flags ask for no signal.
        let sent = write_some(stream, || count(unsafe {
            libc::send(fd, rest.as_ptr().cast(), rest.len(), more | libc::MSG_NOSIGNAL)
        }))
        .await
        .map_err(Failure::Network)?;
        rest = &rest[sent..];
        put.activity.touch();
    }

    let end = range.offset + range.len;
    let mut offset = range.offset;
    let mut first = true;
    let body = BodySender {
        socket: stream.clone(),
        file: range.file.clone(),
        cancelled: Arc::new(AtomicBool::new(false)),
        halt: range.halt.clone(),
        activity: put.activity.clone(),
        attempt: put.attempt.clone(),
    };
    while offset < end {
        if range.halted() {
            return Err(Failure::Network(crate::http::halted_error()));
        }
        let want = usize::try_from(end - offset).unwrap_or(usize::MAX);
        let sent = body.send(offset, want).await.map_err(|e| classify_sendfile_error(e, first))?;
        if sent == 0 {
            return Err(Failure::File(crate::http::file_got_shorter()));
        }
        offset += sent as u64;
        first = false;
        progress(sent as u64);
    }
    Ok(())
}

/// The body's sendfile calls, made on the blocking pool. sendfile reads the
/// file synchronously: from a slow disk or a hung network mount that can
/// take as long as the disk does, and a runtime worker waiting in it would
/// hold up every task queued on that worker, the idle watchdog's timer
/// included. Here the worker only awaits the call, so the watchdog can
/// always give up on it. One trip to the pool sends up to `TRIP_MAX` bytes
/// while the socket takes them (each trip costs two thread switches); it
/// waits only for its first bytes, so that a trip holds its thread only
/// while bytes move, and parts beyond the pool's threads take turns. The
/// calls count what they send, and show the watchdog that bytes move, as
/// they go.
struct BodySender {
    /// The connection, shared with the calls: one still running after the
    /// request was given up keeps it open, so it never writes to a
    /// descriptor number that has been closed and reused. (Shared rather
    /// than duplicated: a duplicate would take a second descriptor per part
    /// in flight.)
    socket: Arc<TcpStream>,
    file: Arc<std::fs::File>,
    /// Set when the request is given up: a call waiting for socket space
    /// stops within `CANCEL_CHECK_MS`.
    cancelled: Arc<AtomicBool>,
    /// The range's `halt`, which stops a waiting call the same way.
    halt: Option<Arc<AtomicBool>>,
    activity: Arc<Activity>,
    attempt: Arc<Attempt>,
}

/// How often a sendfile call waiting for socket space checks whether its
/// request was given up.
const CANCEL_CHECK_MS: libc::c_int = 100;

impl BodySender {
    /// Sends up to `want` bytes (at most `TRIP_MAX`) of the file from
    /// `offset`, waiting (on the blocking thread) until the socket takes
    /// some. Returns what was sent: less than asked when the socket filled
    /// or an error came after some bytes went (the next call waits, or
    /// meets the error again and reports it); 0 means the file ended.
    async fn send(&self, offset: u64, want: usize) -> io::Result<usize> {
        let (socket, file, cancelled, halt) = (self.socket.clone(), self.file.clone(), self.cancelled.clone(), self.halt.clone());
        let (activity, attempt) = (self.activity.clone(), self.attempt.clone());
        let call = tokio::task::spawn_blocking(move || {
            trip(
                want,
                |at, chunk, wait| sendfile_waiting(&socket, &file, offset + at as u64, chunk, wait, &cancelled, halt.as_deref()),
                |n| {
                    attempt.add(n as u64);
                    activity.touch();
                },
            )
        });
        call.await.unwrap_or_else(|e| Err(io::Error::other(e.to_string())))
    }
}

/// The calls of one trip: `send(at, chunk, wait)` sends up to `chunk`
/// bytes from `at` (relative to the trip's start), waiting for room only
/// when `wait`; `sent_some(n)` hears of each call's bytes. Stops at `want` (at
/// most `TRIP_MAX`), at the file's end, or at the first refusal once some
/// bytes went (a full socket, an error: the next trip waits, or meets the
/// error again and reports it).
fn trip(want: usize, mut send: impl FnMut(usize, usize, bool) -> io::Result<usize>, mut sent_some: impl FnMut(usize)) -> io::Result<usize> {
    let (want, mut sent) = (want.min(TRIP_MAX), 0);
    while sent < want {
        let n = match send(sent, (want - sent).min(SENDFILE_MAX), sent == 0) {
            Ok(0) => break,
            Ok(n) => n,
            Err(_) if sent > 0 => break,
            Err(e) => return Err(e),
        };
        sent += n;
        sent_some(n);
    }
    Ok(sent)
}

impl Drop for BodySender {
    fn drop(&mut self) {
        self.cancelled.store(true, Ordering::Relaxed);
    }
}

/// The server answered, or closed, while the body was still going out.
#[derive(Debug)]
struct EarlyAnswer;

impl std::fmt::Display for EarlyAnswer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the server answered before taking the whole body")
    }
}

impl std::error::Error for EarlyAnswer {}

/// One sendfile call, waiting with poll(2) while the socket is full, or,
/// unless `wait`, failing with `WouldBlock` then.
fn sendfile_waiting(
    socket: &TcpStream,
    file: &std::fs::File,
    offset: u64,
    want: usize,
    wait: bool,
    cancelled: &AtomicBool,
    halt: Option<&AtomicBool>,
) -> io::Result<usize> {
    let mut interim = 0;
    loop {
        if cancelled.load(Ordering::Relaxed) {
            return Err(io::Error::other("the request was given up"));
        }
        if halt.is_some_and(|h| h.load(Ordering::Acquire)) {
            return Err(crate::http::halted_error());
        }
        let mut at = offset as libc::off_t;
        // SAFETY: both descriptors stay open for the call (owned by the
        // caller's Arcs); the kernel advances `at`, not the file's position.
        match count(unsafe { libc::sendfile(socket.as_raw_fd(), file.as_raw_fd(), &mut at, want) }) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && !wait => return Err(e),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                let mut ready = libc::pollfd { fd: socket.as_raw_fd(), events: libc::POLLOUT | libc::POLLIN, revents: 0 };
                // SAFETY: one pollfd on the stack for one call. Errors and
                // hang-ups are left to the next sendfile to report.
                let n = unsafe { libc::poll(&mut ready, 1, CANCEL_CHECK_MS) };
                // The server speaks before the body is all in and takes no
                // more: it has answered early (a refusal) or is closing,
                // unless what it said is an interim answer (100 Continue,
                // 103 Early Hints), which any server may send unasked
                // (RFC 9110 15.2): that is read and the body goes on.
                if n > 0 && ready.revents & libc::POLLIN != 0 && ready.revents & libc::POLLOUT == 0 {
                    match skip_interim(socket)? {
                        Interim::Skipped if interim < MAX_INTERIM => interim += 1,
                        Interim::Partial => {
                            // The rest of it is on its way: wait a little
                            // (for it, or for room to send) instead of spinning.
                            let mut room = libc::pollfd { fd: socket.as_raw_fd(), events: libc::POLLOUT, revents: 0 };
                            // SAFETY: as above.
                            unsafe { libc::poll(&mut room, 1, INTERIM_WAIT_MS) };
                        }
                        _ => return Err(io::Error::new(io::ErrorKind::ConnectionAborted, EarlyAnswer)),
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            other => return other,
        }
    }
}

/// How long to wait for the rest of an interim answer that arrived in part
/// while the body's sending waits for room.
const INTERIM_WAIT_MS: libc::c_int = 5;

/// What the server has sent while the body is still going out.
#[derive(Debug, PartialEq)]
enum Interim {
    /// Interim answers (1xx), now read; nothing else came.
    Skipped,
    /// An interim answer's head, not all here yet (any whole ones before it
    /// are read).
    Partial,
    /// A final answer, something that is not HTTP, or the end of the
    /// connection: left unread, for the response reader.
    Final,
}

/// Reads the interim answers (1xx heads) waiting on `socket`, if that is
/// all that waits there; anything else stays for `read_response`.
fn skip_interim(socket: &impl AsRawFd) -> io::Result<Interim> {
    let fd = socket.as_raw_fd();
    let mut buf = vec![0u8; MAX_HEAD];
    // SAFETY: `buf` is a live buffer of its length; peeking consumes nothing.
    let n = match count(unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), libc::MSG_PEEK | libc::MSG_DONTWAIT) }) {
        Ok(n) => n,
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Interim::Partial),
        Err(e) => return Err(e),
    };
    let mut read = 0;
    let found = loop {
        if read == n {
            break if read == 0 { Interim::Final } else { Interim::Skipped };
        }
        let mut headers = [httparse::EMPTY_HEADER; 128];
        let mut resp = httparse::Response::new(&mut headers);
        match resp.parse(&buf[read..n]) {
            Ok(httparse::Status::Complete(len)) if resp.code.is_some_and(|c| (100..200).contains(&c) && c != 101) => read += len,
            Ok(httparse::Status::Partial) if n < buf.len() && looks_interim(&buf[read..n]) => break Interim::Partial,
            _ => break Interim::Final,
        }
    };
    if found == Interim::Final && read > 0 {
        // A final answer after interim ones: leave it all to the reader,
        // which skips interim answers itself.
        return Ok(Interim::Final);
    }
    let mut left = read;
    while left > 0 {
        // SAFETY: as above; these bytes are already waiting, so this does not block.
        left -= count(unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), left, libc::MSG_DONTWAIT) })?;
    }
    Ok(found)
}

/// Whether the start of a head that is not all here is an interim answer's
/// (`HTTP/1.x 1`), or too short to tell.
fn looks_interim(start: &[u8]) -> bool {
    const PREFIX: &[u8] = b"HTTP/1.";
    let n = start.len().min(PREFIX.len());
    if start[..n] != PREFIX[..n] {
        return false;
    }
    // "HTTP/1.x " is 9 bytes; the status's first digit follows.
    start.get(9).is_none_or(|d| *d == b'1')
}

/// Whose fault a failed sendfile is. Only errors that can come from
/// reading the file are the file's (not retried); anything else (the
/// socket's errors, an ICMP error reported after retransmissions, ENOBUFS)
/// is the network's, which the retry loop tries again.
fn classify_sendfile_error(e: io::Error, first: bool) -> Failure {
    if crate::http::is_halted(&e) || e.get_ref().is_some_and(|inner| inner.is::<EarlyAnswer>()) {
        return Failure::Network(e);
    }
    match e.raw_os_error() {
        Some(libc::EINVAL | libc::ENOSYS | libc::EOPNOTSUPP) if first => Failure::Unsupported,
        Some(libc::EIO | libc::EINVAL | libc::EOVERFLOW | libc::ESTALE | libc::ENXIO | libc::EBADF) | None => {
            Failure::File(e)
        }
        Some(_) => Failure::Network(e),
    }
}

/// Reads one HTTP/1.1 answer (skipping 1xx). Also says whether the
/// connection can carry another request.
pub(crate) async fn read_response<R: AsyncRead + Unpin>(
    r: &mut R,
    activity: &Activity,
) -> io::Result<(Response, bool)> {
    let mut buf: Vec<u8> = Vec::with_capacity(1024);
    let mut interim = 0;
    loop {
        let parsed = loop {
            let mut headers = [httparse::EMPTY_HEADER; 128];
            let mut resp = httparse::Response::new(&mut headers);
            match resp.parse(&buf).map_err(|e| protocol(format!("bad response head: {e}")))? {
                httparse::Status::Complete(len) => {
                    let status = resp.code.unwrap_or(0);
                    let keep_alive_default = resp.version == Some(1);
                    let headers: Vec<(String, String)> = resp
                        .headers
                        .iter()
                        .map(|h| (h.name.to_ascii_lowercase(), String::from_utf8_lossy(h.value).into_owned()))
                        .collect();
                    break (len, status, keep_alive_default, headers);
                }
                httparse::Status::Partial => {
                    if buf.len() >= MAX_HEAD {
                        return Err(protocol("response head is too large".into()));
                    }
                    let more = buf.len() + 1;
                    fill_to(r, &mut buf, more, activity).await?;
                }
            }
        };
        let (head_len, status, keep_alive_default, headers) = parsed;
        buf.drain(..head_len);
        if (100..200).contains(&status) {
            interim += 1;
            if interim > MAX_INTERIM {
                return Err(protocol("too many interim (1xx) answers".into()));
            }
            continue;
        }
        let header = |name: &str| headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.trim());
        let close = header("connection").is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("close")));
        let mut reusable = keep_alive_default && !close;
        let chunked = header("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
        let body = if status == 204 || status == 304 {
            Vec::new()
        } else if chunked {
            read_chunked(r, buf, activity).await?
        } else if let Some(len) = header("content-length") {
            let len: usize = len.parse().map_err(|_| protocol("bad Content-Length".into()))?;
            if len > crate::http::MAX_RESPONSE_BODY {
                return Err(protocol("response body is larger than expected".into()));
            }
            fill_to(r, &mut buf, len, activity).await?;
            if buf.len() > len {
                // Bytes after the answer that nobody asked for.
                reusable = false;
            }
            buf.truncate(len);
            buf
        } else {
            reusable = false;
            while fill(r, &mut buf, activity).await? > 0 {
                if buf.len() > crate::http::MAX_RESPONSE_BODY {
                    return Err(protocol("response body is larger than expected".into()));
                }
            }
            buf
        };
        return Ok((Response { status, headers, body: Bytes::from(body) }, reusable));
    }
}

async fn read_chunked<R: AsyncRead + Unpin>(r: &mut R, mut buf: Vec<u8>, activity: &Activity) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let (consumed, size) = loop {
            match httparse::parse_chunk_size(&buf).map_err(|_| protocol("bad chunk size".into()))? {
                httparse::Status::Complete(c) => break c,
                httparse::Status::Partial => {
                    if buf.len() > 1024 || fill(r, &mut buf, activity).await? == 0 {
                        return Err(protocol("bad chunked body".into()));
                    }
                }
            }
        };
        buf.drain(..consumed);
        let size = usize::try_from(size).unwrap_or(usize::MAX);
        if size == 0 {
            // Trailers end with an empty line; the last CRLF may already be here.
            while !(buf.starts_with(b"\r\n") || buf.windows(4).any(|w| w == b"\r\n\r\n")) {
                if buf.len() > MAX_HEAD || fill(r, &mut buf, activity).await? == 0 {
                    return Err(protocol("bad chunked trailer".into()));
                }
            }
            return Ok(body);
        }
        if body.len().saturating_add(size) > crate::http::MAX_RESPONSE_BODY {
            return Err(protocol("response body is larger than expected".into()));
        }
        fill_to(r, &mut buf, size + 2, activity).await?;
        body.extend_from_slice(&buf[..size]);
        buf.drain(..size + 2);
    }
}

async fn fill<R: AsyncRead + Unpin>(r: &mut R, buf: &mut Vec<u8>, activity: &Activity) -> io::Result<usize> {
    let mut chunk = [0u8; 8192];
    let n = r.read(&mut chunk).await?;
    buf.extend_from_slice(&chunk[..n]);
    if n > 0 {
        activity.touch();
    }
    Ok(n)
}

/// Reads until `buf` holds at least `len` bytes; the peer closing first is
/// a hang-up.
async fn fill_to<R: AsyncRead + Unpin>(r: &mut R, buf: &mut Vec<u8>, len: usize, activity: &Activity) -> io::Result<()> {
    while buf.len() < len {
        if fill(r, buf, activity).await? == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "socket hang up"));
        }
    }
    Ok(())
}

fn protocol(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A listening socket whose accept queue is full: a connect to it gets
    /// no answer (its SYN is dropped) until it times out.
    fn unanswering_address() -> (std::net::SocketAddr, Vec<std::net::TcpStream>, libc::c_int) {
        // SAFETY: plain socket calls on a socket this test owns.
        unsafe {
            let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
            assert!(fd >= 0);
            let mut sa: libc::sockaddr_in = std::mem::zeroed();
            sa.sin_family = libc::AF_INET as libc::sa_family_t;
            sa.sin_addr.s_addr = u32::from_ne_bytes([127, 0, 0, 1]);
            assert_eq!(libc::bind(fd, (&sa as *const libc::sockaddr_in).cast(), std::mem::size_of::<libc::sockaddr_in>() as u32), 0);
            assert_eq!(libc::listen(fd, 0), 0);
            let mut len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
            libc::getsockname(fd, (&mut sa as *mut libc::sockaddr_in).cast(), &mut len);
            let addr = std::net::SocketAddr::from(([127, 0, 0, 1], u16::from_be(sa.sin_port)));
            // Fill the queue: connects that are never accepted.
            let mut held = Vec::new();
            for _ in 0..4 {
                if let Ok(s) = std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_millis(200)) {
                    held.push(s);
                }
            }
            (addr, held, fd)
        }
    }

    #[tokio::test]
    async fn out_of_descriptors_kept_connections_to_other_hosts_go_first_then_all() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (one, other) = (Pool::default(), Pool::default());
        let mut server_ends = Vec::new();
        for (pool, host) in [(&one, "a.example"), (&one, "a.example"), (&one, "b.example"), (&other, "c.example")] {
            let ours = TcpStream::connect(addr).await.unwrap();
            server_ends.push(listener.accept().await.unwrap().0);
            pool.checkin(host, addr.port(), ours);
        }
        // A part to a.example keeps what it can use.
        one.idle.lock().unwrap().keep_only("a.example", addr.port());
        assert_eq!((one.kept(), other.kept()), (2, 1));
        assert!(one.checkout("a.example", addr.port()).is_some());
        // Anything else needing a descriptor closes every pool's: both are
        // registered for that. (Not closed here: that would reach the pools
        // of the tests running beside this one.)
        let registered = registered_pools();
        for pool in [&one, &other] {
            assert!(registered.iter().any(|p| Arc::ptr_eq(p, &pool.idle)));
        }
        drop(registered);
        let weak = Arc::downgrade(&other.idle);
        drop(other);
        assert!(weak.upgrade().is_none(), "a pool dropped is not kept alive by the registry");
    }

    #[test]
    fn a_sweeper_whose_runtime_ends_lets_the_next_checkin_start_another() {
        let pool = Pool::default();
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let server_end = runtime.block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let ours = TcpStream::connect(addr).await.unwrap();
            let server_end = listener.accept().await.unwrap().0;
            pool.checkin("a.example", addr.port(), ours);
            server_end
        });
        assert!(pool.idle.lock().unwrap().sweeping, "a checkin starts the sweeper");
        drop(runtime);
        assert!(!pool.idle.lock().unwrap().sweeping, "the sweeper dropped with its runtime says so");
        drop(server_end);
    }

    #[tokio::test]
    async fn kept_connections_are_closed_once_idle_too_long_or_closed_by_the_server() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let pool = Pool::default();
        let mut server_ends = Vec::new();
        for host in ["a.example", "b.example", "c.example"] {
            let ours = TcpStream::connect(addr).await.unwrap();
            server_ends.push(listener.accept().await.unwrap().0);
            pool.checkin(host, addr.port(), ours);
        }
        assert_eq!(pool.kept(), 3);
        assert!(pool.idle.lock().unwrap().sweeping, "a checkin starts the sweeper");
        // a: kept past its time; b: closed by the server; c: fresh and open.
        pool.idle.lock().unwrap().by_host.get_mut(&("a.example".to_string(), addr.port())).unwrap()[0].1 -= IDLE_KEEP;
        drop(server_ends.remove(1));
        tokio::time::sleep(Duration::from_millis(50)).await;
        let sweeper = tokio::spawn(sweep_until_empty(Arc::downgrade(&pool.idle), Duration::from_millis(10)));
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while pool.kept() > 1 && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(pool.kept(), 1);
        assert!(pool.checkout("c.example", addr.port()).is_some(), "the fresh open one is kept");
        // Nothing kept: the sweeper ends, and says so.
        tokio::time::timeout(Duration::from_secs(5), sweeper).await.expect("the sweeper ended").unwrap();
        assert!(!pool.idle.lock().unwrap().sweeping);
        assert!(pool.idle.lock().unwrap().by_host.is_empty(), "hosts with nothing kept are dropped");
    }

    #[tokio::test]
    async fn an_address_that_never_answers_gives_way_to_the_next() {
        let (silent, _held, fd) = unanswering_address();
        let good = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let good_addr = good.local_addr().unwrap();
        let each = std::time::Duration::from_millis(500);
        // The silent address really is silent: alone (last) it would wait.
        assert!(tokio::time::timeout(each, TcpStream::connect(silent)).await.is_err(), "the test's address answered");
        let started = std::time::Instant::now();
        let stream = tokio::time::timeout(std::time::Duration::from_secs(10), connect_any(&[silent, good_addr], each))
            .await
            .expect("connect_any waited on the silent address")
            .unwrap();
        assert_eq!(stream.peer_addr().unwrap(), good_addr);
        assert!(started.elapsed() >= each, "the first address had its try");
        // SAFETY: the test's own socket.
        unsafe { libc::close(fd) };
    }

    async fn parse(raw: &[u8]) -> io::Result<(Response, bool)> {
        let mut r = raw;
        read_response(&mut r, &Activity::new()).await
    }

    #[tokio::test]
    async fn answers_with_a_length_are_read_and_keep_the_connection() {
        let (resp, reusable) = parse(b"HTTP/1.1 200 OK\r\nETag: \"abc\"\r\nContent-Length: 2\r\n\r\nok").await.unwrap();
        assert_eq!((resp.status, resp.header("etag"), &resp.body[..]), (200, Some("\"abc\""), &b"ok"[..]));
        assert!(reusable);
        let (_, reusable) = parse(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n").await.unwrap();
        assert!(!reusable);
        let (_, reusable) = parse(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n").await.unwrap();
        assert!(!reusable);
    }

    #[tokio::test]
    async fn interim_answers_are_skipped_and_chunked_bodies_joined() {
        let raw = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 403 Forbidden\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\n<Erro\r\n3\r\nr/>\r\n0\r\n\r\n";
        let (resp, reusable) = parse(raw).await.unwrap();
        assert_eq!((resp.status, &resp.body[..]), (403, &b"<Error/>"[..]));
        assert!(reusable);
    }

    #[tokio::test]
    async fn an_answer_without_length_runs_to_the_close() {
        let (resp, reusable) = parse(b"HTTP/1.1 500 Oops\r\n\r\nall of it").await.unwrap();
        assert_eq!((resp.status, &resp.body[..]), (500, &b"all of it"[..]));
        assert!(!reusable);
    }

    #[tokio::test]
    async fn cut_or_broken_answers_are_errors() {
        assert_eq!(parse(b"").await.unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
        assert_eq!(parse(b"HTTP/1.1 200 OK\r\nContent-Le").await.unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
        assert_eq!(
            parse(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort").await.unwrap_err().kind(),
            io::ErrorKind::UnexpectedEof
        );
        assert_eq!(parse(b"NOT HTTP\r\n\r\n").await.unwrap_err().kind(), io::ErrorKind::InvalidData);
        assert_eq!(
            parse(b"HTTP/1.1 200 OK\r\nContent-Length: nope\r\n\r\n").await.unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
        assert_eq!(
            parse(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n").await.unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
    }

    /// A connected pair on loopback: our end (non-blocking, as tokio keeps
    /// it) and the peer's.
    async fn pair() -> (TcpStream, std::net::TcpStream) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let ours = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (peer, _) = listener.accept().unwrap();
        (ours, peer)
    }

    /// A file of `len` zero bytes that takes no disk space.
    fn sparse_file(dir: &tempfile::TempDir, len: u64) -> std::fs::File {
        let path = dir.path().join("sparse");
        let file = std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(true).open(path).unwrap();
        file.set_len(len).unwrap();
        file
    }

    fn body_for(stream: &Arc<TcpStream>, file: std::fs::File) -> BodySender {
        BodySender {
            socket: stream.clone(),
            file: Arc::new(file),
            cancelled: Arc::new(AtomicBool::new(false)),
            halt: None,
            activity: Arc::new(Activity::new()),
            attempt: Arc::new(Attempt::new(None)),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_file_goes_out_as_it_is_and_its_end_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
        std::fs::write(&path, &data).unwrap();
        let (stream, mut peer) = pair().await;
        let reader = std::thread::spawn(move || {
            let mut got = Vec::new();
            std::io::Read::read_to_end(&mut peer, &mut got).unwrap();
            got
        });
        let stream = Arc::new(stream);
        let body = body_for(&stream, std::fs::File::open(&path).unwrap());
        let mut offset = 1000u64;
        while offset < data.len() as u64 {
            offset += body.send(offset, 64 * 1024).await.unwrap() as u64;
        }
        assert_eq!(body.send(offset, 10).await.unwrap(), 0, "past the end: nothing more to send");
        drop(body);
        drop(stream);
        assert_eq!(reader.join().unwrap(), &data[1000..]);
    }

    #[test]
    fn a_trip_sends_while_the_socket_takes_bytes_and_waits_only_for_its_first() {
        // (at, chunk, wait) of each call, and what each call did.
        let run = |want: usize, answers: Vec<io::Result<usize>>| {
            let mut answers = answers.into_iter();
            let (mut calls, mut heard) = (Vec::new(), Vec::new());
            let result = trip(
                want,
                |at, chunk, wait| {
                    calls.push((at, chunk, wait));
                    answers.next().expect("no more calls than answers")
                },
                |n| heard.push(n),
            );
            (result.map_err(|e| e.kind()), calls, heard)
        };
        let mib = SENDFILE_MAX;
        let would_block = || Err(io::Error::from(io::ErrorKind::WouldBlock));
        // Taken whole: calls of at most a MiB, each heard of as it goes; only the first may wait.
        let (r, calls, heard) = run(mib + 5, vec![Ok(mib), Ok(5)]);
        assert_eq!(r, Ok(mib + 5));
        assert_eq!(calls, [(0, mib, true), (mib, 5, false)]);
        assert_eq!(heard, [mib, 5]);
        // A socket that fills after some bytes ends the trip with them.
        let (r, calls, _) = run(3 * mib, vec![Ok(700), would_block()]);
        assert_eq!((r, calls.len()), (Ok(700), 2));
        // An error after some bytes: the same; at the first call: the error.
        assert_eq!(run(3 * mib, vec![Ok(9), Err(io::Error::other("reset"))]).0, Ok(9));
        assert_eq!(run(3 * mib, vec![Err(io::Error::other("reset"))]).0, Err(io::ErrorKind::Other));
        // The file's end stops the trip; nothing at all means it had ended.
        assert_eq!(run(3 * mib, vec![Ok(10), Ok(0)]).0, Ok(10));
        assert_eq!(run(3 * mib, vec![Ok(0)]).0, Ok(0));
        // At most TRIP_MAX a trip, however much is asked.
        let (r, calls, _) = run(usize::MAX, (0..TRIP_MAX / mib).map(|_| Ok(mib)).collect());
        assert_eq!((r, calls.len()), (Ok(TRIP_MAX), TRIP_MAX / mib));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_trip_that_fills_the_socket_returns_with_what_went_instead_of_waiting() {
        let dir = tempfile::tempdir().unwrap();
        let file = sparse_file(&dir, 256 << 20);
        let (stream, _peer) = pair().await; // the peer never reads
        let body = body_for(&Arc::new(stream), file);
        let mut offset = 0u64;
        loop {
            let n = tokio::time::timeout(Duration::from_secs(5), body.send(offset, TRIP_MAX))
                .await
                .expect("a trip with bytes sent does not wait for room")
                .unwrap();
            assert!(n > 0 && n <= TRIP_MAX);
            offset += n as u64;
            if n < TRIP_MAX {
                break;
            }
            assert!(offset < 128 << 20, "the socket never filled");
        }
        assert_eq!(body.attempt.counted(), offset);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_error_after_some_bytes_is_reported_by_the_next_call_and_every_byte_counted() {
        let dir = tempfile::tempdir().unwrap();
        let len = 256 << 20;
        let file = sparse_file(&dir, len as u64);
        let (stream, mut peer) = pair().await;
        // The peer reads 1 MiB, then closes with bytes unread: a reset.
        let reader = std::thread::spawn(move || {
            let mut buf = vec![0u8; 1 << 20];
            std::io::Read::read_exact(&mut peer, &mut buf).unwrap();
        });
        let body = body_for(&Arc::new(stream), file);
        let mut total = 0usize;
        let failed = loop {
            match tokio::time::timeout(Duration::from_secs(20), body.send(total as u64, len - total)).await.expect("no hang") {
                Ok(n) => {
                    assert!(n > 0 && n <= TRIP_MAX, "{n}");
                    total += n;
                    assert!(total < len, "the reset was never met");
                }
                Err(e) => break e,
            }
        };
        reader.join().unwrap();
        assert!(total >= 1 << 20, "what the peer read went: {total}");
        assert_eq!(body.attempt.counted(), total as u64, "every byte sent counted, none more: {failed}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_call_waiting_on_a_full_socket_ends_when_the_request_is_given_up() {
        let dir = tempfile::tempdir().unwrap();
        let file = sparse_file(&dir, 256 << 20);
        let (stream, _peer) = pair().await; // the peer never reads
        let body = body_for(&Arc::new(stream), file); // the body holds the only reference
        let socket = Arc::downgrade(&body.socket);
        // Fill the socket until a call has to wait for space.
        let mut offset = 0u64;
        loop {
            match tokio::time::timeout(Duration::from_millis(500), body.send(offset, SENDFILE_MAX)).await {
                Ok(sent) => offset += sent.unwrap() as u64,
                Err(_) => break,
            }
            assert!(offset < 256 << 20, "the socket never filled");
        }
        // The waiting call still holds the descriptor; giving up releases it.
        assert!(socket.strong_count() >= 2, "the waiting call holds the socket");
        drop(body);
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        while socket.strong_count() > 0 {
            assert!(std::time::Instant::now() < deadline, "the blocking call did not stop");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// A server on a thread: reads the head, then `read_body` body bytes
    /// (all of them, or none), waits for `go`, and answers `status`.
    fn one_answer_server(read_body: usize, status: &'static str, go: std::sync::mpsc::Receiver<()>) -> (u16, std::thread::JoinHandle<usize>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            crate::http::read_request_head(&mut conn).unwrap();
            let mut body = vec![0u8; read_body];
            std::io::Read::read_exact(&mut conn, &mut body).unwrap();
            let _ = go.recv_timeout(Duration::from_secs(10));
            let _ = std::io::Write::write_all(&mut conn, format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n").as_bytes());
            read_body
        });
        (port, server)
    }

    /// A sparse file of `len` bytes as a range with a halt flag, and the
    /// head of a PUT of it to 127.0.0.1:`port`.
    fn haltable_put(dir: &tempfile::TempDir, port: u16, len: u64) -> (Arc<AtomicBool>, FileRange, String) {
        let halt = Arc::new(AtomicBool::new(false));
        let range = FileRange { file: Arc::new(sparse_file(dir, len)), offset: 0, len, sent: None, halt: Some(halt.clone()) };
        let head = format!("PUT /b/k HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: {len}\r\n\r\n");
        (halt, range, head)
    }

    fn put_of<'a>(port: u16, head: &'a str, range: &'a FileRange, activity: &'a Arc<Activity>, attempt: &'a Arc<Attempt>) -> Put<'a> {
        Put { host: "127.0.0.1", port, head: head.as_bytes(), range, activity, attempt }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_halted_body_that_is_not_all_sent_stops_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let len = 256u64 << 20;
        let (go, wait) = std::sync::mpsc::channel();
        // Reads no body; answers only after the halt, which is not waited for.
        let (port, _server) = one_answer_server(0, "403 Forbidden", wait);
        let (halt, range, head) = haltable_put(&dir, port, len);
        let (activity, attempt) = (Arc::new(Activity::new()), Arc::new(Attempt::new(None)));
        let put = put_of(port, &head, &range, &activity, &attempt);
        let pool = Pool::default();
        let halting = async {
            // Once the socket is full, the body waits for space.
            tokio::time::sleep(Duration::from_millis(300)).await;
            halt.store(true, Ordering::Release);
            go.send(()).unwrap();
        };
        let (result, ()) = tokio::time::timeout(Duration::from_secs(3), async { tokio::join!(pool.put(&put), halting) })
            .await
            .expect("the halt ends the call, not a watchdog");
        match result {
            Err(Failure::Network(e)) => assert!(crate::http::is_halted(&e), "{e}"),
            Err(other) => panic!("{other:?}"),
            Ok(r) => panic!("answered {}: the answer was waited for", r.status),
        }
        // Halted before it starts: nothing is sent.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let unused = put_of(listener.local_addr().unwrap().port(), &head, &range, &activity, &attempt);
        assert!(matches!(pool.put(&unused).await, Err(Failure::Network(e)) if crate::http::is_halted(&e)));
        listener.set_nonblocking(true).unwrap();
        assert!(listener.accept().is_err(), "no connection was made");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_halted_body_that_is_all_sent_still_gets_its_answer() {
        let dir = tempfile::tempdir().unwrap();
        let len = 1u64 << 20;
        let (go, wait) = std::sync::mpsc::channel();
        let (port, server) = one_answer_server(len as usize, "200 OK", wait);
        let (halt, range, head) = haltable_put(&dir, port, len);
        let (activity, attempt) = (Arc::new(Activity::new()), Arc::new(Attempt::new(None)));
        let put = put_of(port, &head, &range, &activity, &attempt);
        let pool = Pool::default();
        let halting = async {
            // The server has the whole body and holds its answer.
            while attempt.counted() < len {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            halt.store(true, Ordering::Release);
            go.send(()).unwrap();
        };
        let (result, ()) = tokio::time::timeout(Duration::from_secs(5), async { tokio::join!(pool.put(&put), halting) }).await.unwrap();
        assert_eq!(result.ok().map(|r| r.status), Some(200));
        assert_eq!(server.join().unwrap(), len as usize);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_refusal_before_the_body_is_in_is_the_answer_even_if_the_server_keeps_the_connection() {
        let dir = tempfile::tempdir().unwrap();
        let file = sparse_file(&dir, 256 << 20);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        // Reads the head, answers 403, then neither reads nor closes until
        // the test is done.
        let (done, wait) = std::sync::mpsc::channel::<()>();
        let server = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            crate::http::read_request_head(&mut conn).unwrap();
            let body = "<Error><Code>AccessDenied</Code></Error>";
            let answer = format!("HTTP/1.1 403 Forbidden\r\nContent-Length: {}\r\n\r\n{body}", body.len());
            std::io::Write::write_all(&mut conn, answer.as_bytes()).unwrap();
            let _ = wait.recv_timeout(Duration::from_secs(10));
        });
        let range = FileRange { file: Arc::new(file), offset: 0, len: 256 << 20, sent: None, halt: None };
        let activity = Arc::new(Activity::new());
        let attempt = Arc::new(Attempt::new(None));
        let head = format!("PUT /b/k HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: {}\r\n\r\n", 256 << 20);
        let put = Put { host: "127.0.0.1", port, head: head.as_bytes(), range: &range, activity: &activity, attempt: &attempt };
        let pool = Pool::default();
        let resp = tokio::time::timeout(Duration::from_secs(4), pool.put(&put))
            .await
            .expect("the answer, not a wait for the watchdog")
            .expect("the server's answer");
        assert_eq!(resp.status, 403);
        assert_eq!(&resp.body[..], b"<Error><Code>AccessDenied</Code></Error>");
        assert!(attempt.counted() < 256 << 20, "the body did not all go out");
        drop(pool);
        done.send(()).unwrap();
        server.join().unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn interim_answers_sent_while_the_body_waits_for_room_are_read_and_the_body_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let len = 32u64 << 20;
        let file = sparse_file(&dir, len);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        // Before reading any of the body (so the client's socket fills):
        // a 100 Continue, then a 103 in two pieces, 50 ms apart; then the
        // whole body, then the answer.
        let server = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            crate::http::read_request_head(&mut conn).unwrap();
            std::thread::sleep(Duration::from_millis(100));
            std::io::Write::write_all(&mut conn, b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early").unwrap();
            std::thread::sleep(Duration::from_millis(50));
            std::io::Write::write_all(&mut conn, b" Hints\r\nLink: </x>\r\n\r\n").unwrap();
            std::thread::sleep(Duration::from_millis(100));
            let mut left = len as usize;
            let mut buf = vec![0u8; 1 << 20];
            while left > 0 {
                let n = std::io::Read::read(&mut conn, &mut buf[..left.min(1 << 20)]).unwrap();
                assert!(n > 0, "the body ended early");
                left -= n;
            }
            std::io::Write::write_all(&mut conn, b"HTTP/1.1 200 OK\r\nETag: \"e\"\r\nContent-Length: 0\r\n\r\n").unwrap();
            conn
        });
        let range = FileRange { file: Arc::new(file), offset: 0, len, sent: None, halt: None };
        let (activity, attempt) = (Arc::new(Activity::new()), Arc::new(Attempt::new(None)));
        let head = format!("PUT /b/k HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: {len}\r\n\r\n");
        let pool = Pool::default();
        let resp = tokio::time::timeout(Duration::from_secs(10), pool.put(&put_of(port, &head, &range, &activity, &attempt)))
            .await
            .expect("no wait for the watchdog")
            .expect("the body went on past the interim answers");
        assert_eq!((resp.status, resp.header("etag")), (200, Some("\"e\"")));
        assert_eq!(attempt.counted(), len);
        drop(server.join().unwrap());
    }

    #[test]
    fn what_waits_on_the_socket_while_the_body_goes_out() {
        let cases: [(&[u8], Interim, usize); 7] = [
            (b"HTTP/1.1 100 Continue\r\n\r\n", Interim::Skipped, 0),
            (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Ea", Interim::Partial, 15),
            (b"HTTP/1.", Interim::Partial, 7),
            (b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n", Interim::Final, 45),
            (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n\r\n", Interim::Final, 44),
            (b"HTTP/1.1 101 Switching Protocols\r\n\r\n", Interim::Final, 36),
            (b"garbage", Interim::Final, 7),
        ];
        for (sent, expected, left) in cases {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let mut client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
            let (mut server, _) = listener.accept().unwrap();
            std::io::Write::write_all(&mut server, sent).unwrap();
            std::thread::sleep(Duration::from_millis(20));
            assert_eq!(skip_interim(&client).unwrap(), expected, "{}", String::from_utf8_lossy(sent));
            // What was not read is still there for the response reader.
            drop(server);
            let mut rest = Vec::new();
            std::io::Read::read_to_end(&mut client, &mut rest).unwrap();
            assert_eq!(rest.len(), left, "{}", String::from_utf8_lossy(sent));
        }
        // The server closed without a word.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        drop(listener.accept().unwrap());
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(skip_interim(&client).unwrap(), Interim::Final);
    }

    #[tokio::test]
    async fn connection_close_among_other_tokens_and_endless_interim_answers() {
        let (_, reusable) = parse(b"HTTP/1.1 200 OK\r\nConnection: keep-alive, Close\r\nContent-Length: 0\r\n\r\n").await.unwrap();
        assert!(!reusable);
        let flood = b"HTTP/1.1 100 Continue\r\n\r\n".repeat(MAX_INTERIM + 1);
        assert_eq!(parse(&flood).await.unwrap_err().kind(), io::ErrorKind::InvalidData);
        let mut enough = b"HTTP/1.1 100 Continue\r\n\r\n".repeat(MAX_INTERIM);
        enough.extend_from_slice(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
        assert_eq!(parse(&enough).await.unwrap().0.status, 200);
    }

    #[test]
    fn sendfile_errors_are_the_file_s_only_when_reading_the_file_can_cause_them() {
        let kind = |errno: i32, first: bool| match classify_sendfile_error(io::Error::from_raw_os_error(errno), first) {
            Failure::Unsupported => "unsupported",
            Failure::File(_) => "file",
            Failure::Network(_) => "network",
            Failure::Connect(_) | Failure::Stale(_) => "other",
        };
        assert_eq!(kind(libc::EINVAL, true), "unsupported");
        assert_eq!(kind(libc::EINVAL, false), "file");
        assert_eq!(kind(libc::EIO, false), "file");
        for errno in [libc::EPIPE, libc::ECONNRESET, libc::EHOSTUNREACH, libc::ENETUNREACH, libc::ENOBUFS, libc::ETIMEDOUT] {
            assert_eq!(kind(errno, false), "network", "errno {errno}");
        }
        let early = io::Error::new(io::ErrorKind::ConnectionAborted, EarlyAnswer);
        assert!(matches!(classify_sendfile_error(early, true), Failure::Network(_)));
    }
}
