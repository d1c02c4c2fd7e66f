//! HTTP execution: builds the URL and headers of a request for the
//! endpoint's addressing style, signs it, sends it on the shared connection
//! pool with an idle watchdog, retries transient faults with jittered
//! exponential backoff, and hands back status, headers and body.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use futures_util::StreamExt as _;

use crate::buffer;
use crate::config::{ClientConfig, SignatureMode, SslVerify};
use crate::error::{Error, Result};
use crate::sign::{self, SignInput, Signature, V4Input};
use crate::xml;

/// Access key, secret key and optional security token. Swapped as a whole
/// by `refresh`; never logged, never written anywhere.
#[derive(Clone, Default)]
pub struct Credentials {
    pub access_key: String,
    pub secret_key: String,
    pub security_token: Option<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Credentials(**redacted**)")
    }
}

/// A byte range of a local file, sent as a request body. Re-read from the
/// file on every attempt, so nothing is kept in memory between retries.
#[derive(Clone)]
pub struct FileRange {
    pub file: Arc<std::fs::File>,
    pub offset: u64,
    pub len: u64,
    /// Added to as bytes are handed to the socket; a failed attempt takes
    /// its bytes back.
    pub sent: Option<Arc<AtomicU64>>,
    /// Once set, no more of the body is handed over: an attempt that has
    /// not handed all of it fails and is not retried, so the server never
    /// gets the whole body; one that has waits for its answer as usual.
    pub halt: Option<Arc<AtomicBool>>,
}

impl FileRange {
    /// Whether the body is to be handed over no further (see `halt`).
    pub(crate) fn halted(&self) -> bool {
        self.halt.as_ref().is_some_and(|h| h.load(Ordering::Acquire))
    }
}

/// Why an attempt stopped by `FileRange::halt` failed.
#[derive(Debug)]
pub(crate) struct Halted;

impl std::fmt::Display for Halted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the upload stopped before this part's body was all sent")
    }
}

impl std::error::Error for Halted {}

pub(crate) fn halted_error() -> std::io::Error {
    std::io::Error::other(Halted)
}

/// Whether `e` is `halted_error()` (for the sendfile path, Linux only).
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
pub(crate) fn is_halted(e: &std::io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<Halted>())
}

/// How often a request waiting to be retried checks for a halt.
const HALT_CHECK: Duration = Duration::from_millis(50);

#[derive(Clone)]
pub enum Body {
    Empty,
    Bytes(Bytes),
    File(FileRange),
}

impl Body {
    fn len(&self) -> u64 {
        match self {
            Body::Empty => 0,
            Body::Bytes(b) => b.len() as u64,
            Body::File(r) => r.len,
        }
    }
}

pub struct Request {
    pub method: &'static str,
    pub bucket: String,
    pub key: Option<String>,
    /// Decoded query parameters; `None` = a bare name such as `uploads`.
    pub query: Vec<(String, Option<String>)>,
    /// Headers besides Date, Host, Authorization and the token.
    pub headers: Vec<(String, String)>,
    pub body: Body,
}

impl Request {
    /// Whether its file body is to be handed over no further.
    fn halted(&self) -> bool {
        matches!(&self.body, Body::File(range) if range.halted())
    }
}

#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    /// Lower-case names.
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// Characters left as they are in paths and query values: RFC 3986
/// unreserved, plus `/`. The reference SDK's `encodeURIWithSafe(s, '/')`.
const PATH_SET: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'/');

/// A bucket name that can go into a URL's host as it is: ASCII letters,
/// digits, `.`, `-` and `_` (what OBS and S3, including S3's older rules,
/// allow). Any other character could move a virtual-hosted request to
/// another host (`evil.example/x`, `a@evil.example`, `evil.example#`).
fn check_host_bucket(bucket: &str) -> Result<()> {
    if bucket.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_')) {
        Ok(())
    } else {
        Err(Error::invalid_argument(format!(
            "Bucket {bucket:?} is not a valid bucket name (letters, digits, '.', '-' and '_' only)"
        )))
    }
}

pub fn encode_path(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, PATH_SET).to_string()
}

/// Characters the reference SDK leaves alone in header values
/// (`encodeURIWithSafe(v, ' ;/?:@&=+$,')`).
const HEADER_SET: &percent_encoding::AsciiSet = &PATH_SET
    .remove(b' ')
    .remove(b';')
    .remove(b'?')
    .remove(b':')
    .remove(b'@')
    .remove(b'&')
    .remove(b'=')
    .remove(b'+')
    .remove(b'$')
    .remove(b',');

pub fn encode_header_value(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, HEADER_SET).to_string()
}

/// How failed requests are tried again.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub max_retries: u32,
    pub base: Duration,
    pub cap: Duration,
}

impl RetryPolicy {
    /// Full-jitter exponential backoff for the `n`th retry (0-based).
    pub fn backoff(&self, n: u32) -> Duration {
        let exp = self.base.saturating_mul(1u32 << n.min(16)).min(self.cap);
        let jitter = random_unit();
        exp.mul_f64(0.5 + jitter / 2.0)
    }
}

/// Waits `wait` before a request is tried again, giving way to a halt.
async fn pause(req: &Request, wait: Duration) {
    let until = tokio::time::Instant::now() + wait;
    while !req.halted() && tokio::time::Instant::now() < until {
        tokio::time::sleep_until(until.min(tokio::time::Instant::now() + HALT_CHECK)).await;
    }
}

/// A cheap random number in [0, 1) for jitter; not for secrets.
pub(crate) fn random_unit() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0));
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

const NEGOTIATION_TTL: Duration = Duration::from_secs(15 * 60);
pub(crate) const MAX_RESPONSE_BODY: usize = 16 * 1024 * 1024;

/// What negotiation found for one bucket, and when.
type NegotiatedSlot = tokio::sync::Mutex<Option<(Signature, Instant)>>;

pub struct Client {
    config: ClientConfig,
    credentials: RwLock<Credentials>,
    http: reqwest::Client,
    retry: RetryPolicy,
    /// Per bucket: the protocol it speaks and when that was asked. Each
    /// bucket has its own lock, so that a slow negotiation holds up only
    /// the uploads to its bucket.
    negotiated: Mutex<HashMap<String, Arc<NegotiatedSlot>>>,
    /// At most `max_connections` requests of this client at once, whatever
    /// the uploads' TaskNum add up to.
    connections: tokio::sync::Semaphore,
    /// Part bodies over plain HTTP go out with sendfile (Linux), on the
    /// process's kept connections (`sendfile::Pool::shared`).
    #[cfg(target_os = "linux")]
    sendfile: Option<crate::sendfile::Pool>,
    /// The proxy's host and port, which a connect failure names when
    /// requests go through one (never its credentials).
    proxy_at: Option<(String, u16)>,
    /// Seconds the server's clock is ahead of this machine's (behind when
    /// negative), learnt from a `RequestTimeTooSkewed` answer's `Date`; every
    /// request is dated by it.
    clock_offset: std::sync::atomic::AtomicI64,
}

/// Host and port of a proxy URL; a URL without a scheme is an `http://` one,
/// as the HTTP client reads it.
fn proxy_address(proxy: &str) -> Option<(String, u16)> {
    let url = reqwest::Url::parse(proxy)
        .ok()
        .filter(|u| u.host_str().is_some())
        .or_else(|| reqwest::Url::parse(&format!("http://{proxy}")).ok())?;
    Some((url.host_str()?.to_string(), url.port_or_known_default()?))
}

/// rustls's ring suites, those with AES-128-GCM first (browsers and Go
/// order them so): as strong a choice for this use as AES-256-GCM, which
/// rustls lists first, and cheaper, since encrypting the body is most of
/// the CPU an upload over TLS costs. A server that picks by its own order
/// still does.
fn crypto_provider() -> rustls::crypto::CryptoProvider {
    let mut provider = rustls::crypto::ring::default_provider();
    // A stable sort: the order within each group stays rustls's.
    provider.cipher_suites.sort_by_key(|s| !AES_128_GCM.contains(&s.suite()));
    provider
}

/// The suites offered first, TLS 1.3's before TLS 1.2's.
const AES_128_GCM: [rustls::CipherSuite; 3] = [
    rustls::CipherSuite::TLS13_AES_128_GCM_SHA256,
    rustls::CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
    rustls::CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
];

