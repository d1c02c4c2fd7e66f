//! Mode obs: the front speaks Huawei OBS's own protocol over the same s3s-fs store,
//! so that a client's default path (OBS signature, protocol negotiation,
//! virtual-hosted buckets) is tested end to end. s3s knows only AWS V2/V4, so:
//!
//! - `HEAD /?apiversion` (virtual-hosted) or `HEAD /bucket?apiversion` is answered
//!   here, unsigned, with `x-obs-api: 3.0`; an unknown bucket gets 404.
//! - `Authorization: OBS ak:signature` is verified here (HMAC-SHA1 over the OBS
//!   string to sign; the rule is the one of `core/src/sign.rs`, which the testkit
//!   may not depend on, kept identical), with the keys and security token of the
//!   shared [`KeyRing`]. A request that fails gets OBS's 403 answer.
//! - A verified request goes on to s3s as S3 knows it: `x-obs-*` headers renamed
//!   `x-amz-*`, no `Authorization`, marked [`crate::keys::FrontVerified`] so that the
//!   store lets it in. Its answer comes back with `x-amz-*` headers renamed `x-obs-*`,
//!   as OBS answers.
//! - Requests signed AWS V2/V4 pass through untouched, as in mode s3: OBS takes
//!   those too, and answers them in the S3 dialect.

use hyper::header::{AUTHORIZATION, HOST, HeaderMap, HeaderName, HeaderValue};
use hyper::{Method, StatusCode};

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha1::Sha1;

use crate::keys::{KeyRing, TokenProblem};
use crate::request_target::{decode_component, decode_path, query_pairs};
use crate::store::BucketDomains;

/// What OBS answers in `x-obs-api` to a bucket that speaks its protocol.
pub const API_VERSION: &str = "3.0";

const OBS_PREFIX: &str = "x-obs-";
const AMZ_PREFIX: &str = "x-amz-";
const OBS_META_PREFIX: &str = "x-obs-meta-";
const SECURITY_TOKEN: &str = "x-obs-security-token";

/// Query parameters that are part of the signed resource (compared lower-case).
/// The list of `core/src/sign.rs`, which is OBS's list plus the ones S3 V2 signs.
const SIGNED_SUB_RESOURCES: &[&str] = &[
    "acl",
    "append",
    "attname",
    "backtosource",
    "cors",
    "customdomain",
    "delete",
    "deletebucket",
    "directcoldaccess",
    "encryption",
    "inventory",
    "length",
    "lifecycle",
    "location",
    "logging",
    "metadata",
    "mirrorbacktosource",
    "modify",
    "name",
    "notification",
    "object-lock",
    "obscompresspolicy",
    "partnumber",
    "policy",
    "position",
    "quota",
    "rename",
    "replication",
    "requestpayment",
    "response-cache-control",
    "response-content-disposition",
    "response-content-encoding",
    "response-content-language",
    "response-content-type",
    "response-expires",
    "restore",
    "retention",
    "storageclass",
    "storageinfo",
    "storagepolicy",
    "tagging",
    "torrent",
    "truncate",
    "uploadid",
    "uploads",
    "versionid",
    "versioning",
    "versions",
    "website",
    "x-image-process",
    "x-image-save-bucket",
    "x-image-save-object",
    "x-obs-security-token",
    "x-oss-process",
];

/// Which protocol a request speaks, and so which header names its answer uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// AWS V2/V4 (or any request in mode s3): passed to s3s as it is.
    S3,
    /// OBS-signed, or unsigned in mode obs.
    Obs,
}

/// How a request is signed, as the request log reports it: `obs`, `v2`, `v4`
/// (header or presigned query) or `none`.
pub fn signed_with(headers: &HeaderMap, raw_query: &str) -> &'static str {
    if let Some(auth) = headers.get(AUTHORIZATION) {
        let auth = auth.as_bytes().trim_ascii_start();
        return if auth.starts_with(b"OBS ") {
            "obs"
        } else if auth.starts_with(b"AWS4-") {
            "v4"
        } else if auth.starts_with(b"AWS ") {
            "v2"
        } else {
            "none"
        };
    }
    if raw_query.is_empty() {
        return "none";
    }
    let pairs = query_pairs(raw_query);
    let has = |name: &str| pairs.iter().any(|(k, _)| k == name);
    if has("X-Amz-Signature") {
        "v4"
    } else if has("Signature") && has("AWSAccessKeyId") {
        "v2"
    } else if has("Signature") && has("AccessKeyId") {
        "obs"
    } else {
        "none"
    }
}

