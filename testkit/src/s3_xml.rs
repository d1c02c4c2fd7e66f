//! The S3 XML documents the testkit writes itself (s3s writes the store's): error
//! bodies for injected faults and for requests the OBS front refuses, and the
//! sink's multipart results. They are small and
//! fixed, so they are formatted by hand rather than through an XML crate.

use std::borrow::Cow;

const DECLARATION: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n";
const NAMESPACE: &str = "http://s3.amazonaws.com/doc/2006-03-01/";

/// Escapes text for an element's content.
pub fn escape(text: &str) -> Cow<'_, str> {
    if !text.contains(['&', '<', '>', '"', '\'']) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

pub fn error(code: &str, message: &str, request_id: &str, host_id: &str) -> String {
    error_with_details(code, message, &[], request_id, host_id)
}

/// An error document with extra elements after the message, as OBS and S3 add to
/// SignatureDoesNotMatch (`StringToSign`, `SignatureProvided`, ...).
pub fn error_with_details(
    code: &str,
    message: &str,
    details: &[(&str, &str)],
    request_id: &str,
    host_id: &str,
) -> String {
    let mut extra = String::new();
    for (name, value) in details {
        extra.push_str(&format!("<{name}>{}</{name}>", escape(value)));
    }
    format!(
        "{DECLARATION}<Error><Code>{}</Code><Message>{}</Message>{extra}<RequestId>{}</RequestId><HostId>{}</HostId></Error>",
        escape(code),
        escape(message),
        escape(request_id),
        escape(host_id),
    )
}

pub fn initiate_multipart_upload_result(bucket: &str, key: &str, upload_id: &str) -> String {
    format!(
        "{DECLARATION}<InitiateMultipartUploadResult xmlns=\"{NAMESPACE}\"><Bucket>{}</Bucket><Key>{}</Key><UploadId>{}</UploadId></InitiateMultipartUploadResult>",
        escape(bucket),
        escape(key),
        escape(upload_id),
    )
}

pub fn complete_multipart_upload_result(
    location: &str,
    bucket: &str,
    key: &str,
    etag: &str,
) -> String {
    format!(
        "{DECLARATION}<CompleteMultipartUploadResult xmlns=\"{NAMESPACE}\"><Location>{}</Location><Bucket>{}</Bucket><Key>{}</Key><ETag>{}</ETag></CompleteMultipartUploadResult>",
        escape(location),
        escape(bucket),
        escape(key),
        escape(etag),
    )
}

/// A ListMultipartUploads answer that lists no upload (the sink keeps none for clients to resume).
pub fn empty_multipart_uploads_list(bucket: &str, prefix: &str) -> String {
    format!(
        "{DECLARATION}<ListMultipartUploadsResult xmlns=\"{NAMESPACE}\"><Bucket>{}</Bucket><KeyMarker></KeyMarker><UploadIdMarker></UploadIdMarker><Prefix>{}</Prefix><MaxUploads>1000</MaxUploads><IsTruncated>false</IsTruncated></ListMultipartUploadsResult>",
        escape(bucket),
        escape(prefix),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes() {
        assert_eq!(escape("a<b>&\"c'"), "a&lt;b&gt;&amp;&quot;c&apos;");
        assert!(matches!(escape("plain"), Cow::Borrowed(_)));
        assert!(error("SlowDown", "x & y", "R", "H").contains("<Message>x &amp; y</Message>"));
        assert!(empty_multipart_uploads_list("b", "a&b").contains("<Prefix>a&amp;b</Prefix><MaxUploads>1000</MaxUploads><IsTruncated>false</IsTruncated>"));
        assert!(
            error_with_details("C", "m", &[("StringToSign", "a\nb<")], "R", "H").contains(
                "<Message>m</Message><StringToSign>a\nb&lt;</StringToSign><RequestId>R</RequestId>"
            )
        );
    }
}