/// One connection pool per distinct TLS (and CA file version), proxy and timeout setting (the
/// connect timeout belongs to the pool), and whether it carries small requests only (see
/// `descriptors::small_requests_idle`); shared by all clients.
fn shared_http(config: &ClientConfig, small_requests_only: bool) -> Result<reqwest::Client> {
    type Key = (SslVerify, Option<(u64, Option<SystemTime>)>, Option<String>, Duration, bool);
    static POOLS: OnceLock<Mutex<HashMap<Key, reqwest::Client>>> = OnceLock::new();
    // A CA file replaced since (its size or time changed) is read anew.
    let ca_file = match &config.ssl_verify {
        SslVerify::CaFile(path) => std::fs::metadata(path).ok().map(|m| (m.len(), m.modified().ok())),
        _ => None,
    };
    let key = (config.ssl_verify.clone(), ca_file, config.proxy.clone(), config.timeout, small_requests_only);
    let pools = POOLS.get_or_init(Default::default);
    let mut pools = pools.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(c) = pools.get(&key) {
        return Ok(c.clone());
    }
    let _ = crypto_provider().install_default();
    let mut b = reqwest::Client::builder()
        .http1_only()
        .tcp_nodelay(true)
        .pool_idle_timeout(Duration::from_secs(30))
        // Redirects are followed by `send_with_retries`, signed anew for
        // where they lead, on either transport.
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(config.timeout)
        .no_proxy();
    if small_requests_only {
        b = b.pool_max_idle_per_host(crate::descriptors::small_requests_idle());
    }
    b = match &config.ssl_verify {
        SslVerify::Off => b.tls_danger_accept_invalid_certs(true),
        SslVerify::SystemRoots => b,
        SslVerify::CaFile(path) => {
            let pem = std::fs::read(path).map_err(|e| Error::io("InvalidArgument", "ssl_verify CA file", &e))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| Error::invalid_argument(format!("ssl_verify CA file is not PEM: {e}")))?;
            b.tls_certs_merge(certs)
        }
    };
    if let Some(proxy) = &config.proxy {
        let p = reqwest::Proxy::all(proxy).map_err(|e| Error::invalid_argument(format!("proxy is not valid: {e}")))?;
        b = b.proxy(p);
    }
    let client = b.build().map_err(|e| Error::invalid_argument(format!("cannot create HTTP client: {e}")))?;
    pools.insert(key, client.clone());
    Ok(client)
}

impl Client {
    pub fn new(config: ClientConfig, credentials: Credentials) -> Result<Self> {
        #[cfg(target_os = "linux")]
        let sendfile = (!config.endpoint.secure && config.proxy.is_none() && config.sendfile)
            .then(crate::sendfile::Pool::shared);
        #[cfg(target_os = "linux")]
        let http = shared_http(&config, sendfile.is_some())?;
        #[cfg(not(target_os = "linux"))]
        let http = shared_http(&config, false)?;
        let retry = RetryPolicy { max_retries: config.max_retry_count, base: Duration::from_millis(100), cap: Duration::from_secs(5) };
        let connections = tokio::sync::Semaphore::new(config.max_connections.min(tokio::sync::Semaphore::MAX_PERMITS));
        let proxy_at = config.proxy.as_deref().and_then(proxy_address);
        Ok(Client {
            proxy_at,
            clock_offset: Default::default(),
            config,
            credentials: RwLock::new(credentials),
            http,
            retry,
            negotiated: Default::default(),
            connections,
            #[cfg(target_os = "linux")]
            sendfile,
        })
    }

    /// How long a request may go without moving a byte (`timeout`).
    pub fn timeout(&self) -> Duration {
        self.config.timeout
    }

    /// Swaps the credentials; requests signed from now on use them.
    pub fn refresh(&self, credentials: Credentials) {
        *self.credentials.write().unwrap_or_else(|p| p.into_inner()) = credentials;
    }

