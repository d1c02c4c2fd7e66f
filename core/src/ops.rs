//! The multipart operations an upload is made of: initiate, upload part,
//! list parts, complete, abort, and HEAD object. Each builds its request in
//! the dialect of the negotiated signature and reads the answer.

use base64::Engine as _;
use bytes::Bytes;

use crate::error::{Error, Result};
use crate::http::{self, Body, Client, FileRange, Request, Response};
use crate::sign::Signature;
use crate::xml;

/// Object settings sent when the upload is initiated.
#[derive(Debug, Clone, Default)]
pub struct ObjectSettings {
    pub content_type: Option<String>,
    pub acl: Option<String>,
    /// Name and value, in the caller's order.
    pub metadata: Vec<(String, String)>,
    pub website_redirect_location: Option<String>,
    pub sse_kms: Option<String>,
    pub sse_kms_key: Option<String>,
    pub sse_c: Option<String>,
    pub sse_c_key: Option<String>,
    pub expires: Option<i64>,
}

/// Server-side-encryption-with-customer-key headers, sent with every part.
#[derive(Debug, Clone, Default)]
pub struct SseC {
    pub algorithm: Option<String>,
    pub key: Option<String>,
}

impl SseC {
    fn headers(&self, sig: Signature, out: &mut Vec<(String, String)>) {
        let p = sig.header_prefix();
        if let Some(a) = &self.algorithm {
            out.push((format!("{p}server-side-encryption-customer-algorithm"), http::encode_header_value(a)));
        }
        if let Some(k) = &self.key {
            let b64 = base64::engine::general_purpose::STANDARD;
            out.push((format!("{p}server-side-encryption-customer-key"), b64.encode(k.as_bytes())));
            out.push((format!("{p}server-side-encryption-customer-key-MD5"), b64.encode(crate::md5::digest(k.as_bytes()))));
        }
    }
}

const OBS_ACLS: &[&str] =
    &["private", "public-read", "public-read-write", "public-read-delivered", "public-read-write-delivered", "bucket-owner-full-control"];
const V2_ACLS: &[&str] = &[
    "private",
    "public-read",
    "public-read-write",
    "authenticated-read",
    "bucket-owner-read",
    "bucket-owner-full-control",
    "log-delivery-write",
];

/// The canned ACL as the dialect names it; unknown names are not sent.
fn acl_for(sig: Signature, acl: &str) -> Option<String> {
    let acl = acl.to_ascii_lowercase();
    match sig {
        Signature::Obs => OBS_ACLS.contains(&acl.as_str()).then_some(acl),
        Signature::V2 | Signature::V4 => {
            let acl = match acl.as_str() {
                "public-read-delivered" => "public-read".to_string(),
                "public-read-write-delivered" => "public-read-write".to_string(),
                _ => acl,
            };
            V2_ACLS.contains(&acl.as_str()).then_some(acl)
        }
    }
}

fn service_error(resp: &Response, sig: Signature) -> Error {
    http::error_from_response(resp, sig)
}

/// The error a 200 carries in its body (still there after the retries),
/// reported as the 5xx it stands for, and worth another call.
fn error_in_body(resp: &Response, sig: Signature) -> Error {
    let mut e = service_error(&Response { status: 500, ..resp.clone() }, sig);
    e.retryable = true;
    e
}

