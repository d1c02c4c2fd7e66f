//! Request signing for OBS, AWS V2 and AWS V4 (header form, unsigned
//! payload): the string to sign, the canonical resource with its signed
//! sub-resources, and the `Authorization` header. Pure functions: the caller
//! supplies the date, headers and credentials.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256};

/// Which header dialect a request speaks and how it is signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Signature {
    /// Huawei OBS: `x-obs-*` headers, `Authorization: OBS ak:sig`.
    Obs,
    /// AWS signature V2: `x-amz-*` headers, `Authorization: AWS ak:sig`.
    V2,
    /// AWS signature V4 over all headers, `x-amz-content-sha256: UNSIGNED-PAYLOAD`.
    V4,
}

impl Signature {
    pub fn header_prefix(self) -> &'static str {
        match self {
            Signature::Obs => "x-obs-",
            Signature::V2 | Signature::V4 => "x-amz-",
        }
    }

    pub fn meta_prefix(self) -> &'static str {
        match self {
            Signature::Obs => "x-obs-meta-",
            Signature::V2 | Signature::V4 => "x-amz-meta-",
        }
    }

    fn auth_prefix(self) -> &'static str {
        match self {
            Signature::Obs => "OBS",
            Signature::V2 | Signature::V4 => "AWS",
        }
    }
}

/// Query parameters that are part of the signed resource (compared
/// lower-case), as OBS and S3 V2 define them. Others are not signed.
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

/// The parts of a request that the signature covers.
pub struct SignInput<'a> {
    pub method: &'a str,
    /// Percent-encoded path including the bucket: `/bucket/key` (also for
    /// virtual-hosted requests, whose wire path lacks the bucket).
    pub resource_path: &'a str,
    /// Query parameters, decoded: `("uploadId", Some("abc"))`, `("uploads", None)`.
    pub query: &'a [(String, Option<String>)],
    /// All request headers (name, value); names in any case.
    pub headers: &'a [(String, String)],
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

/// The string to sign for OBS and V2 header authentication.
pub fn string_to_sign(sig: Signature, input: &SignInput<'_>) -> String {
    let find = |name: &str| {
        input
            .headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    };
    let mut s = String::with_capacity(256);
    s.push_str(input.method);
    s.push('\n');
    for name in ["content-md5", "content-type", "date"] {
        s.push_str(find(name));
        s.push('\n');
    }
    let prefix = sig.header_prefix();
    let mut canonical: Vec<(String, &str)> = input
        .headers
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.as_str()))
        .filter(|(k, _)| k.starts_with(prefix))
        .collect();
    canonical.sort_by(|a, b| a.0.cmp(&b.0));
    for (k, v) in canonical {
        s.push_str(&k);
        s.push(':');
        // Metadata values are trimmed, as both services do before comparing.
        s.push_str(if k.starts_with(sig.meta_prefix()) { v.trim() } else { v });
        s.push('\n');
    }
    s.push_str(&canonical_resource(input.resource_path, input.query));
    s
}

