//! Mode sink: a stand-in for the store that reads and discards every request body
//! and gives valid S3 multipart answers, so that benchmarks measure the client alone.
//! No auth, no storage, no hashing: every answer must cost the server next to nothing.
//! It remembers only which upload ids are open, so `GET /uploads` can still show
//! uploads a client left behind.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use http_body_util::BodyExt;
use hyper::header::{CONTENT_LENGTH, CONTENT_TYPE, ETAG, HOST, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};

use crate::backend::BoxError;
use crate::request_ids::{mix, random_seed};
use crate::request_target::{decode_path, query_pairs, query_value};
use crate::s3_xml;
use crate::stats::CountedBody;

pub struct Sink {
    domains: Vec<String>,
    seed: u64,
    next: AtomicU64,
    open_uploads: Mutex<HashSet<String>>,
}

/// Bucket and key of a request, path style or, with `--domain`, virtual-hosted style.
struct ObjectName {
    bucket: String,
    key: String,
}

impl Sink {
    pub fn new(domains: &[String]) -> Self {
        Self {
            domains: domains
                .iter()
                .map(|d| d.trim_matches('.').to_ascii_lowercase())
                .collect(),
            seed: random_seed(),
            next: AtomicU64::new(1),
            open_uploads: Mutex::default(),
        }
    }

    pub async fn serve(
        &self,
        request: Request<CountedBody>,
    ) -> Result<Response<s3s::Body>, BoxError> {
        let (parts, mut body) = request.into_parts();
        // Read everything first: the connection stays reusable, and a client that dies
        // mid-body ends here with an error (the front then drops the connection).
        while let Some(frame) = body.frame().await {
            frame?;
        }

        let pairs = query_pairs(parts.uri.query().unwrap_or(""));
        let host = parts
            .headers
            .get(HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("127.0.0.1");
        let name = self.object_name(host, &decode_path(parts.uri.path()));
        let has = |key: &str| query_value(&pairs, key).is_some();

        let response = match parts.method {
            Method::POST if has("uploads") => {
                let upload_id = format!(
                    "{:016x}{:016x}",
                    mix(self.seed ^ self.ticket()),
                    self.ticket()
                );
                self.lock_uploads().insert(upload_id.clone());
                xml(s3_xml::initiate_multipart_upload_result(
                    &name.bucket,
                    &name.key,
                    &upload_id,
                ))
            }
            Method::POST if has("uploadId") => {
                if let Some(upload_id) = query_value(&pairs, "uploadId") {
                    self.lock_uploads().remove(upload_id);
                }
                let location = format!("http://{host}{}", parts.uri.path());
                let etag = self.etag();
                xml(s3_xml::complete_multipart_upload_result(
                    &location,
                    &name.bucket,
                    &name.key,
                    &etag,
                ))
            }
            Method::DELETE if has("uploadId") => {
                if let Some(upload_id) = query_value(&pairs, "uploadId") {
                    self.lock_uploads().remove(upload_id);
                }
                empty(StatusCode::NO_CONTENT)
            }
            // Clients that look for an upload to resume first (COS) find none.
            Method::GET if has("uploads") => xml(s3_xml::empty_multipart_uploads_list(
                &name.bucket,
                query_value(&pairs, "prefix").unwrap_or(""),
            )),
            Method::PUT => {
                let mut response = empty(StatusCode::OK);
                if let Ok(etag) = HeaderValue::from_str(&self.etag()) {
                    response.headers_mut().insert(ETAG, etag);
                }
                response
            }
            _ => empty(StatusCode::OK),
        };
        Ok(response)
    }

    pub fn uploads(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.lock_uploads().iter().cloned().collect();
        ids.sort();
        ids
    }

    fn ticket(&self) -> u64 {
        self.next.fetch_add(1, Ordering::Relaxed)
    }

    /// A unique quoted value shaped like an MD5 ETag; deliberately not a hash of the body.
    fn etag(&self) -> String {
        let n = self.ticket();
        format!("\"{:016x}{:016x}\"", mix(self.seed ^ n), n)
    }

    fn object_name(&self, host: &str, path: &str) -> ObjectName {
        let path = path.strip_prefix('/').unwrap_or(path);
        let host_name = host
            .rsplit_once(':')
            .map_or(host, |(name, _)| name)
            .to_ascii_lowercase();
        for domain in &self.domains {
            if let Some(bucket) = host_name
                .strip_suffix(domain.as_str())
                .and_then(|b| b.strip_suffix('.'))
                && !bucket.is_empty()
            {
                return ObjectName {
                    bucket: bucket.to_owned(),
                    key: path.to_owned(),
                };
            }
        }
        let (bucket, key) = path.split_once('/').unwrap_or((path, ""));
        ObjectName {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
        }
    }

    fn lock_uploads(&self) -> MutexGuard<'_, HashSet<String>> {
        self.open_uploads
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn xml(document: String) -> Response<s3s::Body> {
    let mut response = Response::new(s3s::Body::from(document));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/xml"));
    response
}

fn empty(status: StatusCode) -> Response<s3s::Body> {
    let mut response = Response::new(s3s::Body::empty());
    *response.status_mut() = status;
    if status != StatusCode::NO_CONTENT {
        response
            .headers_mut()
            .insert(CONTENT_LENGTH, HeaderValue::from_static("0"));
    }
    response
}
