//! The front: the hyper service every S3 request goes through, in every mode. It
//! turns an absolute-form request target (a client whose HTTP proxy is this server)
//! into the origin form, logs the request, counts its body, stamps the request-id
//! headers, and applies the fault rule that fires on it (error answer, connection
//! reset, delay, hang, dropped response, held response) before or instead of passing
//! it on.
//!
//! Passing on (`dispatch`) is where the protocols differ:
//! - mode obs speaks OBS's protocol itself (see [`crate::obs`]): protocol
//!   negotiation, OBS signatures, `x-obs-*` headers both ways;
//! - a security token, when the keys in force have one, is checked on AWS-signed
//!   requests here (s3s does not check tokens);
//! - ListParts answers are completed with ETags and paged (see [`crate::list_parts`]).

use std::sync::Arc;
use std::time::Duration;

use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::{CONTENT_LENGTH, CONTENT_TYPE, HOST, HeaderValue};
use hyper::{Request, Response, StatusCode};

use crate::backend::{Backend, BoxError};
use crate::faults::{FaultBook, Outcome};
use crate::keys::{FrontVerified, KeyRing, TokenProblem};
use crate::list_parts;
use crate::obs::{self, Dialect, ObsProtocol, Rejection, Verdict};
use crate::request_ids::{RequestIdSource, RequestIds};
use crate::request_target::{decode_path, query_pairs, query_value, to_origin_form};
use crate::s3_port::ConnectionFate;
use crate::s3_xml;
use crate::stats::{CountedBody, RequestLog, RequestRecord, Target};

pub struct Front {
    backend: Backend,
    faults: FaultBook,
    log: RequestLog,
    ids: RequestIdSource,
    keys: Arc<KeyRing>,
    /// Mode obs: the OBS protocol in front of the store.
    obs: Option<ObsProtocol>,
    clock: Clock,
}

/// The server's clock: the machine's, or `offset` seconds off it (`POST /clock`),
/// so that tests can give the client a clock that is wrong by the server's.
#[derive(Default)]
pub struct Clock {
    offset: std::sync::atomic::AtomicI64,
}

/// How far a signed request's date may be from the server's clock, as with OBS and S3.
const MAX_SKEW_SECS: i64 = 15 * 60;

impl Clock {
    pub fn set_offset(&self, secs: i64) {
        self.offset.store(secs, std::sync::atomic::Ordering::Relaxed);
    }

