//! The control API on 127.0.0.1:<control>, through which a test steers the server:
//!
//! | route | effect |
//! |---|---|
//! | `GET /health` | 200 |
//! | `POST /faults` (a fault rule) | `{"id":n}` |
//! | `GET /faults` / `DELETE /faults` | list (with matched/fired counts) / clear |
//! | `GET /stats` / `POST /stats/reset` | the request log / clear it |
//! | `POST /stop` / `POST /start` | close / reopen the S3 port |
//! | `GET /serving` | `{"serving":bool}` |
//! | `GET /uploads` | `{"uploads":[id,...],"orphan_parts":[id,...]}`: multipart uploads still open, and ids whose part files outlived their upload |
//! | `POST /credentials` `{"access_key","secret_key","security_token"?}` | replaces the accepted keys (OBS, V2 and V4 checks alike) from the next request on; without `security_token`, none is required |
//! | `POST /clock` `{"offset_secs":n}` | the server's clock runs `n` seconds off the machine's (0: the machine's, no check); while not 0, a signed request whose date is over 15 minutes from the server's is refused 403 `RequestTimeTooSkewed`, with the server's `Date` |
//!
//! Answers are JSON; a bad request gets 400 `{"error":"..."}`, never a crash.

use std::sync::Arc;

use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::faults::FaultSpec;
use crate::front::Front;
use crate::keys::Keys;
use crate::s3_port::S3Port;

/// Fault rules are small; anything bigger is a mistake.
const MAX_CONTROL_BODY: usize = 1 << 20;

pub struct Control {
    front: Arc<Front>,
    s3_port: S3Port,
}

impl Control {
    pub fn new(front: Arc<Front>, s3_port: S3Port) -> Self {
        Self { front, s3_port }
    }

    pub fn s3_port(&self) -> &S3Port {
        &self.s3_port
    }

    async fn handle(
        self: Arc<Self>,
        request: Request<Incoming>,
    ) -> Result<Response<String>, std::convert::Infallible> {
        let route = (
            request.method().clone(),
            request.uri().path().trim_end_matches('/').to_owned(),
        );
        let answer = match (&route.0, route.1.as_str()) {
            (&Method::GET, "/health") => ok(r#"{"ok":true}"#.to_owned()),
            (&Method::POST, "/faults") => self.add_fault(request).await,
            (&Method::POST, "/credentials") => self.set_credentials(request).await,
            (&Method::POST, "/clock") => self.set_clock(request).await,
            (&Method::GET, "/faults") => json(self.front.faults().to_json()),
            (&Method::DELETE, "/faults") => {
                self.front.faults().clear();
                ok(r#"{"cleared":true}"#.to_owned())
            }
            (&Method::GET, "/stats") => json(self.front.log().to_json(crate::s3_port::accepted())),
            (&Method::POST, "/stats/reset") => {
                self.front.log().reset();
                ok(r#"{"ok":true}"#.to_owned())
            }
            (&Method::POST, "/stop") => {
                self.s3_port.stop().await;
                ok(r#"{"serving":false}"#.to_owned())
            }
            (&Method::POST, "/start") => match self.s3_port.start().await {
                Ok(()) => ok(r#"{"serving":true}"#.to_owned()),
                Err(message) => failure(StatusCode::INTERNAL_SERVER_ERROR, &message),
            },
            (&Method::GET, "/serving") => ok(format!(
                r#"{{"serving":{}}}"#,
                self.s3_port.is_serving().await
            )),
            (&Method::GET, "/uploads") => match self.front.backend().uploads() {
                Ok(open) => json(serde_json::to_string(&open)),
                Err(message) => failure(StatusCode::INTERNAL_SERVER_ERROR, &message),
            },
            (method, path) => failure(
                StatusCode::NOT_FOUND,
                &format!("no control route {method} {path}"),
            ),
        };
        Ok(answer)
    }

    async fn add_fault(&self, request: Request<Incoming>) -> Response<String> {
        let body = match read_body(request).await {
            Ok(body) => body,
            Err(answer) => return answer,
        };
        let spec: FaultSpec = match serde_json::from_slice(&body) {
            Ok(spec) => spec,
            Err(err) => return failure(StatusCode::BAD_REQUEST, &format!("bad fault rule: {err}")),
        };
        match self.front.faults().add(spec) {
            Ok(id) => ok(format!(r#"{{"id":{id}}}"#)),
            Err(message) => failure(
                StatusCode::BAD_REQUEST,
                &format!("bad fault rule: {message}"),
            ),
        }
    }

    async fn set_credentials(&self, request: Request<Incoming>) -> Response<String> {
        let body = match read_body(request).await {
            Ok(body) => body,
            Err(answer) => return answer,
        };
        let keys: Keys = match serde_json::from_slice(&body) {
            Ok(keys) => keys,
            Err(err) => {
                return failure(StatusCode::BAD_REQUEST, &format!("bad credentials: {err}"));
            }
        };
        if let Err(message) = keys.validate() {
            return failure(
                StatusCode::BAD_REQUEST,
                &format!("bad credentials: {message}"),
            );
        }
        self.front.keys().set(keys);
        ok(r#"{"ok":true}"#.to_owned())
    }

    async fn set_clock(&self, request: Request<Incoming>) -> Response<String> {
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Clock {
            offset_secs: i64,
        }
        let body = match read_body(request).await {
            Ok(body) => body,
            Err(answer) => return answer,
        };
        match serde_json::from_slice::<Clock>(&body) {
            Ok(clock) if clock.offset_secs.unsigned_abs() > 100 * 366 * 86_400 => {
                failure(StatusCode::BAD_REQUEST, "bad clock: offset_secs beyond 100 years")
            }
            Ok(clock) => {
                self.front.clock().set_offset(clock.offset_secs);
                ok(format!(r#"{{"offset_secs":{}}}"#, clock.offset_secs))
            }
            Err(err) => failure(StatusCode::BAD_REQUEST, &format!("bad clock: {err}")),
        }
    }
}

async fn read_body(request: Request<Incoming>) -> Result<hyper::body::Bytes, Response<String>> {
    match Limited::new(request.into_body(), MAX_CONTROL_BODY)
        .collect()
        .await
    {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(err) => Err(failure(
            StatusCode::BAD_REQUEST,
            &format!("cannot read body: {err}"),
        )),
    }
}

pub async fn serve(listener: TcpListener, control: Arc<Control>) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(err) => {
                eprintln!("obs-testkit: control accept failed: {err}");
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                continue;
            }
        };
        let control = control.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| control.clone().handle(request));
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn ok(body: String) -> Response<String> {
    with_status(StatusCode::OK, body)
}

fn json(serialised: serde_json::Result<String>) -> Response<String> {
    match serialised {
        Ok(body) => ok(body),
        Err(err) => failure(StatusCode::INTERNAL_SERVER_ERROR, &err.to_string()),
    }
}

fn failure(status: StatusCode, message: &str) -> Response<String> {
    let body = serde_json::json!({ "error": message }).to_string();
    with_status(status, body)
}

fn with_status(status: StatusCode, body: String) -> Response<String> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}