/// Starts a multipart upload; returns its upload id.
pub async fn initiate_multipart_upload(
    client: &Client,
    sig: Signature,
    bucket: &str,
    key: &str,
    settings: &ObjectSettings,
) -> Result<String> {
    let p = sig.header_prefix();
    let mut headers = Vec::new();
    if let Some(acl) = settings.acl.as_deref().and_then(|a| acl_for(sig, a)) {
        headers.push((format!("{p}acl"), acl));
    }
    for (name, value) in &settings.metadata {
        let name = name.trim().to_ascii_lowercase();
        let meta = sig.meta_prefix();
        let name = if name.starts_with(meta) { name } else { format!("{meta}{name}") };
        let value = http::encode_header_value(value);
        // Keys that name the same header (`Foo` and `foo`, or `foo` and
        // `x-obs-meta-foo`): the last one wins, as in the reference SDK.
        // Sent twice, the server would join them and the signature fail.
        match headers.iter_mut().find(|(n, _)| *n == name) {
            Some(kept) => kept.1 = value,
            None => headers.push((name, value)),
        }
    }
    if let Some(w) = &settings.website_redirect_location {
        headers.push((format!("{p}website-redirect-location"), http::encode_header_value(w)));
    }
    if let Some(e) = settings.expires {
        // The reference SDK sends this OBS header in both dialects.
        headers.push(("x-obs-expires".into(), e.to_string()));
    }
    if let Some(ct) = &settings.content_type {
        headers.push(("Content-Type".into(), http::encode_header_value(ct)));
    }
    if let Some(kms) = &settings.sse_kms {
        let v = match sig {
            Signature::Obs => kms.strip_prefix("aws:").unwrap_or(kms).to_string(),
            _ if kms.starts_with("aws:") => kms.clone(),
            _ => format!("aws:{kms}"),
        };
        headers.push((format!("{p}server-side-encryption"), http::encode_header_value(&v)));
    }
    if let Some(k) = &settings.sse_kms_key {
        let name = if sig == Signature::Obs { "server-side-encryption-kms-key-id" } else { "server-side-encryption-aws-kms-key-id" };
        headers.push((format!("{p}{name}"), http::encode_header_value(k)));
    }
    SseC { algorithm: settings.sse_c.clone(), key: settings.sse_c_key.clone() }.headers(sig, &mut headers);
    let req = Request {
        method: "POST",
        bucket: bucket.into(),
        key: Some(key.into()),
        query: vec![("uploads".into(), None)],
        headers,
        body: Body::Empty,
    };
    let resp = client.send(&req, sig).await?;
    if !resp.is_success() {
        return Err(service_error(&resp, sig));
    }
    xml::parse(&resp.body)
        .and_then(|root| root.text_of("UploadId").map(str::to_string))
        .filter(|id| !id.is_empty())
        .ok_or_else(|| Error::network("InitiateMultipartUpload answered without an UploadId"))
}

/// Sends one part from its file range; returns the part's ETag as the
/// server gave it (quotes included).
pub async fn upload_part(
    client: &Client,
    sig: Signature,
    target: &Target<'_>,
    part_number: u32,
    range: FileRange,
    sse_c: &SseC,
) -> Result<String> {
    let mut headers = Vec::new();
    sse_c.headers(sig, &mut headers);
    let body = if range.len == 0 { Body::Bytes(Bytes::new()) } else { Body::File(range) };
    let req = Request {
        method: "PUT",
        bucket: target.bucket.into(),
        key: Some(target.key.into()),
        query: vec![("partNumber".into(), Some(part_number.to_string())), ("uploadId".into(), Some(target.upload_id.into()))],
        headers,
        body,
    };
    let resp = client.send(&req, sig).await.map_err(|e| e.with_part(part_number))?;
    if !resp.is_success() {
        return Err(service_error(&resp, sig).with_part(part_number));
    }
    // A 200 whose body is an error (after the retries) is that error.
    if http::is_error_in_success(&resp) {
        return Err(error_in_body(&resp, sig).with_part(part_number));
    }
    resp.header("etag")
        .map(str::to_string)
        .ok_or_else(|| Error::network("UploadPart answered without an ETag").with_part(part_number))
}

/// Bucket, key and upload id of one multipart upload.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    pub bucket: &'a str,
    pub key: &'a str,
    pub upload_id: &'a str,
}

/// What CompleteMultipartUpload answered: the status and headers (for the
/// result's CommonMsg) and the fields of its XML body.
#[derive(Debug, Clone)]
pub struct Completed {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub location: Option<String>,
    pub bucket: Option<String>,
    pub key: Option<String>,
    pub etag: Option<String>,
    pub encoding_type: Option<String>,
    /// Whether the answer had a body. Without one the reference SDK leaves
    /// the XML fields out of its result; with one it gives `''` for those
    /// the body lacks.
    pub has_body: bool,
}

fn escape_xml(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('\'', "&apos;").replace('"', "&quot;")
}