    fn offset(&self) -> i64 {
        self.offset.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Seconds since the epoch, by the server's clock.
    fn now(&self) -> i64 {
        let machine = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        machine + self.offset()
    }

    /// While the clock is off the machine's: the server's time, when a signed
    /// request's date is too far from it. The date is `x-amz-date` (V4's basic
    /// form, or an HTTP date), `x-obs-date`, or `Date`.
    fn too_skewed(&self, headers: &hyper::HeaderMap) -> Option<i64> {
        if self.offset() == 0 || !headers.contains_key(hyper::header::AUTHORIZATION) {
            return None;
        }
        let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let sent = match (text("x-amz-date"), text("x-obs-date"), text("date")) {
            (Some(amz), _, _) => amz_basic_date(amz).or_else(|| http_date(amz)),
            (None, Some(obs), _) => http_date(obs),
            (None, None, Some(date)) => http_date(date),
            _ => None,
        }?;
        let now = self.now();
        ((sent - now).abs() > MAX_SKEW_SECS).then_some(now)
    }
}

fn http_date(text: &str) -> Option<i64> {
    let t = httpdate::parse_http_date(text).ok()?;
    Some(t.duration_since(std::time::UNIX_EPOCH).ok()?.as_secs() as i64)
}

/// `20261206T063000Z` to seconds since the epoch.
fn amz_basic_date(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| text.get(r)?.parse::<i64>().ok();
    let (y, m, d) = (num(0..4)?, num(4..6)?, num(6..8)?);
    let (hh, mm, ss) = (num(9..11)?, num(11..13)?, num(13..15)?);
    // Days from the civil date (H. Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + hh * 3600 + mm * 60 + ss)
}

/// Why the front gave hyper an error instead of a response: hyper then closes the
/// connection without answering, which is the point of these faults.
#[derive(Debug)]
struct ConnectionCut(&'static str);

impl std::fmt::Display for ConnectionCut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for ConnectionCut {}

impl Front {
    pub fn new(backend: Backend, keys: Arc<KeyRing>, obs: Option<ObsProtocol>) -> Self {
        Self {
            backend,
            faults: FaultBook::default(),
            log: RequestLog::default(),
            ids: RequestIdSource::new(),
            keys,
            obs,
            clock: Clock::default(),
        }
    }

    /// The server's clock (`POST /clock`).
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    pub fn backend(&self) -> &Backend {
        &self.backend
    }

    pub fn faults(&self) -> &FaultBook {
        &self.faults
    }

    pub fn log(&self) -> &RequestLog {
        &self.log
    }

    /// The credentials every signature check uses; `POST /credentials` replaces them.
    pub fn keys(&self) -> &KeyRing {
        &self.keys
    }

    pub async fn handle(
        self: Arc<Self>,
        request: Request<Incoming>,
        connection: Arc<ConnectionFate>,
    ) -> Result<Response<s3s::Body>, BoxError> {
        // Both forms are one request from here on: faults, the log and the store all
        // see the origin-form path and query, and the Host the client addressed.
        let request = to_origin_form(request);
        let dialect = self.dialect_of(&request);
        let mut response = self.handle_in(request, connection, dialect).await?;
        if dialect == Dialect::Obs {
            // Every answer to an OBS request, injected faults included, speaks OBS.
            obs::headers_to_obs(response.headers_mut());
        }
        Ok(response)
    }

    fn dialect_of<B>(&self, request: &Request<B>) -> Dialect {
        match &self.obs {
            Some(_)
                if !obs::is_aws_signed(request.headers(), request.uri().query().unwrap_or("")) =>
            {
                Dialect::Obs
            }
            _ => Dialect::S3,
        }
    }

    async fn handle_in(
        self: &Arc<Self>,
        request: Request<Incoming>,
        connection: Arc<ConnectionFate>,
        dialect: Dialect,
    ) -> Result<Response<s3s::Body>, BoxError> {
        let method = request.method().as_str();
        let path = decode_path(request.uri().path());
        let raw_query = request.uri().query().unwrap_or("");
        let picked = self.faults.pick(method, &path, raw_query);
        let host = request
            .headers()
            .get(HOST)
            .map(|h| String::from_utf8_lossy(h.as_bytes()).into_owned())
            .unwrap_or_default();
        let target = Target {
            method,
            path: &path,
            query: raw_query,
            host: &host,
            auth: obs::signed_with(request.headers(), raw_query),
            connection: connection.id(),
        };
        let completes = method == "POST" && query_value(&query_pairs(raw_query), "uploadId").is_some();
        let record = self.log.begin(&target, picked.as_ref().map(|(id, _)| *id));
        let ids = self.ids.next_ids();
        let request = request.map(|body| CountedBody::new(body, record.clone()));

        let Some((_, action)) = picked else {
            // s3s-fs forgets the upload id first and writes the object while it
            // answers: cut short by a client that dies, it would lose both. OBS
            // completes whatever happens to the client; so does this front.
            if completes {
                return self.act_to_the_end(request, &record, &ids, dialect, Duration::ZERO).await;
            }
            return self.forward(request, &record, &ids, dialect).await;
        };
        if let Some(delay) = action.delay {
            tokio::time::sleep(delay).await;
        }
        match action.outcome {
            Outcome::Pass => self.forward(request, &record, &ids, dialect).await,
            Outcome::Error {
                status,
                code,
                message,
                drain_body,
                raw_body,
            } => {
                let (_, mut body) = request.into_parts();
                if drain_body {
                    // A client that vanishes while sending gets nothing; hyper closes.
                    while let Some(frame) = body.frame().await {
                        frame?;
                    }
                }
                let response = match raw_body {
                    Some(text) => text_response(status, text, &ids),
                    None => error_response(status, &code, &message, &ids),
                };
                record.set_status(status.as_u16());
                Ok(response)
            }
            Outcome::Replace { body: text } => {
                self.dispatch_unheard(request, &ids, dialect).await?;
                record.set_status(200);
                Ok(text_response(StatusCode::OK, text, &ids))
            }
            Outcome::Reset { after_bytes } => {
                let (_, mut body) = request.into_parts();
                let mut read = 0u64;
                while read < after_bytes {
                    match body.frame().await {
                        Some(Ok(frame)) => read += frame.data_ref().map_or(0, |d| d.len() as u64),
                        Some(Err(_)) | None => break,
                    }
                }
                connection.reset_on_close();
                Err(Box::new(ConnectionCut("connection reset injected")))
            }
            Outcome::Hang => {
                let (_, mut body) = request.into_parts();
                while let Some(Ok(_)) = body.frame().await {}
                // Held until the client goes away or the S3 port stops: both drop this future.
                std::future::pending::<()>().await;
                Err(Box::new(ConnectionCut("hang ended")))
            }
            Outcome::DropResponse => {
                self.dispatch_unheard(request, &ids, dialect).await?;
                Err(Box::new(ConnectionCut("response dropped")))
            }
            Outcome::RespondAfter { hold } => self.act_to_the_end(request, &record, &ids, dialect, hold).await,
            Outcome::Throttle { per_sec } => {
                // A slow link to a server that finishes what it started: a body
                // that arrived whole is acted on, though its client is gone.
                let (parts, mut body) = request.into_parts();
                body.throttle(per_sec);
                self.act_to_the_end(Request::from_parts(parts, body), &record, &ids, dialect, Duration::ZERO).await
            }
        }
    }

    /// Lets the store act and reads its answer to the end, so that the store
    /// finishes whatever it streams (CompleteMultipartUpload answers through a
    /// keep-alive body); the client is told something else, or nothing.
    async fn dispatch_unheard(
        &self,
        request: Request<CountedBody>,
        ids: &RequestIds,
        dialect: Dialect,
    ) -> Result<(), BoxError> {
        let mut answer = self.dispatch(request, ids, dialect).await?.into_body();
        while let Some(Ok(_)) = answer.frame().await {}
        Ok(())
    }

    /// Lets the store act to its end in a task of its own, then answers after
    /// `hold`. hyper drops a request's future when its client goes away (it
    /// watches for EOF mid-message), and a real server finishes what it
    /// started all the same. Its whole answer is read (CompleteMultipartUpload
    /// does its work while its keep-alive body is read), then held.
    async fn act_to_the_end(
        self: &Arc<Self>,
        request: Request<CountedBody>,
        record: &Arc<RequestRecord>,
        ids: &RequestIds,
        dialect: Dialect,
        hold: Duration,
    ) -> Result<Response<s3s::Body>, BoxError> {
        let front = Arc::clone(self);
        let stamped = ids.clone();
        let acted = tokio::spawn(async move {
            let response = front.dispatch(request, &stamped, dialect).await?;
            let (parts, body) = response.into_parts();
            let bytes = body.collect().await?.to_bytes();
            Ok::<_, BoxError>((parts, bytes))
        });
        let (parts, bytes) = acted.await??;
        tokio::time::sleep(hold).await;
        let mut response = Response::from_parts(parts, s3s::Body::from(bytes));
        ids.stamp(response.headers_mut());
        record.set_status(response.status().as_u16());
        Ok(response)
    }

    async fn forward(
        &self,
        request: Request<CountedBody>,
        record: &RequestRecord,
        ids: &RequestIds,
        dialect: Dialect,
    ) -> Result<Response<s3s::Body>, BoxError> {
        let mut response = self.dispatch(request, ids, dialect).await?;
        ids.stamp(response.headers_mut());
        record.set_status(response.status().as_u16());
        Ok(response)
    }

    /// Passes a request on to the backend in the protocol it speaks, or answers it here.
    async fn dispatch(
        &self,
        request: Request<CountedBody>,
        ids: &RequestIds,
        dialect: Dialect,
    ) -> Result<Response<s3s::Body>, BoxError> {
        let method = request.method().clone();
        let raw_query = request.uri().query().unwrap_or("").to_owned();

        if let Some(obs) = &self.obs
            && ObsProtocol::is_api_version(&method, &raw_query)
        {
            return Ok(self.api_version(obs, &request, ids));
        }

        // A signed request dated too far from the server's clock, as OBS and S3
        // refuse it: with the server's time in `Date`, so a client can set its own by it.
        if let Some(now) = self.clock.too_skewed(request.headers()) {
            drain(request.into_body()).await;
            let server_time = httpdate::fmt_http_date(
                std::time::UNIX_EPOCH + Duration::from_secs(now.max(0) as u64),
            );
            let mut response = error_response(
                StatusCode::FORBIDDEN,
                "RequestTimeTooSkewed",
                "The difference between the request time and the server's time is too large.",
                ids,
            );
            if let Ok(date) = HeaderValue::from_str(&server_time) {
                response.headers_mut().insert(hyper::header::DATE, date);
            }
            return Ok(response);
        }

        let response = match (&self.obs, dialect) {
            (Some(obs), Dialect::Obs) => {
                let (mut parts, body) = request.into_parts();
                let verdict = obs.verify(
                    &parts.method,
                    parts.uri.path(),
                    &raw_query,
                    &parts.headers,
                    &self.keys,
                );
                match verdict {
                    Err(rejection) => {
                        drain(body).await;
                        return Ok(rejection_response(&rejection, ids));
                    }
                    Ok(verdict) => {
                        obs::headers_to_s3(&mut parts.headers);
                        if verdict == Verdict::Verified {
                            parts.extensions.insert(FrontVerified);
                        }
                        self.backend.serve(Request::from_parts(parts, body)).await?
                    }
                }
            }
            _ => {
                if obs::is_aws_signed(request.headers(), &raw_query)
                    && let Err(problem) = self.keys.check_token(aws_token(&request).as_deref())
                {
                    drain(request.into_body()).await;
                    return Ok(rejection_response(&self.aws_token_rejection(problem), ids));
                }
                self.backend.serve(request).await?
            }
        };

        match (
            &self.backend,
            list_parts::list_parts_page(&method, &raw_query),
        ) {
            (Backend::Store(store), Some(page)) => {
                list_parts::rewrite(response, store.root(), page).await
            }
            _ => Ok(response),
        }
    }

    /// `HEAD /?apiversion`: OBS's protocol negotiation, answered without a signature.
    fn api_version<B>(
        &self,
        obs: &ObsProtocol,
        request: &Request<B>,
        ids: &RequestIds,
    ) -> Response<s3s::Body> {
        let known = match obs.bucket_of(request.headers(), request.uri().path()) {
            None => true,
            Some(bucket) => match &self.backend {
                Backend::Store(store) => store.bucket_exists(&bucket),
                Backend::Sink(_) => true,
            },
        };
        if !known {
            return error_response(
                StatusCode::NOT_FOUND,
                "NoSuchBucket",
                "The specified bucket does not exist",
                ids,
            );
        }
        let mut response = Response::new(s3s::Body::empty());
        let headers = response.headers_mut();
        headers.insert("x-obs-api", HeaderValue::from_static(obs::API_VERSION));
        headers.insert(CONTENT_LENGTH, HeaderValue::from_static("0"));
        response
    }

    /// A missing or wrong security token on an AWS-signed request: in mode obs what
    /// OBS answers, otherwise what S3 answers.
    fn aws_token_rejection(&self, problem: TokenProblem) -> Rejection {
        let why = match problem {
            TokenProblem::Missing => " (none was sent)",
            TokenProblem::Wrong => "",
        };
        if self.obs.is_some() {
            Rejection {
                status: StatusCode::FORBIDDEN,
                code: "InvalidAccessKeyId",
                message: format!("The security token is invalid{why}."),
                details: Vec::new(),
            }
        } else {
            Rejection {
                status: StatusCode::BAD_REQUEST,
                code: "InvalidToken",
                message: format!("The provided token is malformed or otherwise invalid{why}."),
                details: Vec::new(),
            }
        }
    }
}

/// The security token of an AWS-signed request: header, or presigned query.
fn aws_token<B>(request: &Request<B>) -> Option<String> {
    if let Some(value) = request.headers().get("x-amz-security-token") {
        return Some(String::from_utf8_lossy(value.as_bytes()).into_owned());
    }
    let pairs = query_pairs(request.uri().query().unwrap_or(""));
    query_value(&pairs, "X-Amz-Security-Token")
        .or_else(|| query_value(&pairs, "x-amz-security-token"))
        .map(str::to_owned)
}

/// Reads a refused request's body to its end, so that the client, still sending,
/// gets the answer rather than a broken pipe.
async fn drain(mut body: CountedBody) {
    while let Some(Ok(_)) = body.frame().await {}
}

fn rejection_response(rejection: &Rejection, ids: &RequestIds) -> Response<s3s::Body> {
    let details: Vec<(&str, &str)> = rejection
        .details
        .iter()
        .map(|(name, value)| (*name, value.as_str()))
        .collect();
    let document = s3_xml::error_with_details(
        rejection.code,
        &rejection.message,
        &details,
        &ids.request_id,
        &ids.host_id,
    );
    xml_response(rejection.status, document, ids)
}

fn error_response(
    status: StatusCode,
    code: &str,
    message: &str,
    ids: &RequestIds,
) -> Response<s3s::Body> {
    let document = s3_xml::error(code, message, &ids.request_id, &ids.host_id);
    xml_response(status, document, ids)
}

fn text_response(status: StatusCode, text: String, ids: &RequestIds) -> Response<s3s::Body> {
    response_of(status, text, "text/plain", ids)
}

fn xml_response(status: StatusCode, document: String, ids: &RequestIds) -> Response<s3s::Body> {
    response_of(status, document, "application/xml", ids)
}

fn response_of(
    status: StatusCode,
    body: String,
    content_type: &'static str,
    ids: &RequestIds,
) -> Response<s3s::Body> {
    let mut response = Response::new(s3s::Body::from(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    ids.stamp(response.headers_mut());
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clock_off_the_machines_refuses_signed_requests_dated_too_far_from_it() {
        assert_eq!(amz_basic_date("19700101T000000Z"), Some(0));
        assert_eq!(amz_basic_date("20261124T212548Z"), Some(1_795_555_548));
        assert_eq!(amz_basic_date("2026-11-24T21:25:48Z"), None);
        let clock = Clock::default();
        let now = httpdate::fmt_http_date(std::time::SystemTime::now());
        let mut headers = hyper::HeaderMap::new();
        headers.insert("date", HeaderValue::from_str(&now).unwrap());
        headers.insert(hyper::header::AUTHORIZATION, HeaderValue::from_static("AWS ak:sig"));
        // The machine's clock: nothing is checked.
        assert_eq!(clock.too_skewed(&headers), None);
        // An hour ahead: a request dated now is refused with the server's time;
        // one dated by the server's clock passes, and so does an unsigned one.
        clock.set_offset(3600);
        let server = clock.too_skewed(&headers).expect("refused");
        assert!((server - clock.now()).abs() <= 1);
        headers.insert("x-amz-date", HeaderValue::from_str(&httpdate::fmt_http_date(std::time::UNIX_EPOCH + Duration::from_secs(server as u64))).unwrap());
        assert_eq!(clock.too_skewed(&headers), None);
        headers.remove("x-amz-date");
        headers.remove(hyper::header::AUTHORIZATION);
        assert_eq!(clock.too_skewed(&headers), None);
    }
}