    fn credentials(&self) -> Credentials {
        self.credentials.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The protocol to speak to `bucket`, negotiated once per bucket and
    /// kept for a while, as the reference SDK does.
    pub async fn signature_for(&self, bucket: &str) -> Result<Signature> {
        match self.config.signature {
            SignatureMode::Fixed(s) => Ok(s),
            SignatureMode::Negotiate => {
                let slot = self.negotiated.lock().unwrap_or_else(|p| p.into_inner()).entry(bucket.to_string()).or_default().clone();
                let mut known = slot.lock().await;
                if let Some((sig, at)) = *known
                    && at.elapsed() < NEGOTIATION_TTL
                {
                    return Ok(sig);
                }
                match self.negotiate(bucket).await {
                    Ok(sig) => {
                        *known = Some((sig, Instant::now()));
                        Ok(sig)
                    }
                    Err(e) => {
                        // Nothing learnt: the bucket's slot goes unless
                        // another call waits on it, so that names that fail
                        // (a typo, a deleted bucket) do not pile up for the
                        // client's life.
                        drop(known);
                        let mut map = self.negotiated.lock().unwrap_or_else(|p| p.into_inner());
                        if map.get(bucket).is_some_and(|kept| Arc::ptr_eq(kept, &slot)) && Arc::strong_count(&slot) == 2 {
                            map.remove(bucket);
                        }
                        Err(e)
                    }
                }
            }
        }
    }

    /// Asks the bucket which protocol it speaks.
    async fn negotiate(&self, bucket: &str) -> Result<Signature> {
        let req = Request {
            method: "HEAD",
            bucket: bucket.to_string(),
            key: None,
            query: vec![("apiversion".into(), None)],
            headers: vec![],
            body: Body::Empty,
        };
        let resp = self.send_with_retries(&req, None).await?;
        if resp.status == 404 || resp.status >= 500 {
            let mut e = error_from_response(&resp, Signature::Obs);
            // A HEAD answer has no body: name what a 404 on the bucket means.
            if resp.status == 404 && e.service.as_ref().is_some_and(|s| s.code.is_empty()) {
                e.code = "NoSuchBucket".into();
                e.message = "The specified bucket does not exist".into();
            }
            return Err(e);
        }
        let obs = resp.is_success() && resp.header("x-obs-api").is_some_and(|v| v >= "3.0");
        Ok(if obs { Signature::Obs } else { Signature::V2 })
    }

    /// Sends `req` signed for `sig`, retrying transient failures. A response
    /// with an error status is returned as is once retries are spent or when
    /// retrying cannot help; the caller turns it into an error.
    pub async fn send(&self, req: &Request, sig: Signature) -> Result<Response> {
        self.send_with_retries(req, Some(sig)).await
    }

    async fn send_with_retries(&self, req: &Request, sig: Option<Signature>) -> Result<Response> {
        let mut retry = 0;
        // Since when, and how many times in a row, no connection could be
        // opened for want of a file descriptor.
        let mut starved: Option<(Instant, u32)> = None;
        // Where a redirect sent this request (and its retries), if one did.
        let mut redirected: Option<Redirect> = None;
        // Whether this request has set the client's clock by the server's.
        let mut clock_set = false;
        loop {
            if req.halted() {
                return Err(Error::network(Halted.to_string()));
            }
            let outcome = self.send_once(req, sig, redirected.as_ref()).await;
            // A redirect (3xx with a Location), as the reference SDK follows
            // it: the same request, signed anew, to the host, port and scheme
            // it names, counted as a retry.
            if let Ok(resp) = &outcome {
                let secure = redirected.as_ref().map_or(self.config.endpoint.secure, |r| r.secure);
                if let Some(next) = Redirect::from_response(resp, secure) {
                    if req.halted() || retry >= self.retry.max_retries {
                        return outcome;
                    }
                    redirected = Some(next);
                    retry += 1;
                    continue;
                }
            }
            // The server says the request's date is too far from its clock:
            // this machine's clock is wrong. Its `Date` sets the offset every
            // request of this client is dated by from now on, and the request
            // goes again at once, without spending a retry (once a request,
            // so a server whose `Date` does not help still ends it).
            if let Ok(resp) = &outcome
                && !clock_set
                && let Some(offset) = skew_of(resp, sig)
            {
                self.clock_offset.store(offset, std::sync::atomic::Ordering::Relaxed);
                clock_set = true;
                continue;
            }
            // Out of descriptors: most likely held by this process's own
            // requests in flight (many uploads at once under a low `ulimit
            // -n`), which free them as they end. Kept connections it cannot
            // use are closed, and the request waits for a descriptor or a
            // kept connection it can use, without spending a retry, for as
            // long as `timeout` lets a request go without moving.
            match &outcome {
                Err(e) if e.out_of_descriptors => {
                    let (since, times) = starved.get_or_insert((Instant::now(), 0));
                    if since.elapsed() < self.config.timeout && !req.halted() {
                        self.close_idle_connections_but_for(req, redirected.as_ref());
                        let wait = crate::descriptors::wait(*times);
                        *times += 1;
                        pause(req, wait).await;
                        continue;
                    }
                }
                _ => starved = None,
            }
            let again = match &outcome {
                Ok(resp) => is_retryable_status(resp.status) || is_error_in_success(resp) || is_unreadable_completion(req, resp),
                Err(e) => e.retryable,
            };
            if !again || req.halted() || retry >= self.retry.max_retries {
                return outcome;
            }
            pause(req, self.retry.backoff(retry)).await;
            retry += 1;
        }
    }

    /// Now, by the server's clock as far as the client knows it.
    fn now(&self) -> SystemTime {
        let offset = self.clock_offset.load(std::sync::atomic::Ordering::Relaxed);
        let by = Duration::from_secs(offset.unsigned_abs());
        if offset >= 0 { SystemTime::now() + by } else { SystemTime::now() - by }
    }

    /// Closes the kept sendfile connections (of every client) that `req`
    /// cannot use: for a part sent by sendfile, those to other hosts than
    /// the one it goes to (a redirect's, if one sent it elsewhere); for any
    /// other request (which the HTTP client sends), all of them.
    fn close_idle_connections_but_for(&self, req: &Request, redirected: Option<&Redirect>) {
        #[cfg(target_os = "linux")]
        match self.sendfile_destination(req, redirected) {
            Some((host, port)) => crate::sendfile::close_all_idle_except(&host, port),
            None => crate::descriptors::release_kept_connections(),
        }
        #[cfg(not(target_os = "linux"))]
        let _ = (req, redirected);
    }

    /// The host and port `req` goes to by sendfile; `None` when the HTTP
    /// client sends it (no file body, HTTPS, sendfile off).
    #[cfg(target_os = "linux")]
    fn sendfile_destination(&self, req: &Request, redirected: Option<&Redirect>) -> Option<(String, u16)> {
        match (&self.sendfile, &req.body, self.destination(req, redirected)) {
            (Some(_), Body::File(_), (false, host, port)) => Some((host, port)),
            _ => None,
        }
    }

    /// Whether `req` goes over HTTPS, and to which host and port: the
    /// endpoint's, or where a redirect sent it.
    fn destination(&self, req: &Request, redirected: Option<&Redirect>) -> (bool, String, u16) {
        match redirected {
            Some(r) => (r.secure, r.host.clone(), r.port),
            None => (self.config.endpoint.secure, self.host_for(&req.bucket), self.config.endpoint.port),
        }
    }

    /// Refuses a bucket name that would not reach the server as itself:
    /// in the host name (virtual-hosted), one with a character no bucket
    /// name has; in the path (path style, where it is encoded), `.` or
    /// `..`, which URLs drop, or one with a `/`. A custom domain
    /// (`is_cname`) puts no bucket in the URL.
    pub fn check_bucket(&self, bucket: &str) -> Result<()> {
        let ep = &self.config.endpoint;
        if ep.is_cname || bucket.is_empty() {
            Ok(())
        } else if ep.path_style {
            if bucket == "." || bucket == ".." {
                Err(Error::invalid_argument(format!("Bucket {bucket:?} is a '.' or '..' path segment, which URLs drop")))
            } else if bucket.contains('/') {
                Err(Error::invalid_argument(format!("Bucket {bucket:?} has a '/', which would make part of it the key")))
            } else {
                Ok(())
            }
        } else {
            check_host_bucket(bucket)
        }
    }

    fn host_for(&self, bucket: &str) -> String {
        let ep = &self.config.endpoint;
        if ep.path_style || ep.is_cname || bucket.is_empty() { ep.host.clone() } else { format!("{bucket}.{}", ep.host) }
    }

    async fn send_once(&self, req: &Request, sig: Option<Signature>, redirected: Option<&Redirect>) -> Result<Response> {
        // Whatever the bucket came from (the call, a record), a name that
        // would change the URL's host is never signed or sent.
        self.check_bucket(&req.bucket)?;
        let _connection = self.connections.acquire().await.map_err(|_| Error::network("the client is closed"))?;
        let _in_flight = crate::descriptors::connection().await;
        // The upload may have been given up while this waited for a connection.
        if req.halted() {
            return Err(Error::network(Halted.to_string()));
        }
        let ep = &self.config.endpoint;
        let key_path = req.key.as_deref().map(encode_path).unwrap_or_default();
        let bucket_path = if ep.is_cname { String::new() } else { encode_path(&req.bucket) };
        // Path on the wire, and the resource that OBS / V2 sign.
        let (wire_path, resource_path) = if ep.is_cname {
            (format!("/{key_path}"), format!("/{}/{key_path}", ep.host))
        } else if ep.path_style || req.bucket.is_empty() {
            let p = if req.bucket.is_empty() { "/".to_string() } else { format!("/{bucket_path}/{key_path}") };
            (p.clone(), p)
        } else {
            (format!("/{key_path}"), format!("/{bucket_path}/{key_path}"))
        };
        let encoded_query: Vec<String> = req
            .query
            .iter()
            .map(|(k, v)| match v {
                Some(v) => format!("{}={}", encode_path(k), encode_path(v)),
                None => encode_path(k),
            })
            .collect();
        let (secure, host, port) = self.destination(req, redirected);
        let default_port = if secure { 443 } else { 80 };
        let host_header = if port == default_port { host.clone() } else { format!("{host}:{port}") };
        let scheme = if secure { "https" } else { "http" };
        // The request target: path and query as they go on the wire.
        let mut target = wire_path.clone();
        if !encoded_query.is_empty() {
            target.push('?');
            target.push_str(&encoded_query.join("&"));
        }
        let url = format!("{scheme}://{host}:{port}{target}");

        let now = self.now();
        let mut headers: Vec<(String, String)> = req.headers.clone();
        headers.push(("Date".into(), httpdate::fmt_http_date(now)));
        headers.push(("Host".into(), host_header));
        let body_len = req.body.len();
        // POST and PUT always say their length, 0 included (the initiate is
        // an empty POST): some front ends refuse a POST without one (411),
        // and the reference SDK sends it too.
        if req.method == "POST" || req.method == "PUT" || !matches!(req.body, Body::Empty) {
            headers.push(("Content-Length".into(), body_len.to_string()));
        }
        let creds = self.credentials();
        if let Some(sig) = sig
            && !creds.access_key.is_empty()
            && !creds.secret_key.is_empty()
        {
            if let Some(token) = &creds.security_token {
                headers.push((format!("{}security-token", sig.header_prefix()), token.clone()));
            }
            let authorization = if sig == Signature::V4 {
                let amz_date = amz_date(now);
                headers.push(("x-amz-content-sha256".into(), sign::UNSIGNED_PAYLOAD.into()));
                headers.push(("x-amz-date".into(), amz_date.clone()));
                let input = V4Input {
                    method: req.method,
                    wire_path: &wire_path,
                    encoded_query: &encoded_query,
                    headers: &headers,
                    amz_date: &amz_date,
                    region: &self.config.region,
                };
                sign::authorization_v4(&creds.access_key, &creds.secret_key, &input)
            } else {
                let input = SignInput { method: req.method, resource_path: &resource_path, query: &req.query, headers: &headers };
                sign::authorization(sig, &creds.access_key, &creds.secret_key, &input)
            };
            headers.push(("Authorization".into(), authorization));
        }
        headers.push(("User-Agent".into(), self.config.user_agent.clone()));

        let total = match &req.body {
            Body::File(range) => range.sent.clone(),
            _ => None,
        };
        let attempt = Arc::new(Attempt::new(total));
        let to = Target { url: &url, target: &target, host: &host, port, secure };
        let result = self.send_prepared(req, &to, &headers, &attempt).await;
        // Bytes the server did not take (an error, or a 200 whose body is
        // one, which is sent again) leave the progress count.
        if !matches!(&result, Ok(r) if r.is_success() && !is_error_in_success(r)) {
            attempt.take_back();
        }
        result
    }

    /// Sends a signed request: a file body over plain HTTP with sendfile
    /// where it can, everything else through reqwest.
    async fn send_prepared(&self, req: &Request, to: &Target<'_>, headers: &[(String, String)], attempt: &Arc<Attempt>) -> Result<Response> {
        // Sendfile carries plain HTTP only (a redirect may lead to HTTPS).
        #[cfg(target_os = "linux")]
        if let (Some(pool), Body::File(range), false) = (&self.sendfile, &req.body, to.secure)
            && let Some(result) = self.put_with_sendfile(pool, req.method, to, headers, range, attempt).await
        {
            return result;
        }

        let method = reqwest::Method::from_bytes(req.method.as_bytes()).expect("static method names are valid");
        let mut builder = self.http.request(method, to.url);
        for (k, v) in headers {
            builder = builder.header(k.as_str(), v.as_str());
        }
        let activity = Arc::new(Activity::new());
        let read_failure: Arc<Mutex<Option<std::io::Error>>> = Default::default();
        builder = match &req.body {
            Body::Empty => builder,
            Body::Bytes(b) => builder.body(b.clone()),
            Body::File(range) => builder.body(reqwest::Body::wrap_stream(file_stream(
                range.clone(),
                activity.clone(),
                attempt.clone(),
                read_failure.clone(),
            ))),
        };
        let request = builder.build().map_err(|e| Error::invalid_argument(format!("request cannot be built: {e}")))?;

        self.execute(request, &activity).await.map_err(|e| {
            match read_failure.lock().unwrap_or_else(|p| p.into_inner()).take() {
                Some(io) => file_read_error(&io),
                None => e,
            }
        })
    }

    /// A request with a file body, sent with sendfile on a connection of
    /// our own. `None` when sendfile refuses the file: the caller sends it
    /// the buffered way.
    #[cfg(target_os = "linux")]
    #[allow(clippy::too_many_arguments)]
    async fn put_with_sendfile(
        &self,
        pool: &crate::sendfile::Pool,
        method: &str,
        to: &Target<'_>,
        headers: &[(String, String)],
        range: &FileRange,
        attempt: &Arc<Attempt>,
    ) -> Option<Result<Response>> {
        use crate::sendfile::Failure;
        let (host, port) = (to.host, to.port);
        let mut head = format!("{method} {} HTTP/1.1\r\n", to.target);
        for (k, v) in headers {
            if v.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
                return Some(Err(Error::invalid_argument(format!("request cannot be built: header {k} holds a line break"))));
            }
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        let activity = Arc::new(Activity::new());
        let exchange = async {
            let put = crate::sendfile::Put { host, port, head: head.as_bytes(), range, activity: &activity, attempt };
            match pool.put(&put).await {
                Ok(resp) => Ok(Some(resp)),
                Err(Failure::Unsupported) => Ok(None),
                Err(Failure::Connect(e)) => Err(connect_error(&e, host, port)),
                Err(Failure::Network(e) | Failure::Stale(e)) => Err(io_network_error(&e, host)),
                Err(Failure::File(e)) => Err(file_read_error(&e)),
            }
        };
        self.watched(exchange, &activity, host).await.transpose()
    }

    /// Runs `fut`; fails when neither side moves a byte for `timeout`.
    async fn watched<T>(&self, fut: impl Future<Output = Result<T>>, activity: &Activity, host: &str) -> Result<T> {
        let timeout = self.config.timeout;
        tokio::pin!(fut);
        loop {
            let deadline = activity.last() + timeout;
            tokio::select! {
                r = &mut fut => return r,
                _ = tokio::time::sleep_until(deadline.into()) => {
                    if activity.last() + timeout <= Instant::now() {
                        return Err(timeout_error(host));
                    }
                }
            }
        }
    }

    /// Runs the request; fails when neither side moves a byte for `timeout`.
    async fn execute(&self, request: reqwest::Request, activity: &Activity) -> Result<Response> {
        let timeout = self.config.timeout;
        let url_host = request.url().host_str().unwrap_or_default().to_string();
        let port = request.url().port_or_known_default().unwrap_or_default();
        let fut = async {
            self.http.execute(request).await.map_err(|e| match &self.proxy_at {
                // Through a proxy, the connection made is the proxy's; a TLS
                // failure in the tunnel is the endpoint's, though.
                Some((proxy_host, proxy_port)) if e.is_connect() && !is_tls_failure(&e) => {
                    let mut err = network_error(&e, proxy_host, *proxy_port);
                    err.message = format!("{} (the proxy)", err.message);
                    err
                }
                _ => network_error(&e, &url_host, port),
            })
        };
        let resp = self.watched(fut, activity, &url_host).await?;
        let status = resp.status().as_u16();
        let headers = resp
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
            .collect();
        let mut body = Vec::new();
        let mut stream = resp.bytes_stream();
        loop {
            let chunk = tokio::time::timeout(timeout, stream.next()).await.map_err(|_| timeout_error(&url_host))?;
            match chunk {
                None => break,
                Some(Ok(c)) => {
                    if body.len() + c.len() > MAX_RESPONSE_BODY {
                        return Err(Error::network("response body is larger than expected"));
                    }
                    body.extend_from_slice(&c);
                }
                Some(Err(e)) => return Err(network_error(&e, &url_host, port)),
            }
        }
        Ok(Response { status, headers, body: Bytes::from(body) })
    }
}

/// Where one attempt of a request goes.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))] // sendfile reads the rest
struct Target<'a> {
    url: &'a str,
    /// Path and query as they go on the wire.
    target: &'a str,
    host: &'a str,
    port: u16,
    secure: bool,
}

