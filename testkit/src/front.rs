//! The front: the hyper service every S3 request goes through, in both modes. It
//! logs the request, counts its body, stamps the request-id headers, and applies the
//! fault rule that fires on it (error answer, connection reset, delay, hang, dropped
//! response) before or instead of passing it to the backend.

use std::sync::Arc;

use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Request, Response, StatusCode};

use crate::backend::{Backend, BoxError};
use crate::faults::{FaultBook, Outcome};
use crate::request_ids::{RequestIdSource, RequestIds};
use crate::request_target::decode_path;
use crate::s3_port::ConnectionFate;
use crate::s3_xml;
use crate::stats::{CountedBody, RequestLog, RequestRecord};

pub struct Front {
    backend: Backend,
    faults: FaultBook,
    log: RequestLog,
    ids: RequestIdSource,
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
    pub fn new(backend: Backend) -> Self {
        Self {
            backend,
            faults: FaultBook::default(),
            log: RequestLog::default(),
            ids: RequestIdSource::new(),
        }
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

    pub async fn handle(
        self: Arc<Self>,
        request: Request<Incoming>,
        connection: Arc<ConnectionFate>,
    ) -> Result<Response<s3s::Body>, BoxError> {
        let method = request.method().as_str();
        let path = decode_path(request.uri().path());
        let raw_query = request.uri().query().unwrap_or("");
        let picked = self.faults.pick(method, &path, raw_query);
        let record = self
            .log
            .begin(method, &path, raw_query, picked.as_ref().map(|(id, _)| *id));
        let ids = self.ids.next_ids();
        let request = request.map(|body| CountedBody::new(body, record.clone()));

        let Some((_, action)) = picked else {
            return self.forward(request, &record, &ids).await;
        };
        if let Some(delay) = action.delay {
            tokio::time::sleep(delay).await;
        }
        match action.outcome {
            Outcome::Pass => self.forward(request, &record, &ids).await,
            Outcome::Error {
                status,
                code,
                message,
                drain_body,
            } => {
                let (_, mut body) = request.into_parts();
                if drain_body {
                    // A client that vanishes while sending gets nothing; hyper closes.
                    while let Some(frame) = body.frame().await {
                        frame?;
                    }
                }
                let response = error_response(status, &code, &message, &ids);
                record.set_status(status.as_u16());
                Ok(response)
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
                let response = self.backend.serve(request).await?;
                // Run the response to its end so the store finishes whatever it streams
                // (CompleteMultipartUpload answers through a keep-alive body), then cut.
                let mut body = response.into_body();
                while let Some(Ok(_)) = body.frame().await {}
                Err(Box::new(ConnectionCut("response dropped")))
            }
        }
    }

    async fn forward(
        &self,
        request: Request<CountedBody>,
        record: &RequestRecord,
        ids: &RequestIds,
    ) -> Result<Response<s3s::Body>, BoxError> {
        let mut response = self.backend.serve(request).await?;
        ids.stamp(response.headers_mut());
        record.set_status(response.status().as_u16());
        Ok(response)
    }
}

fn error_response(
    status: StatusCode,
    code: &str,
    message: &str,
    ids: &RequestIds,
) -> Response<s3s::Body> {
    let document = s3_xml::error(code, message, &ids.request_id, &ids.host_id);
    let mut response = Response::new(s3s::Body::from(document));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/xml"));
    ids.stamp(response.headers_mut());
    response
}
