//! Running out of file descriptors (EMFILE, ENFILE). Many uploads at once
//! in a process with a low `ulimit -n` (1024 is a common default, and some
//! platforms fix it) need more descriptors than the process may hold: a file
//! per upload, a connection per part in flight, a record and its lock. Most
//! likely the descriptors are held by this process's own uploads, which
//! free them as they end; so what needs one waits for one instead of
//! failing, for as long as `timeout` lets a request go without moving.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, SemaphorePermit};

/// Every upload holds a few descriptors for its whole run (the file, the
/// record's lock) and takes one for each record write; every request in
/// flight holds a connection, and a connection it ends with may be kept
/// for the next (the HTTP client's kept connections cannot be closed on
/// demand). Left alone, connections take every descriptor the limit allows
/// and a record write or a file to open waits for one that never comes;
/// too many uploads at once, and what they hold for their whole run leaves
/// none for connections. So, from the process's descriptor limit when the
/// first upload starts: at most an eighth of it in uploads at once (the
/// others wait their turn, first come first served, before they open
/// anything), and at most a quarter in requests in flight over all
/// clients. With the limit Node sets itself (the hard limit, often over a
/// million) neither ever holds anything up.
const LIMIT_PER_UPLOAD: u64 = 8;
const LIMIT_PER_REQUEST: u64 = 4;

/// A place among the uploads that run at once; freed when dropped.
pub(crate) struct Admitted(#[allow(dead_code)] SemaphorePermit<'static>);

/// Waits until this upload may run (see `LIMIT_PER_UPLOAD`).
pub(crate) async fn admit() -> Admitted {
    Admitted(running().acquire().await.expect("the uploads' semaphore is never closed"))
}

/// A place among the uploads that run at once, if one is free now.
pub(crate) fn try_admit() -> Option<Admitted> {
    running().try_acquire().ok().map(Admitted)
}

fn running() -> &'static Semaphore {
    static RUNNING: OnceLock<Semaphore> = OnceLock::new();
    RUNNING.get_or_init(|| Semaphore::new(share_of_limit(LIMIT_PER_UPLOAD)))
}

/// A place among the requests in flight over all clients; freed when dropped.
pub(crate) struct Connection(#[allow(dead_code)] SemaphorePermit<'static>);

/// Waits until this request may go out (see `LIMIT_PER_REQUEST`).
pub(crate) async fn connection() -> Connection {
    static IN_FLIGHT: OnceLock<Semaphore> = OnceLock::new();
    let in_flight = IN_FLIGHT.get_or_init(|| Semaphore::new(share_of_limit(LIMIT_PER_REQUEST)));
    Connection(in_flight.acquire().await.expect("the requests' semaphore is never closed"))
}

/// Idle connections the HTTP client may keep per host when it carries only
/// the small requests (initiate, complete, list, abort) because part bodies
/// go by sendfile on connections of their own: a 64th of the descriptor
/// limit, at least 2. A burst of small requests (200 uploads starting at
/// once) must not leave hundreds of idle sockets holding the descriptors
/// the parts need under a low limit (they cannot be closed on demand); under
/// Node's own limit, many small uploads at once keep their connections
/// instead of opening one per request.
pub(crate) fn small_requests_idle() -> usize {
    idle_under(soft_limit())
}

/// `small_requests_idle` under the soft limit `soft` (`None`: no limit).
fn idle_under(soft: Option<u64>) -> usize {
    const LIMIT_PER_IDLE: u64 = 64;
    soft.map_or(usize::MAX, |soft| usize::try_from(soft / LIMIT_PER_IDLE).unwrap_or(usize::MAX).max(2))
}

/// The process's descriptor limit divided by `per`: at least 4, and as many
/// as a semaphore holds when there is no limit.
fn share_of_limit(per: u64) -> usize {
    soft_limit().map_or(Semaphore::MAX_PERMITS, |soft| usize::try_from(soft / per).unwrap_or(usize::MAX).clamp(4, Semaphore::MAX_PERMITS))
}

/// The process's soft descriptor limit, if it has one.
fn soft_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: getrlimit fills the struct it is given.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0 && limit.rlim_cur != libc::RLIM_INFINITY {
            #[allow(clippy::unnecessary_cast)] // rlim_t is u64 on Linux, not everywhere
            return Some(limit.rlim_cur as u64);
        }
    }
    None
}

/// Whether `e` says the process or the system has no file descriptor left.
#[cfg(unix)]
pub(crate) fn exhausted(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
}

#[cfg(not(unix))]
pub(crate) fn exhausted(_e: &std::io::Error) -> bool {
    false
}

/// How long a wait for a descriptor may go on (the client's `timeout`), and
/// what ends it sooner (the call was cancelled or aborted).
#[derive(Clone)]
pub(crate) struct Patience {
    limit: Duration,
    stopped: Arc<dyn Fn() -> bool + Send + Sync>,
}