/// Where a redirect sends a request: the host, port and scheme of its
/// Location. The path stays the request's own, as with the reference SDK.
#[derive(Debug, Clone, PartialEq)]
struct Redirect {
    secure: bool,
    host: String,
    port: u16,
}

impl Redirect {
    /// The redirect `resp` asks for, if it is one that is followed: a 3xx
    /// (but 304) with an absolute http(s) Location. From HTTPS, never to
    /// plain HTTP: the request's signature and token would go in the clear.
    fn from_response(resp: &Response, from_secure: bool) -> Option<Redirect> {
        if !(300..400).contains(&resp.status) || resp.status == 304 {
            return None;
        }
        let url = reqwest::Url::parse(resp.header("location")?.trim()).ok()?;
        let secure = match url.scheme() {
            "https" => true,
            "http" if !from_secure => false,
            _ => return None,
        };
        let host = url.host_str().filter(|h| !h.is_empty())?.to_string();
        let port = url.port_or_known_default()?;
        Some(Redirect { secure, host, port })
    }
}

/// The last moment a request moved bytes, for the idle watchdog.
pub(crate) struct Activity {
    start: Instant,
    millis: AtomicU64,
}

impl Activity {
    pub(crate) fn new() -> Self {
        Activity { start: Instant::now(), millis: AtomicU64::new(0) }
    }
    pub(crate) fn touch(&self) {
        self.millis.store(self.start.elapsed().as_millis() as u64, Ordering::Relaxed);
    }
    fn last(&self) -> Instant {
        self.start + Duration::from_millis(self.millis.load(Ordering::Relaxed))
    }
}

/// A body goes to the HTTP client in pieces: the idle watchdog learns that
/// bytes move only when the client takes the next one, and the client
/// queues at most 16 pieces (and about 400 KiB) before it writes; over TLS,
/// rustls holds up to 64 KiB more, unseen. With whole 256 KiB chunks a slow
/// link went quiet for a chunk's worth between signs of life, and some
/// 650 KiB went out after the last: at 200 KB/s that outlasted a 3 s
/// `timeout` the official SDK meets. Now a sign of life comes every `PIECE`
/// (a chunk read, 64 KiB as the official SDK's reads); the last `TAIL` bytes go
/// in `TAIL_SLICE` pieces, so that only small pieces are queued when the end
/// nears (`TAIL` outlasts the 400 KiB queue), and the last `END` bytes in
/// `END_SLICE` ones, so that at most 15 KiB wait in the queue once the last
/// piece is taken.
const PIECE: usize = buffer::CHUNK;
const TAIL: u64 = 576 * 1024;
const TAIL_SLICE: usize = 8 * 1024;
const END: u64 = 16 * 1024;
const END_SLICE: usize = 1024;

/// The size of the next piece when `left` bytes of the body (this piece's
/// included) are yet to go.
fn piece_len(left: u64) -> usize {
    if left <= END {
        END_SLICE
    } else if left <= TAIL {
        TAIL_SLICE.min((left - END) as usize)
    } else {
        PIECE.min((left - TAIL) as usize)
    }
}

/// Where a body stream is: the next file offset to read, the end, bytes
/// read but not yet handed out, and whether reads from the page cache in
/// place may work here (a filesystem that refuses them once is not asked
/// again).
struct StreamState {
    pos: u64,
    end: u64,
    pending: Bytes,
    in_place: bool,
}

/// The file range as a stream of chunks, read off the async threads.
fn file_stream(
    range: FileRange,
    activity: Arc<Activity>,
    attempt: Arc<Attempt>,
    failure: Arc<Mutex<Option<std::io::Error>>>,
) -> impl futures_util::Stream<Item = std::io::Result<Bytes>> + Send + 'static {
    let state = StreamState { pos: range.offset, end: range.offset + range.len, pending: Bytes::new(), in_place: true };
    futures_util::stream::unfold(state, move |mut st| {
        let file = range.file.clone();
        let activity = activity.clone();
        let attempt = attempt.clone();
        let failure = failure.clone();
        let halted = range.halted();
        async move {
            if st.pending.is_empty() && st.pos >= st.end {
                return None;
            }
            if halted {
                st.pos = st.end;
                st.pending = Bytes::new();
                return Some((Err(halted_error()), st));
            }
            if st.pending.is_empty() {
                match read_chunk(&file, st.pos, st.end, &mut st.in_place).await {
                    Ok(chunk) => {
                        st.pos += chunk.len() as u64;
                        st.pending = chunk;
                    }
                    Err(e) => {
                        let copy = std::io::Error::new(e.kind(), e.to_string());
                        *failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                        st.pos = st.end;
                        return Some((Err(copy), st));
                    }
                }
            }
            // Bytes of the body not handed out yet, this piece's included.
            let left = st.end - st.pos + st.pending.len() as u64;
            let take = piece_len(left).min(st.pending.len());
            let piece = st.pending.split_to(take);
            activity.touch();
            attempt.add(piece.len() as u64);
            Some((Ok(piece), st))
        }
    })
}