/// Whether the request is signed AWS V2 or V4 (header or presigned query).
pub fn is_aws_signed(headers: &HeaderMap, raw_query: &str) -> bool {
    matches!(signed_with(headers, raw_query), "v2" | "v4")
}

/// A request the front answers with an OBS error instead of passing it on.
#[derive(Debug, Clone)]
pub struct Rejection {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Extra elements of the error document (what OBS adds to SignatureDoesNotMatch).
    pub details: Vec<(&'static str, String)>,
}

impl Rejection {
    fn forbidden(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::FORBIDDEN,
            code,
            message: message.into(),
            details: Vec::new(),
        }
    }
}

/// What the OBS check concluded about a request that it lets through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Signed with the keys in force.
    Verified,
    /// No `Authorization`: s3s decides (it refuses anonymous requests when the
    /// server has keys).
    Anonymous,
}

/// The OBS side of the front: which hosts are virtual-hosted buckets.
pub struct ObsProtocol {
    domains: BucketDomains,
}

impl ObsProtocol {
    pub fn new(domains: BucketDomains) -> Self {
        Self { domains }
    }

    /// Whether this is the protocol negotiation, which OBS answers unsigned.
    pub fn is_api_version(method: &Method, raw_query: &str) -> bool {
        method == Method::HEAD
            && query_pairs(raw_query)
                .iter()
                .any(|(k, _)| k == "apiversion")
    }

    /// The bucket a request addresses: from a virtual-hosted Host, else the first
    /// segment of the path; `None` for the service itself (`/` on the bare domain).
    pub fn bucket_of(&self, headers: &HeaderMap, wire_path: &str) -> Option<String> {
        if let Some(host) = host_of(headers)
            && let Some((bucket, _)) = self.domains.bucket_of(host)
        {
            return Some(bucket.to_ascii_lowercase());
        }
        let path = decode_path(wire_path);
        let bucket = path.trim_start_matches('/').split('/').next().unwrap_or("");
        (!bucket.is_empty()).then(|| bucket.to_owned())
    }

    /// The path OBS signs: `/bucket` + the wire path for a virtual-hosted request
    /// (`/bucket/` when it has no key), the wire path itself for path style. Both
    /// stay percent-encoded exactly as sent.
    pub fn resource_path(&self, headers: &HeaderMap, wire_path: &str) -> String {
        match host_of(headers).and_then(|host| self.domains.bucket_of(host)) {
            Some((bucket, _)) => format!("/{bucket}{wire_path}"),
            None => wire_path.to_owned(),
        }
    }

    /// Checks an OBS request's signature and security token against the keys in force.
    pub fn verify(
        &self,
        method: &Method,
        wire_path: &str,
        raw_query: &str,
        headers: &HeaderMap,
        ring: &KeyRing,
    ) -> Result<Verdict, Rejection> {
        let Some(authorization) = headers.get(AUTHORIZATION) else {
            return Ok(Verdict::Anonymous);
        };
        let authorization = header_text(authorization);
        let Some((access_key, provided)) = authorization
            .trim()
            .strip_prefix("OBS ")
            .and_then(|rest| rest.trim_start().split_once(':'))
        else {
            return Err(Rejection::forbidden(
                "AccessDenied",
                "Authorization header is invalid: expected OBS AccessKeyId:Signature",
            ));
        };
        let Some(secret_key) = ring.secret_of(access_key) else {
            return Err(Rejection::forbidden(
                "InvalidAccessKeyId",
                "The OBS Access Key Id you provided does not exist in our records.",
            ));
        };
        // What OBS answers for a missing, expired or mismatched security token.
        let token = headers.get(SECURITY_TOKEN).map(header_text);
        if let Err(problem) = ring.check_token(token.as_deref()) {
            let message = match problem {
                TokenProblem::Missing => "The security token is invalid (none was sent).",
                TokenProblem::Wrong => "The security token is invalid.",
            };
            return Err(Rejection::forbidden("InvalidAccessKeyId", message));
        }
        if !headers.contains_key("date") && !headers.contains_key("x-obs-date") {
            return Err(Rejection::forbidden(
                "AccessDenied",
                "OBS authentication requires a valid Date or x-obs-date header",
            ));
        }

        let header_list: Vec<(String, String)> = headers
            .iter()
            .map(|(name, value)| (name.as_str().to_owned(), header_text(value)))
            .collect();
        let resource_path = self.resource_path(headers, wire_path);
        let query = signing_query(raw_query);
        let string_to_sign = string_to_sign(method.as_str(), &header_list, &resource_path, &query);
        let expected = signature(&secret_key, &string_to_sign);
        if expected != provided.trim() {
            return Err(Rejection {
                details: vec![
                    ("AccessKeyId", access_key.to_owned()),
                    ("SignatureProvided", provided.to_owned()),
                    ("StringToSign", string_to_sign),
                ],
                ..Rejection::forbidden(
                    "SignatureDoesNotMatch",
                    "The request signature we calculated does not match the signature you provided. Check your key and signing method.",
                )
            });
        }
        Ok(Verdict::Verified)
    }
}