pub fn complete_body(parts: &[(u32, String)]) -> String {
    let mut xml = String::with_capacity(40 + parts.len() * 80);
    xml.push_str("<CompleteMultipartUpload>");
    for (n, etag) in parts {
        xml.push_str(&format!("<Part><PartNumber>{n}</PartNumber><ETag>{}</ETag></Part>", escape_xml(etag)));
    }
    xml.push_str("</CompleteMultipartUpload>");
    xml
}

pub async fn complete_multipart_upload(
    client: &Client,
    sig: Signature,
    target: &Target<'_>,
    parts: &[(u32, String)],
) -> Result<Completed> {
    let req = Request {
        method: "POST",
        bucket: target.bucket.into(),
        key: Some(target.key.into()),
        query: vec![("uploadId".into(), Some(target.upload_id.into()))],
        headers: vec![],
        body: Body::Bytes(Bytes::from(complete_body(parts))),
    };
    let resp = client.send(&req, sig).await?;
    if !resp.is_success() {
        return Err(service_error(&resp, sig));
    }
    // Sent again already (`is_unreadable_completion`), to no avail.
    if http::is_unreadable_completion(&req, &resp) {
        let encoding = resp.header("content-encoding").map(|e| format!(", Content-Encoding {e}")).unwrap_or_default();
        return Err(Error::network(format!(
            "the answer to CompleteMultipartUpload could not be read (200 with {} bytes that are not XML{encoding})",
            resp.body.len()
        )));
    }
    let root = xml::parse(&resp.body);
    // S3 may answer 200 and put the error in the body; the client has sent
    // the request again on such answers already (`is_error_in_success`).
    if let Some(r) = &root
        && r.name == "Error"
    {
        return Err(error_in_body(&resp, sig));
    }
    let field = |name: &str| root.as_ref().and_then(|r| r.text_of(name)).map(str::to_string);
    Ok(Completed {
        status: resp.status,
        location: field("Location"),
        bucket: field("Bucket"),
        key: field("Key"),
        etag: field("ETag"),
        encoding_type: field("EncodingType"),
        has_body: !resp.body.is_empty(),
        headers: resp.headers,
    })
}

/// Aborts the upload. An upload the server no longer knows counts as aborted.
pub async fn abort_multipart_upload(client: &Client, sig: Signature, target: &Target<'_>) -> Result<()> {
    let req = Request {
        method: "DELETE",
        bucket: target.bucket.into(),
        key: Some(target.key.into()),
        query: vec![("uploadId".into(), Some(target.upload_id.into()))],
        headers: vec![],
        body: Body::Empty,
    };
    let resp = client.send(&req, sig).await?;
    if resp.is_success() || resp.status == 404 {
        Ok(())
    } else {
        Err(service_error(&resp, sig))
    }
}

/// A part the server holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedPart {
    pub part_number: u32,
    pub etag: Option<String>,
    pub size: u64,
}

/// The most parts a listing goes on past: 10,000 parts an upload may have,
/// and as many again for a server that lists a part more than once.
const MAX_LISTED_PARTS: usize = 20_000;

/// Every part the server holds for the upload, following pagination.
pub async fn list_parts(client: &Client, sig: Signature, target: &Target<'_>) -> Result<Vec<ListedPart>> {
    let mut parts = Vec::new();
    let mut marker: Option<String> = None;
    loop {
        let mut query = vec![("uploadId".to_string(), Some(target.upload_id.to_string()))];
        if let Some(m) = &marker {
            query.push(("part-number-marker".into(), Some(m.clone())));
        }
        let req = Request {
            method: "GET",
            bucket: target.bucket.into(),
            key: Some(target.key.into()),
            query,
            headers: vec![],
            body: Body::Empty,
        };
        let resp = client.send(&req, sig).await?;
        if !resp.is_success() {
            return Err(service_error(&resp, sig));
        }
        let root = xml::parse(&resp.body).ok_or_else(|| Error::network("ListParts answered with a body that is not XML"))?;
        // A 200 that carries an error (after the retries): not an empty list,
        // which would have every part sent again.
        if root.name == "Error" {
            return Err(error_in_body(&resp, sig));
        }
        for p in root.children_named("Part") {
            let Some(n) = p.text_of("PartNumber").and_then(|n| n.trim().parse().ok()) else { continue };
            parts.push(ListedPart {
                part_number: n,
                etag: p.text_of("ETag").map(str::to_string).filter(|e| !e.is_empty()),
                size: p.text_of("Size").and_then(|s| s.trim().parse().ok()).unwrap_or(0),
            });
        }
        let truncated = root.text_of("IsTruncated").is_some_and(|t| t.trim() == "true");
        match next_page(truncated, root.text_of("NextPartNumberMarker"), marker.as_deref()) {
            Some(next) if parts.len() <= MAX_LISTED_PARTS => marker = Some(next),
            _ => break,
        }
    }
    parts.sort_by_key(|p| p.part_number);
    parts.dedup_by_key(|p| p.part_number);
    Ok(parts)
}