/// Reads the next chunk of the range at `pos` (up to `buffer::CHUNK`
/// bytes): in place when the page cache holds it, the rest on the blocking
/// pool.
async fn read_chunk(file: &Arc<std::fs::File>, pos: u64, end: u64, in_place: &mut bool) -> std::io::Result<Bytes> {
    let want = ((end - pos) as usize).min(buffer::CHUNK);
    let mut buf = buffer::take();
    let cached = match in_place.then(|| read_cached_at(file, &mut buf[..want], pos)).flatten() {
        Some(n) => n,
        None => {
            *in_place = false;
            0
        }
    };
    if cached == want {
        return Ok(buffer::freeze(buf, want));
    }
    let rest = pos + cached as u64;
    let file = file.clone();
    let read = tokio::task::spawn_blocking(move || {
        read_exact_at(&file, &mut buf[cached..want], rest).map(|()| buffer::freeze(buf, want))
    })
    .await;
    match read {
        Ok(r) => r,
        Err(e) => Err(std::io::Error::other(e.to_string())),
    }
}

/// The bytes one attempt has added to its upload's running count (the
/// progress figure). A failed attempt takes them back, once; a body stream
/// that the HTTP client still holds after that adds nothing more, so the
/// count never keeps bytes that a retry will send again.
pub(crate) struct Attempt {
    counted: AtomicU64,
    total: Option<Arc<AtomicU64>>,
}

/// `counted` once the attempt's bytes were taken back.
const TAKEN_BACK: u64 = u64::MAX;

impl Attempt {
    pub(crate) fn new(total: Option<Arc<AtomicU64>>) -> Attempt {
        Attempt { counted: AtomicU64::new(0), total }
    }

    /// Counts `n` more bytes handed to the socket.
    pub(crate) fn add(&self, n: u64) {
        // Added to the total first and removed again if the attempt is
        // over, so the total never dips below what other parts have sent.
        if let Some(total) = &self.total {
            total.fetch_add(n, Ordering::AcqRel);
        }
        let counted = self.counted.fetch_update(Ordering::AcqRel, Ordering::Acquire, |c| (c != TAKEN_BACK).then(|| c + n));
        if counted.is_err()
            && let Some(total) = &self.total
        {
            total.fetch_sub(n, Ordering::AcqRel);
        }
    }

    /// Bytes counted so far (0 once taken back).
    #[cfg(test)]
    pub(crate) fn counted(&self) -> u64 {
        match self.counted.load(Ordering::Acquire) {
            TAKEN_BACK => 0,
            n => n,
        }
    }

    /// Removes this attempt's bytes from the total; later `add`s do nothing.
    pub(crate) fn take_back(&self) {
        let counted = self.counted.swap(TAKEN_BACK, Ordering::AcqRel);
        if counted != TAKEN_BACK
            && let Some(total) = &self.total
        {
            total.fetch_sub(counted, Ordering::AcqRel);
        }
    }
}

/// The error of a file that ends before the part being sent from it.
pub(crate) fn file_got_shorter() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "the file became shorter while it was being uploaded")
}

/// A part's bytes could not be read from the file.
fn file_read_error(e: &std::io::Error) -> Error {
    Error::io("FileReadError", "reading the file to upload failed", e)
}

/// Fills `buf` from the file at `offset`; a file that ends early is an error.
pub(crate) fn read_exact_at(file: &std::fs::File, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        let n = match read_at(file, &mut buf[done..], offset + done as u64) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            other => other?,
        };
        if n == 0 {
            return Err(file_got_shorter());
        }
        done += n;
    }
    Ok(())
}

/// Fills `buf` from the file at `offset` with what the page cache already
/// holds, on the calling thread: preadv2 with `RWF_NOWAIT` does not wait for
/// the file's data to come from a disk or a network mount, so this is fit
/// for a runtime worker and spares the hand-off to the blocking pool (a
/// thread wake-up and a context switch per chunk). Gives the bytes filled
/// from the start of `buf`: it stops where the data would have to be waited
/// for, at the end of the file, or at an error (the caller reads the rest on
/// the blocking pool, which reports any error). None when the kernel or the
/// filesystem does not take the flag (tmpfs, network filesystems, kernels
/// before 4.14).
#[cfg(target_os = "linux")]
fn read_cached_at(file: &std::fs::File, buf: &mut [u8], offset: u64) -> Option<usize> {
    use std::os::fd::AsRawFd;
    let mut done = 0;
    while done < buf.len() {
        let rest = &mut buf[done..];
        let iov = libc::iovec { iov_base: rest.as_mut_ptr().cast(), iov_len: rest.len() };
        let Ok(at) = libc::off_t::try_from(offset + done as u64) else { break };
        // SAFETY: one iovec over `rest`, which is valid for writes of its
        // length for the call; the descriptor is open (borrowed from `file`).
        let n = unsafe { libc::preadv2(file.as_raw_fd(), &iov, 1, at, libc::RWF_NOWAIT) };
        if n > 0 {
            done += n as usize;
            continue;
        }
        let unsupported = n < 0
            && matches!(std::io::Error::last_os_error().raw_os_error(), Some(libc::EOPNOTSUPP | libc::ENOSYS | libc::EINVAL));
        if unsupported && done == 0 {
            return None;
        }
        break;
    }
    Some(done)
}

#[cfg(not(target_os = "linux"))]
fn read_cached_at(_file: &std::fs::File, _buf: &mut [u8], _offset: u64) -> Option<usize> {
    None
}

#[cfg(unix)]
fn read_at(file: &std::fs::File, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
    std::os::unix::fs::FileExt::read_at(file, buf, offset)
}

#[cfg(windows)]
fn read_at(file: &std::fs::File, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
    std::os::windows::fs::FileExt::seek_read(file, buf, offset)
}

fn amz_date(t: SystemTime) -> String {
    // httpdate gives "Tue, 24 Nov 2026 21:25:48 GMT"; V4 wants 20261124T212548Z.
    let secs = t.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days as i64);
    format!("{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z", rem / 3600, rem / 60 % 60, rem % 60)
}

/// Days since 1970-01-01 to a proleptic Gregorian date (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

pub fn is_retryable_status(status: u16) -> bool {
    status >= 500 || status == 429 || status == 408
}

/// Whether `resp` is a 200 to a CompleteMultipartUpload (a POST to an
/// upload) whose body says nothing readable: not XML (say, compressed
/// without being asked to be). Whether the object was made is unknown, so
/// the request is sent again, as for a lost answer: the upload answers
/// again, or is found gone (completed) and the object is looked at. An
/// empty body is taken as it is, as the reference SDK takes it.
pub fn is_unreadable_completion(req: &Request, resp: &Response) -> bool {
    req.method == "POST"
        && req.query.iter().any(|(k, _)| k == "uploadId")
        && resp.status == 200
        && resp.body.iter().any(|b| !b.is_ascii_whitespace())
        && xml::parse(&resp.body).is_none()
}

/// A 200 whose body is an `<Error>`: S3 answers a CompleteMultipartUpload
/// so when it fails after the status went out (an InternalError, as a rule),
/// and the request may be sent again as after a 500.
pub fn is_error_in_success(resp: &Response) -> bool {
    // A UTF-8 byte order mark may come first, as in any XML document.
    let body = resp.body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&resp.body);
    resp.status == 200
        && body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'<')
        && xml::parse(&resp.body).is_some_and(|root| root.name == "Error")
}

/// For a `RequestTimeTooSkewed` refusal of a signed request: how many
/// seconds the server's clock (its `Date`) is ahead of this machine's. A
/// `Date` outside 2020 to 2200 is not believed: dates by it could not be
/// written (HTTP dates end at 9999) or make no sense, whoever sent it.
fn skew_of(resp: &Response, sig: Option<Signature>) -> Option<i64> {
    const PLAUSIBLE: std::ops::Range<i64> = 1_577_836_800..7_258_118_400; // 2020-01-01 .. 2200-01-01
    if resp.status != 403 || error_from_response(resp, sig?).service?.code != "RequestTimeTooSkewed" {
        return None;
    }
    let secs = |t: SystemTime| t.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
    let server = secs(httpdate::parse_http_date(resp.header("date")?).ok()?);
    PLAUSIBLE.contains(&server).then(|| server - secs(SystemTime::now()))
}

/// Reads the OBS/S3 error of a failed answer: the XML `<Error>` body, else
/// the `x-obs-error-*` headers (HEAD answers carry no body).
pub fn error_from_response(resp: &Response, sig: Signature) -> Error {
    let prefix = sig.header_prefix();
    let h = |name: &str| resp.header(&format!("{prefix}{name}")).unwrap_or_default().to_string();
    let mut d = crate::error::ServiceDetails {
        status: resp.status,
        code: h("error-code"),
        message: h("error-message"),
        request_id: h("request-id"),
        host_id: String::new(),
        id2: h("id2"),
        indicator: resp.header("x-reserved-indicator").unwrap_or_default().to_string(),
    };
    if let Some(root) = xml::parse(&resp.body)
        && root.name == "Error"
    {
        d.code = root.text_of("Code").unwrap_or_default().to_string();
        d.message = root.text_of("Message").unwrap_or_default().to_string();
        d.host_id = root.text_of("HostId").unwrap_or_default().to_string();
        if let Some(r) = root.text_of("RequestId").filter(|r| !r.is_empty()) {
            d.request_id = r.to_string();
        }
    }
    Error::service(d)
}