fn host_of(headers: &HeaderMap) -> Option<&str> {
    headers.get(HOST).and_then(|h| h.to_str().ok())
}

/// A header value as text. Bytes that are not UTF-8 are read as Latin-1, which is
/// how Node writes a header string and what its SDK then signs.
fn header_text(value: &HeaderValue) -> String {
    match std::str::from_utf8(value.as_bytes()) {
        Ok(text) => text.to_owned(),
        Err(_) => value.as_bytes().iter().map(|&b| char::from(b)).collect(),
    }
}

/// The query as the signature sees it: decoded as JavaScript's
/// `decodeURIComponent` decodes (a `+` stays a `+`), `k` and `k=` both without value.
fn signing_query(raw_query: &str) -> Vec<(String, Option<String>)> {
    raw_query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| match pair.split_once('=') {
            Some((k, v)) => (decode_component(k, false), Some(decode_component(v, false))),
            None => (decode_component(pair, false), None),
        })
        .collect()
}

/// The canonical resource: path plus the signed sub-resources, sorted.
pub fn canonical_resource(path: &str, query: &[(String, Option<String>)]) -> String {
    let mut items: Vec<(&str, Option<&str>)> = query
        .iter()
        .filter(|(k, _)| SIGNED_SUB_RESOURCES.contains(&k.to_ascii_lowercase().as_str()))
        .map(|(k, v)| (k.as_str(), v.as_deref().filter(|v| !v.is_empty())))
        .collect();
    items.sort();
    let mut out = String::with_capacity(path.len() + 64);
    out.push_str(path);
    for (i, (k, v)) in items.iter().enumerate() {
        out.push(if i == 0 { '?' } else { '&' });
        out.push_str(k);
        if let Some(v) = v {
            out.push('=');
            out.push_str(v);
        }
    }
    out
}

/// The OBS string to sign: method, Content-MD5, Content-Type, Date, the `x-obs-*`
/// headers sorted by lower-cased name (metadata values trimmed), the resource.
pub fn string_to_sign(
    method: &str,
    headers: &[(String, String)],
    resource_path: &str,
    query: &[(String, Option<String>)],
) -> String {
    let find = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map_or("", |(_, v)| v.as_str())
    };
    let mut s = String::with_capacity(256);
    s.push_str(method);
    s.push('\n');
    for name in ["content-md5", "content-type", "date"] {
        s.push_str(find(name));
        s.push('\n');
    }
    let mut canonical: Vec<(String, &str)> = headers
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.as_str()))
        .filter(|(k, _)| k.starts_with(OBS_PREFIX))
        .collect();
    canonical.sort_by(|a, b| a.0.cmp(&b.0));
    for (k, v) in canonical {
        s.push_str(&k);
        s.push(':');
        s.push_str(if k.starts_with(OBS_META_PREFIX) {
            v.trim()
        } else {
            v
        });
        s.push('\n');
    }
    s.push_str(&canonical_resource(resource_path, query));
    s
}