impl Patience {
    pub(crate) fn new(limit: Duration, stopped: impl Fn() -> bool + Send + Sync + 'static) -> Self {
        Patience { limit, stopped: Arc::new(stopped) }
    }

    /// Whether a wait that began at `since` may go on.
    pub(crate) fn allows(&self, since: Instant) -> bool {
        since.elapsed() < self.limit && !(self.stopped)()
    }
}

/// How long to wait before the `times`-th try again for a descriptor: 10 ms,
/// doubling up to 160 ms, with jitter (many waiters do not try in step).
pub(crate) fn wait(times: u32) -> Duration {
    Duration::from_millis(10 << times.min(4)).mul_f64(0.5 + crate::http::random_unit())
}

/// Closes the connections kept for later requests, all of them: what needs
/// a descriptor now comes first.
pub(crate) fn release_kept_connections() {
    #[cfg(target_os = "linux")]
    crate::sendfile::close_all_idle();
}

/// Runs `op` (blocking file system work, on a blocking thread) again while
/// it fails for want of a descriptor, as long as `patience` allows; kept
/// connections are closed before each wait.
pub(crate) fn retry_blocking<T>(patience: &Patience, op: impl FnMut() -> std::io::Result<T>) -> std::io::Result<T> {
    retry_blocking_with(patience, release_kept_connections, op)
}

fn retry_blocking_with<T>(patience: &Patience, release: impl Fn(), mut op: impl FnMut() -> std::io::Result<T>) -> std::io::Result<T> {
    let since = Instant::now();
    let mut times = 0;
    loop {
        match op() {
            Err(e) if exhausted(&e) && patience.allows(since) => {
                release();
                std::thread::sleep(wait(times));
                times += 1;
            }
            other => return other,
        }
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn kept_idle_connections_are_a_64th_of_the_limit_and_at_least_2() {
        assert_eq!(idle_under(Some(64)), 2);
        assert_eq!(idle_under(Some(255)), 3);
        assert_eq!(idle_under(Some(1024)), 16);
        assert_eq!(idle_under(Some(1 << 20)), 16384);
        assert_eq!(idle_under(Some(u64::MAX)), usize::try_from(u64::MAX / 64).unwrap_or(usize::MAX));
        assert_eq!(idle_under(None), usize::MAX);
        assert_eq!(idle_under(Some(0)), 2);
    }

    fn emfile() -> std::io::Error {
        std::io::Error::from_raw_os_error(libc::EMFILE)
    }

    fn patience(limit: Duration) -> Patience {
        Patience::new(limit, || false)
    }

    /// Without closing kept connections: that would reach the pools of the
    /// tests running beside these.
    fn retry<T>(patience: &Patience, op: impl FnMut() -> std::io::Result<T>) -> std::io::Result<T> {
        retry_blocking_with(patience, || {}, op)
    }

    #[test]
    fn an_operation_short_of_descriptors_is_tried_again_until_it_works() {
        let mut tries = 0;
        let got = retry(&patience(Duration::from_secs(5)), || {
            tries += 1;
            if tries < 4 { Err(emfile()) } else { Ok(tries) }
        });
        assert_eq!(got.unwrap(), 4);
    }

    #[test]
    fn it_gives_up_after_its_patience_and_other_errors_at_once() {
        let start = Instant::now();
        let got: std::io::Result<()> = retry(&patience(Duration::from_millis(300)), || Err(emfile()));
        assert!(exhausted(&got.unwrap_err()));
        let waited = start.elapsed();
        assert!(waited >= Duration::from_millis(300) && waited < Duration::from_secs(2), "{waited:?}");

        let mut tries = 0;
        let got: std::io::Result<()> = retry(&patience(Duration::from_secs(5)), || {
            tries += 1;
            Err(std::io::Error::from_raw_os_error(libc::EACCES))
        });
        assert!(got.is_err());
        assert_eq!(tries, 1, "an error that is not about descriptors is not waited out");
    }

    #[test]
    fn a_stopped_call_waits_no_more() {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let patience = Patience::new(Duration::from_secs(60), move || flag.load(std::sync::atomic::Ordering::Relaxed));
        let start = Instant::now();
        let mut tries = 0;
        let got: std::io::Result<()> = retry(&patience, || {
            tries += 1;
            if tries == 3 {
                stop.store(true, std::sync::atomic::Ordering::Relaxed);
            }
            Err(emfile())
        });
        assert!(exhausted(&got.unwrap_err()));
        assert_eq!(tries, 3);
        assert!(start.elapsed() < Duration::from_secs(2));
    }

    #[test]
    fn waits_grow_and_stay_short() {
        for times in 0..30 {
            let w = wait(times);
            assert!(w >= Duration::from_millis(5) && w <= Duration::from_millis(240), "{times}: {w:?}");
        }
        assert!(wait(0) <= Duration::from_millis(15));
    }
}