/// A transport failure, worded as Node words it (`connect ECONNREFUSED
/// 127.0.0.1:9`), so messages read as the reference SDK's did.
/// `e` and the errors behind it, outermost first.
fn error_chain(e: &reqwest::Error) -> impl Iterator<Item = &(dyn std::error::Error + 'static)> {
    std::iter::successors(Some(e as &(dyn std::error::Error + 'static)), |s| s.source())
}

fn network_error(e: &reqwest::Error, host: &str, port: u16) -> Error {
    let io_kind = error_chain(e).filter_map(|s| s.downcast_ref::<std::io::Error>()).last().map(std::io::Error::kind);
    let innermost = error_chain(e).last().map_or_else(|| e.to_string(), ToString::to_string);
    let message = match io_kind.and_then(|k| node_wording(k, host, port)) {
        Some(m) => m,
        None if e.is_connect() => format!("connect failed {host}:{port}: {innermost}"),
        None => innermost,
    };
    let mut err = Error::network(message);
    if e.is_timeout() {
        err.code = "Timeout".into();
    }
    err.out_of_descriptors = error_chain(e).filter_map(|s| s.downcast_ref::<std::io::Error>()).any(crate::descriptors::exhausted);
    err
}

/// Whether a rustls error is behind `e` (a certificate refused, a handshake
/// that failed), directly or inside an I/O error.
fn is_tls_failure(e: &reqwest::Error) -> bool {
    error_chain(e).any(|s| {
        s.is::<rustls::Error>() || s.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()).is_some_and(|i| i.is::<rustls::Error>())
    })
}

/// How Node words a socket failure of this kind, where it has a word for it.
fn node_wording(kind: std::io::ErrorKind, host: &str, port: u16) -> Option<String> {
    use std::io::ErrorKind as K;
    match kind {
        K::ConnectionRefused => Some(format!("connect ECONNREFUSED {host}:{port}")),
        K::ConnectionReset | K::BrokenPipe | K::UnexpectedEof => Some("socket hang up".to_string()),
        K::TimedOut => Some(format!("connect ETIMEDOUT {host}")),
        _ => None,
    }
}

#[cfg(target_os = "linux")]
fn connect_error(e: &std::io::Error, host: &str, port: u16) -> Error {
    let mut err = Error::network(node_wording(e.kind(), host, port).unwrap_or_else(|| format!("connect failed {host}:{port}: {e}")));
    err.out_of_descriptors = crate::descriptors::exhausted(e);
    err
}

#[cfg(target_os = "linux")]
fn io_network_error(e: &std::io::Error, host: &str) -> Error {
    Error::network(node_wording(e.kind(), host, 0).unwrap_or_else(|| e.to_string()))
}

fn timeout_error(host: &str) -> Error {
    let mut e = Error::network(format!("connect ETIMEDOUT {host}"));
    e.code = "Timeout".into();
    e
}

/// Reads a request's head (through the empty line) from a test server's
/// connection, a byte at a time so that none of the body is taken.
#[cfg(test)]
pub(crate) fn read_request_head(conn: &mut impl std::io::Read) -> std::io::Result<Vec<u8>> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        conn.read_exact(&mut byte)?;
        head.push(byte[0]);
    }
    Ok(head)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `data` in a new file, opened for reading (the folder goes with the first value).
    fn file_of(data: &[u8]) -> (tempfile::TempDir, Arc<std::fs::File>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, data).unwrap();
        let file = Arc::new(std::fs::File::open(&path).unwrap());
        (dir, file)
    }

    fn client(server: &str, tweak: impl FnOnce(&mut crate::config::ClientOptions)) -> Client {
        let mut o = crate::config::ClientOptions { server: Some(server.into()), max_retry_count: Some(0), ..Default::default() };
        tweak(&mut o);
        let credentials = Credentials { access_key: "ak".into(), secret_key: "sk".into(), security_token: None };
        Client::new(crate::config::ClientConfig::from_options(&o).unwrap(), credentials).unwrap()
    }

    #[test]
    fn bucket_names_are_checked_where_the_url_puts_them() {
        let hosted = client("http://obs.example.com", |_| {});
        let path = client("http://127.0.0.1:9000", |_| {});
        let cname = client("http://cdn.example.com", |o| o.is_cname = Some(true));
        for c in [&hosted, &path, &cname] {
            assert!(c.check_bucket("bucket-1").is_ok());
        }
        // In the host name: only what a bucket name has.
        assert_eq!(hosted.check_bucket("evil.example/x").unwrap_err().code, "InvalidArgument");
        // In the path (encoded there): anything but a dot segment or a '/'.
        assert!(path.check_bucket("tenant:bucket").is_ok());
        assert!(path.check_bucket("a b?c#d").is_ok());
        for dots in [".", "..", "a/b", "/"] {
            assert_eq!(path.check_bucket(dots).unwrap_err().code, "InvalidArgument");
        }
        // A custom domain puts no bucket in the URL.
        assert!(cname.check_bucket("cdn.example.com:8443").is_ok());
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn short_of_descriptors_a_part_keeps_the_connections_to_where_it_goes() {
        let (_dir, file) = file_of(b"part");
        let request = |body| Request { method: "PUT", bucket: "b".into(), key: Some("k".into()), query: vec![], headers: vec![], body };
        let part = request(Body::File(FileRange { file, offset: 0, len: 4, sent: None, halt: None }));
        let small = request(Body::Bytes(Bytes::from_static(b"<x/>")));
        let c = client("http://obs.a.example:8080", |_| {});
        let away = |secure, host: &str, port| Redirect { secure, host: host.into(), port };
        // To the endpoint, or where a redirect sent it: those connections stay.
        assert_eq!(c.sendfile_destination(&part, None), Some(("b.obs.a.example".into(), 8080)));
        assert_eq!(c.sendfile_destination(&part, Some(&away(false, "obs.b.example", 9000))), Some(("obs.b.example".into(), 9000)));
        // The HTTP client sends it: no kept sendfile connection is any use.
        assert_eq!(c.sendfile_destination(&part, Some(&away(true, "obs.b.example", 443))), None);
        assert_eq!(c.sendfile_destination(&small, None), None);
        assert_eq!(client("https://obs.a.example", |_| {}).sendfile_destination(&part, None), None);
    }

    #[tokio::test]
    async fn a_bucket_whose_negotiation_fails_leaves_nothing_behind() {
        // Nothing listens on port 1: the negotiation fails at once.
        let c = client("http://localhost:1", |_| {});
        assert!(c.signature_for("typo-bucket").await.is_err());
        assert!(c.negotiated.lock().unwrap().is_empty(), "a failed negotiation keeps no slot");
    }

    #[test]
    fn bucket_names_that_would_change_the_url_are_refused() {
        for ok in ["bucketname", "my.bucket-1", "Old_Bucket", "a", ""] {
            assert!(check_host_bucket(ok).is_ok(), "{ok:?}");
        }
        for bad in ["evil.example/x", "a@evil.example", "evil.example:8443", "evil.example#", "a?b", "a\\b", "a b", "a\r\nb", "[::1]", "b\u{fc}cket", "a%2fb"] {
            let e = check_host_bucket(bad).unwrap_err();
            assert_eq!(e.code, "InvalidArgument", "{bad:?}");
        }
    }

    /// Whether the filesystem of `file` takes `RWF_NOWAIT` (tmpfs does not).
    #[cfg(target_os = "linux")]
    fn nowait_supported(file: &std::fs::File) -> bool {
        use std::os::fd::AsRawFd;
        let mut byte = 0u8;
        let iov = libc::iovec { iov_base: (&raw mut byte).cast(), iov_len: 1 };
        // SAFETY: one iovec over a local byte; the descriptor is open.
        let n = unsafe { libc::preadv2(file.as_raw_fd(), &iov, 1, 0, libc::RWF_NOWAIT) };
        n >= 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::EOPNOTSUPP)
    }

    /// Writes `data` to a new file 4 KiB at a time, so that its page cache
    /// holds single pages (a large write can get folios of many pages, which
    /// a partial eviction would leave whole).
    #[cfg(target_os = "linux")]
    fn write_in_pages(path: &std::path::Path, data: &[u8]) -> std::fs::File {
        use std::io::Write;
        let mut f = std::fs::File::create(path).unwrap();
        for page in data.chunks(4096) {
            f.write_all(page).unwrap();
        }
        std::fs::File::open(path).unwrap()
    }

    /// Drops `[offset, offset + len)` of a written-back file from the page cache.
    #[cfg(target_os = "linux")]
    fn evict(file: &std::fs::File, offset: i64, len: i64) {
        use std::os::fd::AsRawFd;
        file.sync_all().unwrap();
        // SAFETY: advice on an open descriptor; no memory involved.
        assert_eq!(unsafe { libc::posix_fadvise(file.as_raw_fd(), offset, len, libc::POSIX_FADV_DONTNEED) }, 0);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn cached_reads_fill_what_the_page_cache_holds() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let file = write_in_pages(&path, &data);
        let mut buf = vec![0u8; 60_000];
        // A descriptor preadv2 cannot read at all (a pipe): nothing filled.
        let (reader, _writer) = std::io::pipe().unwrap();
        let reader = std::fs::File::from(std::os::fd::OwnedFd::from(reader));
        assert_eq!(read_cached_at(&reader, &mut buf[..1], 0), Some(0));
        if !nowait_supported(&file) {
            // tmpfs and the like: the caller is told not to ask again.
            assert_eq!(read_cached_at(&file, &mut buf, 0), None);
            return;
        }
        // Just written, so in the page cache: read in place.
        assert_eq!(read_cached_at(&file, &mut buf, 30_000), Some(60_000));
        assert_eq!(buf, data[30_000..90_000]);
        // Up to the end of the file, then stops.
        buf.fill(0);
        assert_eq!(read_cached_at(&file, &mut buf, 50_000), Some(50_000));
        assert_eq!(buf[..50_000], data[50_000..]);
        assert_eq!(read_cached_at(&file, &mut buf[..1], 100_000), Some(0));
        // Up to the first page that would have to come from the disk.
        evict(&file, 65_536, 0);
        let mut whole = vec![0u8; 100_000];
        let n = read_cached_at(&file, &mut whole, 0).unwrap();
        assert!(n > 0 && n <= 65_536, "{n}");
        assert_eq!(whole[..n], data[..n]);
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn a_body_stream_reads_the_same_bytes_whether_cached_or_not() {
        use futures_util::StreamExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let data: Vec<u8> = (0..(2 * buffer::CHUNK + 12_345) as u32).map(|i| (i % 253) as u8).collect();
        let file = write_in_pages(&path, &data);
        let (start, half) = (1000usize, buffer::CHUNK as i64 / 2);
        // Partly evicted first, while the cache holds the written pages.
        for case in ["first chunk half cached", "cached", "evicted"] {
            match case {
                "first chunk half cached" => {
                    // The first chunk is read partly in place and finished
                    // on the blocking pool, into the same buffer.
                    evict(&file, half, 0);
                    if nowait_supported(&file) {
                        let mut probe = vec![0u8; buffer::CHUNK];
                        let n = read_cached_at(&file, &mut probe, start as u64).unwrap();
                        assert!(n > 0 && n < buffer::CHUNK, "{n}");
                    }
                }
                "evicted" => evict(&file, 0, 0),
                _ => {}
            }
            let range = FileRange { file: Arc::new(file.try_clone().unwrap()), offset: start as u64, len: (data.len() - 2 * start) as u64, sent: None, halt: None };
            let attempt = Arc::new(Attempt::new(None));
            let body = file_stream(range, Arc::new(Activity::new()), attempt, Default::default());
            let chunks: Vec<Bytes> = body.map(|c| c.unwrap()).collect().await;
            assert_eq!(chunks.concat(), data[start..data.len() - start], "{case}");
        }
    }

    /// Pieces of up to `PIECE`, then `TAIL_SLICE` ones for the last `TAIL`
    /// bytes and `END_SLICE` ones for the last `END`, so that the HTTP client
    /// holds little once it has taken the last. A short body is all small
    /// pieces.
    #[tokio::test]
    async fn a_body_ends_in_small_pieces() {
        use futures_util::StreamExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let data: Vec<u8> = (0..(2 * TAIL as usize + 3 * buffer::CHUNK + 777) as u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &data).unwrap();
        let file = Arc::new(std::fs::File::open(&path).unwrap());
        for (offset, len) in [(0usize, data.len()), (3, 1000), (10, TAIL as usize + 5)] {
            let range = FileRange { file: file.clone(), offset: offset as u64, len: len as u64, sent: None, halt: None };
            let body = file_stream(range, Arc::new(Activity::new()), Arc::new(Attempt::new(None)), Default::default());
            let pieces: Vec<Bytes> = body.map(|c| c.unwrap()).collect().await;
            assert_eq!(pieces.concat(), data[offset..offset + len]);
            let mut left = len as u64;
            for p in &pieces {
                if left <= END {
                    assert!(p.len() <= END_SLICE, "{} bytes with {left} left", p.len());
                } else if left <= TAIL {
                    assert!(p.len() <= TAIL_SLICE && left - p.len() as u64 >= END, "{} bytes with {left} left", p.len());
                } else {
                    assert!(p.len() <= PIECE && left - p.len() as u64 >= TAIL, "{} bytes with {left} left", p.len());
                }
                left -= p.len() as u64;
            }
            let count_in = |last: u64| pieces.iter().rev().scan(0u64, |sum, p| (*sum < last.min(len as u64)).then(|| *sum += p.len() as u64)).count() as u64;
            assert!(count_in(TAIL) >= TAIL.min(len as u64) / TAIL_SLICE as u64, "{} pieces in the tail", count_in(TAIL));
            assert!(count_in(END) >= END.min(len as u64) / END_SLICE as u64, "{} pieces at the end", count_in(END));
        }
    }

    #[tokio::test]
    async fn a_body_stream_read_after_its_attempt_failed_counts_nothing() {
        use futures_util::StreamExt;
        let (_dir, file) = file_of(&[7u8; 3 * buffer::CHUNK]);
        // 1000 bytes of other parts are already in the upload's count.
        let total = Arc::new(AtomicU64::new(1000));
        let range = FileRange { file, offset: 0, len: 3 * buffer::CHUNK as u64, sent: Some(total.clone()), halt: None };
        let attempt = Arc::new(Attempt::new(Some(total.clone())));
        let mut body = Box::pin(file_stream(range, Arc::new(Activity::new()), attempt.clone(), Default::default()));
        let first = body.next().await.unwrap().unwrap();
        assert_eq!(total.load(Ordering::Relaxed), 1000 + first.len() as u64);
        attempt.take_back();
        assert_eq!(total.load(Ordering::Relaxed), 1000);
        // The HTTP client may still pull from a stream it holds.
        body.next().await.unwrap().unwrap();
        assert_eq!(total.load(Ordering::Relaxed), 1000, "a chunk read after the take-back is not counted");
        attempt.take_back();
        assert_eq!(total.load(Ordering::Relaxed), 1000, "taking back twice takes nothing more");
        assert_eq!(attempt.counted(), 0);
    }

    #[tokio::test]
    async fn a_halted_body_stream_hands_over_nothing_more() {
        use futures_util::StreamExt;
        let (_dir, file) = file_of(&[7u8; 3 * buffer::CHUNK]);
        let halt = Arc::new(AtomicBool::new(false));
        let range = |len: usize| FileRange { file: file.clone(), offset: 0, len: len as u64, sent: None, halt: Some(halt.clone()) };
        let attempt = Arc::new(Attempt::new(None));
        let mut body = Box::pin(file_stream(range(3 * buffer::CHUNK), Arc::new(Activity::new()), attempt.clone(), Default::default()));
        let first = body.next().await.unwrap().unwrap();
        halt.store(true, Ordering::Release);
        let e = body.next().await.unwrap().unwrap_err();
        assert!(is_halted(&e), "{e}");
        assert!(body.next().await.is_none(), "nothing after the halt");
        assert_eq!(attempt.counted(), first.len() as u64);
        // A body handed over whole before the halt simply ends.
        halt.store(false, Ordering::Release);
        let mut whole = Box::pin(file_stream(range(1000), Arc::new(Activity::new()), Arc::new(Attempt::new(None)), Default::default()));
        let mut got = 0;
        while got < 1000 {
            got += whole.next().await.unwrap().unwrap().len();
        }
        halt.store(true, Ordering::Release);
        assert!(whole.next().await.is_none());
    }

    #[test]
    fn tls_offers_aes_128_gcm_first_and_every_suite_rustls_has() {
        let ours: Vec<_> = crypto_provider().cipher_suites.iter().map(|s| s.suite()).collect();
        assert_eq!(ours[..3], AES_128_GCM);
        let mut all: Vec<_> = rustls::crypto::ring::default_provider().cipher_suites.iter().map(|s| s.suite()).collect();
        let mut sorted = ours.clone();
        all.sort_by_key(|s| u16::from(*s));
        sorted.sort_by_key(|s| u16::from(*s));
        assert_eq!(sorted, all);
    }

    /// A server that reads each request and answers 503; counts them.
    fn always_503() -> (u16, Arc<std::sync::atomic::AtomicUsize>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = seen.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { return };
                let head = read_request_head(&mut conn).unwrap_or_default();
                let text = String::from_utf8_lossy(&head).to_ascii_lowercase();
                let len = text.split("content-length:").nth(1).and_then(|v| v.lines().next()).and_then(|v| v.trim().parse().ok()).unwrap_or(0);
                let mut body = vec![0u8; len];
                let _ = std::io::Read::read_exact(&mut conn, &mut body);
                count.fetch_add(1, Ordering::SeqCst);
                let _ = std::io::Write::write_all(&mut conn, b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            }
        });
        (port, seen)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_halt_during_the_wait_before_a_retry_ends_the_request_without_it() {
        let (port, seen) = always_503();
        let mut c = client(&format!("http://127.0.0.1:{port}"), |_| {});
        // At least a second between tries.
        c.retry = RetryPolicy { max_retries: 3, base: Duration::from_secs(2), cap: Duration::from_secs(2) };
        let (_dir, file) = file_of(&[1u8; 1000]);
        let halt = Arc::new(AtomicBool::new(false));
        let range = FileRange { file, offset: 0, len: 1000, sent: None, halt: Some(halt.clone()) };
        let req = Request { method: "PUT", bucket: "b".into(), key: Some("k".into()), query: vec![], headers: vec![], body: Body::File(range) };
        let halting = async {
            while seen.load(Ordering::SeqCst) == 0 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            halt.store(true, Ordering::Release);
            std::time::Instant::now()
        };
        let (result, halted_at) = tokio::join!(c.send(&req, Signature::V2), halting);
        assert!(result.is_err(), "a halted request ends without an answer");
        assert!(halted_at.elapsed() < Duration::from_millis(700), "the wait gave way to the halt");
        assert_eq!(seen.load(Ordering::SeqCst), 1, "no retry after the halt");
        // Halted before it starts: nothing is sent.
        assert!(c.send(&req, Signature::V2).await.is_err());
        assert_eq!(seen.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn counting_racing_a_take_back_leaves_the_total_exact() {
        for _ in 0..200 {
            let total = Arc::new(AtomicU64::new(0));
            let attempt = Arc::new(Attempt::new(Some(total.clone())));
            let adder = {
                let attempt = attempt.clone();
                std::thread::spawn(move || (0..1000).for_each(|_| attempt.add(1)))
            };
            attempt.take_back();
            adder.join().unwrap();
            assert_eq!(total.load(Ordering::Relaxed), 0);
        }
    }

    #[test]
    fn paths_keep_unreserved_and_slash_only() {
        assert_eq!(encode_path("dir/a b+c?#%ü!*'()"), "dir/a%20b%2Bc%3F%23%25%C3%BC%21%2A%27%28%29");
        assert_eq!(encode_header_value("text/plain; charset=utf-8"), "text/plain; charset=utf-8");
        assert_eq!(encode_header_value("ü\"x"), "%C3%BC%22x");
    }

    #[test]
    fn amz_date_is_utc_basic_format() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_555_548); // 2026-11-24T21:25:48Z
        assert_eq!(amz_date(t), "20261124T212548Z");
        assert_eq!(httpdate::fmt_http_date(t), "Tue, 24 Nov 2026 21:25:48 GMT");
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let p = RetryPolicy { max_retries: 3, base: Duration::from_millis(100), cap: Duration::from_secs(1) };
        for n in 0..20 {
            let d = p.backoff(n);
            assert!(d <= Duration::from_secs(1));
            assert!(d >= Duration::from_millis(50).min(Duration::from_millis(100 << n.min(4)) / 2));
        }
    }

    #[test]
    fn a_request_time_too_skewed_refusal_gives_how_far_the_servers_clock_is_ahead() {
        let hour_ahead = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(3600));
        let answer = |status, code: &str, date: Option<&str>| Response {
            status,
            headers: date.map(|d| ("date".to_string(), d.to_string())).into_iter().collect(),
            body: Bytes::from(format!("<Error><Code>{code}</Code><Message>m</Message></Error>")),
        };
        let skewed = answer(403, "RequestTimeTooSkewed", Some(&hour_ahead));
        let offset = skew_of(&skewed, Some(Signature::V2)).expect("a skew");
        assert!((3598..=3601).contains(&offset), "{offset}");
        // OBS says so in headers on a HEAD.
        let head = Response {
            status: 403,
            headers: vec![("x-obs-error-code".into(), "RequestTimeTooSkewed".into()), ("date".into(), hour_ahead.clone())],
            body: Bytes::new(),
        };
        assert!(skew_of(&head, Some(Signature::Obs)).is_some());
        // Not signed, another refusal, no date, no refusal: nothing learnt.
        assert_eq!(skew_of(&skewed, None), None);
        assert_eq!(skew_of(&answer(403, "AccessDenied", Some(&hour_ahead)), Some(Signature::V2)), None);
        assert_eq!(skew_of(&answer(403, "RequestTimeTooSkewed", None), Some(Signature::V2)), None);
        assert_eq!(skew_of(&answer(200, "RequestTimeTooSkewed", Some(&hour_ahead)), Some(Signature::V2)), None);
        // A date no server could mean is not believed.
        for date in ["Fri, 31 Dec 9999 23:59:59 GMT", "Thu, 01 Jan 1970 00:00:01 GMT"] {
            assert_eq!(skew_of(&answer(403, "RequestTimeTooSkewed", Some(date)), Some(Signature::V2)), None);
        }
    }

    #[test]
    fn a_200_holding_an_error_is_one_with_or_without_a_byte_order_mark() {
        let ok = |body: &'static [u8]| Response { status: 200, headers: vec![], body: Bytes::from_static(body) };
        let error = b"<Error><Code>InternalError</Code><Message>x</Message></Error>";
        assert!(is_error_in_success(&ok(error)));
        assert!(is_error_in_success(&ok(b"\xEF\xBB\xBF\n<Error><Code>InternalError</Code></Error>")));
        assert!(!is_error_in_success(&ok(b"<CompleteMultipartUploadResult><ETag>e</ETag></CompleteMultipartUploadResult>")));
        assert!(!is_error_in_success(&ok(b"")));
        assert!(!is_error_in_success(&Response { status: 500, ..ok(error) }));
    }

    #[test]
    fn redirects_followed_are_3xx_with_an_absolute_location_never_down_to_plain_http() {
        let resp = |status: u16, location: Option<&str>| Response {
            status,
            headers: location.map(|l| vec![("location".to_string(), l.to_string())]).unwrap_or_default(),
            body: Bytes::new(),
        };
        let to = |secure: bool, host: &str, port: u16| Some(Redirect { secure, host: host.to_string(), port });
        assert_eq!(Redirect::from_response(&resp(307, Some("http://obs.b.example:8080/k?x")), false), to(false, "obs.b.example", 8080));
        assert_eq!(Redirect::from_response(&resp(301, Some("https://obs.b.example/k")), false), to(true, "obs.b.example", 443));
        assert_eq!(Redirect::from_response(&resp(302, Some(" http://[::1]/k ")), false), to(false, "[::1]", 80));
        assert_eq!(Redirect::from_response(&resp(308, Some("https://b.example:9443/")), true), to(true, "b.example", 9443));
        // From HTTPS to plain HTTP, relative, another scheme, no Location, not a redirect.
        assert_eq!(Redirect::from_response(&resp(307, Some("http://b.example/k")), true), None);
        assert_eq!(Redirect::from_response(&resp(307, Some("/k?uploads")), false), None);
        assert_eq!(Redirect::from_response(&resp(307, Some("ftp://b.example/k")), false), None);
        assert_eq!(Redirect::from_response(&resp(307, None), false), None);
        assert_eq!(Redirect::from_response(&resp(304, Some("http://b.example/k")), false), None);
        assert_eq!(Redirect::from_response(&resp(200, Some("http://b.example/k")), false), None);
        assert_eq!(Redirect::from_response(&resp(400, Some("http://b.example/k")), false), None);
    }

    #[test]
    fn error_answers_are_read_from_xml_or_headers() {
        let resp = Response {
            status: 404,
            headers: vec![("x-amz-request-id".into(), "hdr-id".into())],
            body: Bytes::from_static(
                b"<?xml version=\"1.0\"?><Error><Code>NoSuchBucket</Code><Message>gone</Message><RequestId>xml-id</RequestId><HostId>h</HostId></Error>",
            ),
        };
        let e = error_from_response(&resp, Signature::V2);
        assert_eq!((e.code.as_str(), e.message.as_str()), ("NoSuchBucket", "gone"));
        let s = e.service.unwrap();
        assert_eq!((s.request_id.as_str(), s.host_id.as_str(), s.status), ("xml-id", "h", 404));
        assert!(!error_from_response(&resp, Signature::V2).retryable);

        let head = Response {
            status: 503,
            headers: vec![("x-obs-error-code".into(), "ServiceUnavailable".into())],
            body: Bytes::new(),
        };
        let e = error_from_response(&head, Signature::Obs);
        assert_eq!(e.code, "ServiceUnavailable");
        assert!(e.retryable);
    }
}
