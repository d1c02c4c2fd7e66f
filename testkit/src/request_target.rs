//! The request target (`/bucket/key?partNumber=1&uploadId=..`) decoded the way fault
//! matching, the request log and the sink need it: the percent-decoded path, and the
//! query as decoded `(key, value)` pairs where a bare `?uploads` has the value "".
//!
//! Also the absolute form (`PUT http://bucket.obs.test:1234/key?.. HTTP/1.1`), which a
//! client sends when its HTTP proxy is this server: tests reach virtual-hosted
//! buckets that way without any DNS. [`to_origin_form`] turns it into the origin
//! form with that authority as Host, before anything else looks at the request.

use hyper::Request;
use hyper::header::{HOST, HeaderValue};
use hyper::http::uri::{PathAndQuery, Uri};

/// Rewrites an absolute-form request (`http://host:port/path?query`) as the
/// origin-form request `/path?query` with `Host: host:port`: RFC 9112 3.2.2 says
/// the authority of the target wins over any Host header the client also sent.
pub fn to_origin_form<B>(mut request: Request<B>) -> Request<B> {
    let Some(authority) = request.uri().authority().cloned() else {
        return request;
    };
    let path_and_query = request
        .uri()
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    if let Ok(host) = HeaderValue::from_str(authority.as_str()) {
        request.headers_mut().insert(HOST, host);
    }
    *request.uri_mut() = Uri::from(path_and_query);
    request
}

/// Percent-decodes one component. Invalid escapes are kept as written and invalid
/// UTF-8 is replaced, because a malformed request must still be logged and matched,
/// never rejected here.
pub fn decode_component(raw: &str, plus_is_space: bool) -> String {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let escaped = bytes
                    .get(i + 1..i + 3)
                    .and_then(|hex| std::str::from_utf8(hex).ok())
                    .and_then(|hex| u8::from_str_radix(hex, 16).ok());
                match escaped {
                    Some(byte) => {
                        out.push(byte);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            byte => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub fn decode_path(raw_path: &str) -> String {
    decode_component(raw_path, false)
}

pub fn query_pairs(raw_query: &str) -> Vec<(String, String)> {
    raw_query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (decode_component(key, true), decode_component(value, true))
        })
        .collect()
}

pub fn query_value<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_escapes_and_keeps_broken_ones() {
        assert_eq!(decode_path("/b/a%20b%2Fc"), "/b/a b/c");
        assert_eq!(decode_path("/b/100%"), "/b/100%");
        assert_eq!(decode_path("/b/%zz"), "/b/%zz");
        assert_eq!(decode_path("/b/a+b"), "/b/a+b");
    }

    #[test]
    fn absolute_form_becomes_origin_form() {
        let request = Request::builder()
            .method("PUT")
            .uri("http://bkt.obs.test:4321/a%20b?partNumber=1&uploadId=x")
            .header(HOST, "wrong.example")
            .body(())
            .expect("request");
        let request = to_origin_form(request);
        assert_eq!(request.uri().to_string(), "/a%20b?partNumber=1&uploadId=x");
        assert_eq!(request.headers()[HOST], "bkt.obs.test:4321");

        let request = Request::builder()
            .uri("http://bkt.obs.test")
            .body(())
            .expect("request");
        let request = to_origin_form(request);
        assert_eq!(request.uri().to_string(), "/");
        assert_eq!(request.headers()[HOST], "bkt.obs.test");

        let request = Request::builder()
            .uri("/b/k?x")
            .header(HOST, "127.0.0.1:1")
            .body(())
            .expect("request");
        let request = to_origin_form(request);
        assert_eq!(request.uri().to_string(), "/b/k?x");
        assert_eq!(request.headers()[HOST], "127.0.0.1:1");
    }

    #[test]
    fn splits_query() {
        let pairs = query_pairs("uploads&partNumber=3&uploadId=a%2Bb&x=1+2");
        assert_eq!(query_value(&pairs, "uploads"), Some(""));
        assert_eq!(query_value(&pairs, "partNumber"), Some("3"));
        assert_eq!(query_value(&pairs, "uploadId"), Some("a+b"));
        assert_eq!(query_value(&pairs, "x"), Some("1 2"));
        assert_eq!(query_value(&pairs, "y"), None);
    }
}