/// The marker of the next ListParts page, `None` after the last. A page
/// must start past the one before and below 10,000: a marker that stays,
/// goes back (A, B, A, ... would go round forever), runs past the last part
/// number or is no number ends the listing, as does a truncated page
/// without a marker; so a listing has at most 10,000 pages. A listing cut
/// short only costs time: a recorded part it misses is sent again, never
/// taken on trust. `current` is a marker this returned before (trimmed).
fn next_page(truncated: bool, next: Option<&str>, current: Option<&str>) -> Option<String> {
    let next = next.map(str::trim).filter(|m| !m.is_empty() && truncated)?;
    let number = |m: &str| m.parse::<u64>().ok();
    let n = number(next)?;
    // No part number is above 10,000: a marker there has nothing after it.
    (n < 10_000 && current.and_then(number).is_none_or(|m| n > m)).then(|| next.to_string())
}

/// The HEAD answer for an object, or `None` when it does not exist.
pub async fn head_object_response(client: &Client, sig: Signature, bucket: &str, key: &str) -> Result<Option<Response>> {
    let req = Request { method: "HEAD", bucket: bucket.into(), key: Some(key.into()), query: vec![], headers: vec![], body: Body::Empty };
    let resp = client.send(&req, sig).await?;
    if resp.status == 404 {
        return Ok(None);
    }
    if !resp.is_success() {
        return Err(service_error(&resp, sig));
    }
    Ok(Some(resp))
}

/// The status a HEAD of the bucket gets with the current credentials.
pub async fn head_bucket(client: &Client, sig: Signature, bucket: &str) -> Result<u16> {
    let req = Request { method: "HEAD", bucket: bucket.into(), key: None, query: vec![], headers: vec![], body: Body::Empty };
    Ok(client.send(&req, sig).await?.status)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_parts_pages_must_move_forward() {
        assert_eq!(next_page(true, Some("1000"), None), Some("1000".into()));
        assert_eq!(next_page(true, Some(" 2000 "), Some("1000")), Some("2000".into()));
        // The last page, or a truncated one without a marker: the end.
        assert_eq!(next_page(false, Some("3000"), Some("2000")), None);
        assert_eq!(next_page(true, None, Some("2000")), None);
        assert_eq!(next_page(true, Some(""), Some("2000")), None);
        // The same page again, a page back (A, B, A, ...), or no number: the end too.
        for (next, current) in [("1000", Some("1000")), ("500", Some("1000")), ("abc", None), ("-1", None), ("10000", Some("9999"))] {
            assert_eq!(next_page(true, Some(next), current), None, "{next} after {current:?}");
        }
    }

    #[test]
    fn complete_body_lists_parts_in_order_with_escaped_etags() {
        assert_eq!(
            complete_body(&[(1, "\"a\"".into()), (2, "b&c".into())]),
            "<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>&quot;a&quot;</ETag></Part>\
             <Part><PartNumber>2</PartNumber><ETag>b&amp;c</ETag></Part></CompleteMultipartUpload>"
        );
    }

    #[test]
    fn acl_names_follow_the_dialect() {
        assert_eq!(acl_for(Signature::Obs, "Public-Read"), Some("public-read".into()));
        assert_eq!(acl_for(Signature::Obs, "authenticated-read"), None);
        assert_eq!(acl_for(Signature::V2, "public-read-delivered"), Some("public-read".into()));
        assert_eq!(acl_for(Signature::V2, "nonsense"), None);
    }
}