/// base64(HMAC-SHA1(secret, string_to_sign)).
pub fn signature(secret_key: &str, string_to_sign: &str) -> String {
    let mut mac =
        Hmac::<Sha1>::new_from_slice(secret_key.as_bytes()).expect("HMAC takes keys of any size");
    mac.update(string_to_sign.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// Turns a verified OBS request's headers into what s3s reads: no `Authorization`,
/// no security token (checked already), every `x-obs-*` header as `x-amz-*`
/// (`x-obs-meta-a` -> `x-amz-meta-a`, `x-obs-acl` -> `x-amz-acl`, ...).
pub fn headers_to_s3(headers: &mut HeaderMap) {
    headers.remove(AUTHORIZATION);
    rename_prefix(headers, OBS_PREFIX, AMZ_PREFIX, &[SECURITY_TOKEN]);
}

/// Turns an answer's `x-amz-*` headers into OBS's `x-obs-*` ones (request id, id-2,
/// version id, server-side encryption, metadata, ...).
pub fn headers_to_obs(headers: &mut HeaderMap) {
    rename_prefix(headers, AMZ_PREFIX, OBS_PREFIX, &[]);
}

fn rename_prefix(headers: &mut HeaderMap, from: &str, to: &str, drop: &[&str]) {
    let names: Vec<HeaderName> = headers
        .keys()
        .filter(|name| name.as_str().starts_with(from))
        .cloned()
        .collect();
    for name in names {
        let values: Vec<HeaderValue> = headers.get_all(&name).iter().cloned().collect();
        headers.remove(&name);
        if drop.contains(&name.as_str()) {
            continue;
        }
        let renamed = format!("{to}{}", &name.as_str()[from.len()..]);
        let Ok(renamed) = HeaderName::from_bytes(renamed.as_bytes()) else {
            continue;
        };
        headers.remove(&renamed);
        for value in values {
            headers.append(renamed.clone(), value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    // The golden values of core/src/sign.rs, produced by esdk-obs-nodejs 3.26.8's doAuth.
    #[test]
    fn obs_string_to_sign_matches_the_reference() {
        let headers = h(&[
            ("Date", "Tue, 24 Nov 2026 21:25:48 GMT"),
            ("Content-Type", "text/plain"),
            ("X-Obs-Meta-Zeta", "  spaced  "),
            ("x-obs-acl", "private"),
            ("x-amz-acl", "ignored-for-obs"),
            ("Host", "bucket.obs.example.com"),
        ]);
        let q = vec![("uploads".to_owned(), None)];
        let sts = string_to_sign("POST", &headers, "/bucket/dir/a%20b.txt", &q);
        assert_eq!(
            sts,
            "POST\n\ntext/plain\nTue, 24 Nov 2026 21:25:48 GMT\nx-obs-acl:private\nx-obs-meta-zeta:spaced\n/bucket/dir/a%20b.txt?uploads"
        );
        assert_eq!(
            signature("obs-secret", &sts),
            "8SUZkDODuwPbUaWakD8LVS8SMeY="
        );
    }

    #[test]
    fn sub_resources_are_filtered_sorted_and_decoded() {
        let q = signing_query("uploadId=a%2Bb%2Fc&partNumber=7&max-parts=1000&apiversion&x=a+b");
        assert_eq!(
            canonical_resource("/b/k", &q),
            "/b/k?partNumber=7&uploadId=a+b/c"
        );
        let q = signing_query("uploads=&acl");
        assert_eq!(canonical_resource("/b/", &q), "/b/?acl&uploads");
    }

    fn domains() -> ObsProtocol {
        ObsProtocol::new(BucketDomains::new(&["obs.test".to_owned()]).expect("domain"))
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(*k, HeaderValue::from_static(v));
        }
        map
    }

    #[test]
    fn resource_path_and_bucket() {
        let obs = domains();
        let vh = headers(&[("host", "bkt.obs.test:8080")]);
        assert_eq!(obs.resource_path(&vh, "/a%20b"), "/bkt/a%20b");
        assert_eq!(obs.resource_path(&vh, "/"), "/bkt/");
        assert_eq!(obs.bucket_of(&vh, "/"), Some("bkt".to_owned()));
        let ps = headers(&[("host", "127.0.0.1:8080")]);
        assert_eq!(obs.resource_path(&ps, "/bkt/k"), "/bkt/k");
        assert_eq!(obs.resource_path(&ps, "/bkt"), "/bkt");
        assert_eq!(obs.bucket_of(&ps, "/bkt"), Some("bkt".to_owned()));
        assert_eq!(obs.bucket_of(&ps, "/"), None);
    }

    fn signed(ring: &KeyRing, extra: &[(&'static str, &'static str)], secret: &str) -> HeaderMap {
        let mut map = headers(&[
            ("host", "bkt.obs.test:8080"),
            ("date", "Tue, 24 Nov 2026 21:25:48 GMT"),
        ]);
        for (k, v) in extra {
            map.append(*k, HeaderValue::from_static(v));
        }
        let list: Vec<(String, String)> = map
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), header_text(v)))
            .collect();
        let sts = string_to_sign(
            "PUT",
            &list,
            "/bkt/k",
            &signing_query("partNumber=1&uploadId=u"),
        );
        let ak = ring.get().expect("keys").access_key;
        let auth = format!("OBS {ak}:{}", signature(secret, &sts));
        map.insert(AUTHORIZATION, HeaderValue::from_str(&auth).expect("ascii"));
        map
    }

    #[test]
    fn verifies() {
        let obs = domains();
        let ring = KeyRing::new(Some(crate::keys::Keys {
            access_key: "ak".to_owned(),
            secret_key: "sk".to_owned(),
            security_token: None,
        }));
        let check = |map: &HeaderMap| {
            obs.verify(&Method::PUT, "/k", "partNumber=1&uploadId=u", map, &ring)
                .map_err(|r| r.code)
        };
        assert_eq!(check(&signed(&ring, &[], "sk")), Ok(Verdict::Verified));
        assert_eq!(
            check(&signed(&ring, &[], "bad")),
            Err("SignatureDoesNotMatch")
        );
        assert_eq!(check(&headers(&[])), Ok(Verdict::Anonymous));
        let mut no_date = signed(&ring, &[], "sk");
        no_date.remove("date");
        assert_eq!(check(&no_date), Err("AccessDenied"));

        ring.set(crate::keys::Keys {
            access_key: "ak".to_owned(),
            secret_key: "sk".to_owned(),
            security_token: Some("tok".to_owned()),
        });
        assert_eq!(
            check(&signed(&ring, &[(SECURITY_TOKEN, "tok")], "sk")),
            Ok(Verdict::Verified)
        );
        assert_eq!(
            check(&signed(&ring, &[(SECURITY_TOKEN, "old")], "sk")),
            Err("InvalidAccessKeyId")
        );
        assert_eq!(check(&signed(&ring, &[], "sk")), Err("InvalidAccessKeyId"));
    }

    #[test]
    fn renames_headers() {
        let mut map = headers(&[
            ("authorization", "OBS a:b"),
            ("x-obs-meta-a", "1"),
            ("x-obs-acl", "private"),
            ("x-obs-security-token", "t"),
            ("content-type", "text/plain"),
        ]);
        headers_to_s3(&mut map);
        assert!(!map.contains_key(AUTHORIZATION));
        assert!(!map.contains_key("x-amz-security-token"));
        assert_eq!(map["x-amz-meta-a"], "1");
        assert_eq!(map["x-amz-acl"], "private");
        assert_eq!(map["content-type"], "text/plain");
        assert_eq!(map.len(), 3);

        let mut answer = headers(&[
            ("x-amz-request-id", "R"),
            ("x-amz-version-id", "v"),
            ("etag", "\"e\""),
        ]);
        headers_to_obs(&mut answer);
        assert_eq!(answer["x-obs-request-id"], "R");
        assert_eq!(answer["x-obs-version-id"], "v");
        assert_eq!(answer["etag"], "\"e\"");
        assert!(!answer.contains_key("x-amz-request-id"));
    }

    #[test]
    fn recognises_aws_signatures() {
        assert!(is_aws_signed(&headers(&[("authorization", "AWS a:b")]), ""));
        assert!(is_aws_signed(
            &headers(&[("authorization", "AWS4-HMAC-SHA256 Credential=..")]),
            ""
        ));
        assert!(!is_aws_signed(
            &headers(&[("authorization", "OBS a:b")]),
            ""
        ));
        assert!(!is_aws_signed(&headers(&[]), "uploads"));
        assert!(is_aws_signed(
            &headers(&[]),
            "X-Amz-Signature=x&X-Amz-Date=y"
        ));
        assert_eq!(
            signed_with(&headers(&[("authorization", "OBS a:b")]), ""),
            "obs"
        );
        assert_eq!(signed_with(&headers(&[]), "apiversion"), "none");
        assert_eq!(
            signed_with(&headers(&[]), "AccessKeyId=a&Signature=s&Expires=1"),
            "obs"
        );
    }
}
