//! The request target (`/bucket/key?partNumber=1&uploadId=..`) decoded the way fault
//! matching, the request log and the sink need it: the percent-decoded path, and the
//! query as decoded `(key, value)` pairs where a bare `?uploads` has the value "".

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
    fn splits_query() {
        let pairs = query_pairs("uploads&partNumber=3&uploadId=a%2Bb&x=1+2");
        assert_eq!(query_value(&pairs, "uploads"), Some(""));
        assert_eq!(query_value(&pairs, "partNumber"), Some("3"));
        assert_eq!(query_value(&pairs, "uploadId"), Some("a+b"));
        assert_eq!(query_value(&pairs, "x"), Some("1 2"));
        assert_eq!(query_value(&pairs, "y"), None);
    }
}