/// base64(HMAC-SHA1(secret, string_to_sign)).
pub fn signature(secret_key: &str, string_to_sign: &str) -> String {
    let mut mac = Hmac::<Sha1>::new_from_slice(secret_key.as_bytes()).expect("HMAC takes keys of any size");
    mac.update(string_to_sign.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// The `Authorization` header value for OBS and V2 (V4: [`authorization_v4`]).
pub fn authorization(sig: Signature, access_key: &str, secret_key: &str, input: &SignInput<'_>) -> String {
    let sts = string_to_sign(sig, input);
    format!("{} {}:{}", sig.auth_prefix(), access_key, signature(secret_key, &sts))
}

pub const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";

/// What V4 needs beyond [`SignInput`]: the wire path (without the bucket for
/// virtual-hosted requests), the already-encoded query, the scope.
pub struct V4Input<'a> {
    pub method: &'a str,
    pub wire_path: &'a str,
    /// `key=value` items exactly as they appear in the URL (encoded).
    pub encoded_query: &'a [String],
    /// Every header that is sent and signed, `x-amz-date` included.
    pub headers: &'a [(String, String)],
    /// `20261124T212548Z`
    pub amz_date: &'a str,
    pub region: &'a str,
}

/// The V4 canonical request (payload unsigned).
pub fn canonical_request_v4(input: &V4Input<'_>) -> (String, String) {
    let mut hs: Vec<(String, &str)> = input.headers.iter().map(|(k, v)| (k.to_ascii_lowercase(), v.as_str())).collect();
    hs.sort_by(|a, b| a.0.cmp(&b.0));
    let signed: Vec<&str> = hs.iter().map(|(k, _)| k.as_str()).collect();
    let signed = signed.join(";");
    let mut q: Vec<String> =
        input.encoded_query.iter().map(|i| if i.contains('=') { i.clone() } else { format!("{i}=") }).collect();
    q.sort();
    let mut c = String::with_capacity(512);
    c.push_str(input.method);
    c.push('\n');
    c.push_str(input.wire_path);
    c.push('\n');
    c.push_str(&q.join("&"));
    c.push('\n');
    for (k, v) in &hs {
        c.push_str(k);
        c.push(':');
        // The value as the server sees it: no spaces at either end (HTTP
        // drops them) and runs of spaces as one (V4's "trimall").
        for (i, word) in v.split(' ').filter(|w| !w.is_empty()).enumerate() {
            if i > 0 {
                c.push(' ');
            }
            c.push_str(word);
        }
        c.push('\n');
    }
    c.push('\n');
    c.push_str(&signed);
    c.push('\n');
    c.push_str(UNSIGNED_PAYLOAD);
    (c, signed)
}

fn hmac256(key: &[u8], data: &str) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any size");
    mac.update(data.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

/// The V4 `Authorization` header value.
pub fn authorization_v4(access_key: &str, secret_key: &str, input: &V4Input<'_>) -> String {
    let short_date = &input.amz_date[..8.min(input.amz_date.len())];
    let scope = format!("{short_date}/{}/s3/aws4_request", input.region);
    let (canonical, signed) = canonical_request_v4(input);
    let sts = format!("AWS4-HMAC-SHA256\n{}\n{scope}\n{}", input.amz_date, hex(&Sha256::digest(canonical.as_bytes())));
    let k = hmac256(format!("AWS4{secret_key}").as_bytes(), short_date);
    let k = hmac256(&k, input.region);
    let k = hmac256(&k, "s3");
    let k = hmac256(&k, "aws4_request");
    let sig = hex(&hmac256(&k, &sts));
    format!("AWS4-HMAC-SHA256 Credential={access_key}/{scope},SignedHeaders={signed},Signature={sig}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    // The example request of the AWS S3 developer guide ("Signing and
    // authenticating REST requests", GET /photos/puppy.jpg), whose published
    // signature is bWq2s1WEIj+Ydj0vQ697zp+IXMU=.
    #[test]
    fn v2_matches_the_published_aws_example() {
        let headers = h(&[("Host", "johnsmith.s3.amazonaws.com"), ("Date", "Tue, 27 Mar 2007 19:36:42 +0000")]);
        let input = SignInput { method: "GET", resource_path: "/johnsmith/photos/puppy.jpg", query: &[], headers: &headers };
        assert_eq!(
            string_to_sign(Signature::V2, &input),
            "GET\n\n\nTue, 27 Mar 2007 19:36:42 +0000\n/johnsmith/photos/puppy.jpg"
        );
        assert_eq!(
            authorization(Signature::V2, "AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", &input),
            "AWS AKIAIOSFODNN7EXAMPLE:bWq2s1WEIj+Ydj0vQ697zp+IXMU="
        );
    }

    // Same guide, PUT with Content-Type: signature MyyxeRY7whkBe+bq8fHCL/2kKUg=.
    #[test]
    fn v2_put_with_content_type_matches_the_published_example() {
        let headers = h(&[
            ("Content-Type", "image/jpeg"),
            ("Content-Length", "94328"),
            ("Date", "Tue, 27 Mar 2007 21:15:45 +0000"),
        ]);
        let input = SignInput { method: "PUT", resource_path: "/johnsmith/photos/puppy.jpg", query: &[], headers: &headers };
        assert_eq!(
            signature("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", &string_to_sign(Signature::V2, &input)),
            "MyyxeRY7whkBe+bq8fHCL/2kKUg="
        );
    }

    #[test]
    fn obs_canonical_headers_are_sorted_lowercase_and_meta_trimmed() {
        let headers = h(&[
            ("Date", "Tue, 24 Nov 2026 21:25:48 GMT"),
            ("Content-Type", "text/plain"),
            ("X-Obs-Meta-Zeta", "  spaced  "),
            ("x-obs-acl", "private"),
            ("x-amz-acl", "ignored-for-obs"),
            ("Host", "bucket.obs.example.com"),
        ]);
        let q = vec![("uploads".to_string(), None)];
        let input = SignInput { method: "POST", resource_path: "/bucket/dir/a%20b.txt", query: &q, headers: &headers };
        assert_eq!(
            string_to_sign(Signature::Obs, &input),
            "POST\n\ntext/plain\nTue, 24 Nov 2026 21:25:48 GMT\nx-obs-acl:private\nx-obs-meta-zeta:spaced\n/bucket/dir/a%20b.txt?uploads"
        );
        // Golden value produced by esdk-obs-nodejs 3.26.8's own doAuth on this request.
        assert_eq!(authorization(Signature::Obs, "obs-ak", "obs-secret", &input), "OBS obs-ak:8SUZkDODuwPbUaWakD8LVS8SMeY=");
    }

    #[test]
    fn v2_with_security_token_and_encoded_upload_id_matches_the_reference() {
        let headers = h(&[("Date", "Tue, 24 Nov 2026 21:25:48 GMT"), ("x-amz-security-token", "tok")]);
        let q = vec![
            ("partNumber".to_string(), Some("7".to_string())),
            ("uploadId".to_string(), Some("a+b/c".to_string())),
            ("max-parts".to_string(), Some("1000".to_string())),
        ];
        let input = SignInput { method: "PUT", resource_path: "/b/k", query: &q, headers: &headers };
        // Golden value produced by esdk-obs-nodejs 3.26.8's own doAuth.
        assert_eq!(authorization(Signature::V2, "obs-ak", "obs-secret", &input), "AWS obs-ak:oSEuKHuI/zHFE/bjYbof5PQJc2E=");
    }

    #[test]
    fn v4_matches_the_reference() {
        let headers = h(&[
            ("Date", "Tue, 24 Nov 2026 21:25:48 GMT"),
            ("Host", "bkt.obs.example.com"),
            ("Content-Length", "5"),
            ("x-amz-date", "20261124T212548Z"),
            ("x-amz-content-sha256", UNSIGNED_PAYLOAD),
        ]);
        let q = vec!["partNumber=2".to_string(), "uploadId=abc".to_string()];
        let input = V4Input {
            method: "PUT",
            wire_path: "/key%20a.bin",
            encoded_query: &q,
            headers: &headers,
            amz_date: "20261124T212548Z",
            region: "cn-north-4",
        };
        // Golden value produced by esdk-obs-nodejs 3.26.8's own v4Auth.
        assert_eq!(
            authorization_v4("AKID", "SECRET", &input),
            "AWS4-HMAC-SHA256 Credential=AKID/20261124/cn-north-4/s3/aws4_request,\
             SignedHeaders=content-length;date;host;x-amz-content-sha256;x-amz-date,\
             Signature=0072551b742516b74d95e4a7819b7eabca146bd280dac896ec14e37a95c74ce7"
        );
    }

    #[test]
    fn v4_signs_header_values_trimmed_with_runs_of_spaces_as_one() {
        let headers = h(&[("Host", "b.example.com"), ("x-amz-meta-a", "  x   y  z "), ("x-amz-meta-b", "plain")]);
        let input = V4Input {
            method: "PUT",
            wire_path: "/k",
            encoded_query: &[],
            headers: &headers,
            amz_date: "20261124T212548Z",
            region: "r",
        };
        let (canonical, signed) = canonical_request_v4(&input);
        assert!(canonical.contains("\nx-amz-meta-a:x y z\nx-amz-meta-b:plain\n"), "{canonical}");
        assert_eq!(signed, "host;x-amz-meta-a;x-amz-meta-b");
    }

    #[test]
    fn sub_resources_are_filtered_sorted_and_decoded() {
        let q = vec![
            ("uploadId".to_string(), Some("a+b/c".to_string())),
            ("partNumber".to_string(), Some("7".to_string())),
            ("max-parts".to_string(), Some("1000".to_string())),
            ("apiversion".to_string(), None),
        ];
        assert_eq!(canonical_resource("/b/k", &q), "/b/k?partNumber=7&uploadId=a+b/c");
    }
}
