//! ListParts as S3 and OBS answer it, in both store modes.
//!
//! s3s-fs 0.14.1 answers ListParts (`GET /bucket/key?uploadId=..`) from a directory
//! listing: each part without an ETag (it does not keep them), in whatever order
//! the directory yields, and all of them whatever `max-parts` and
//! `part-number-marker` say. A real server lists each part's ETag (the quoted MD5
//! of the part), sorted by part number, one page at a time. A client resuming an
//! upload reconciles its record with this list by ETag and pages through it, so a
//! store that differs here would test nothing or fail for the wrong reason.
//!
//! So the front lets s3s answer first (signature checks, errors and the other
//! fields stay s3s's), then rewrites a 200 answer: every listed part gets
//! `"<md5 hex>"` of its stored file (s3s-fs keeps parts as
//! `<root>/.upload_id-<uploadId>.part-<n>`), parts are sorted by number, and only
//! the page after `part-number-marker` of at most `max-parts` (default and cap
//! 1000) is kept, with `IsTruncated`, `NextPartNumberMarker`, `MaxParts` and
//! `PartNumberMarker` set. The document is written back through s3s's own XML
//! serialiser, so it has the form of every other s3s answer.
//!
//! s3s-fs's other ListParts quirk stays visible: an unknown upload id lists no
//! parts (200) where OBS answers 404 NoSuchUpload.

use std::io::Read;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::header::{CONTENT_LENGTH, HeaderValue};
use hyper::{Method, Response, StatusCode};
use md5::{Digest, Md5};
use s3s::dto::{ETag, ListPartsOutput, Part};
use s3s::xml::{DeError, Deserializer, Serialize, Serializer};

use crate::backend::BoxError;
use crate::request_target::{query_pairs, query_value};

/// What S3 and OBS return at most, and by default.
const MAX_PARTS: i32 = 1000;

/// The page of parts a ListParts request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    max_parts: i32,
    marker: i32,
}

/// The page a request asks for, if it is a ListParts request (GET with `uploadId`
/// and without `partNumber`, which would be GetObject of one part).
pub fn list_parts_page(method: &Method, raw_query: &str) -> Option<Page> {
    if method != Method::GET {
        return None;
    }
    let pairs = query_pairs(raw_query);
    if query_value(&pairs, "uploadId").is_none() || query_value(&pairs, "partNumber").is_some() {
        return None;
    }
    // s3s has already refused values that are not integers.
    let number = |name: &str| query_value(&pairs, name).and_then(|v| v.trim().parse::<i32>().ok());
    Some(Page {
        max_parts: number("max-parts").unwrap_or(MAX_PARTS).clamp(0, MAX_PARTS),
        marker: number("part-number-marker").unwrap_or(0).max(0),
    })
}

/// s3s's ListParts answer, rewritten as described in the module header. Answers
/// other than 200, and documents this cannot read, pass unchanged.
pub async fn rewrite(
    response: Response<s3s::Body>,
    root: &Path,
    page: Page,
) -> Result<Response<s3s::Body>, BoxError> {
    if response.status() != StatusCode::OK {
        return Ok(response);
    }
    let (mut parts, body) = response.into_parts();
    let original = body.collect().await?.to_bytes();
    let document = match parse(&original) {
        Some(listing) => match render(listing, root, page).await {
            Ok(document) => Bytes::from(document),
            Err(err) => {
                eprintln!("obs-testkit: cannot rewrite ListParts: {err}");
                original
            }
        },
        None => {
            eprintln!("obs-testkit: ListParts answer not understood; passed on unchanged");
            original
        }
    };
    parts
        .headers
        .insert(CONTENT_LENGTH, HeaderValue::from(document.len()));
    Ok(Response::from_parts(parts, s3s::Body::from(document)))
}

/// s3s-fs's listing: the fields it writes (others make the document unreadable here).
#[derive(Debug, Default)]
struct Listing {
    bucket: Option<String>,
    key: Option<String>,
    upload_id: Option<String>,
    parts: Vec<Part>,
}

fn parse(document: &[u8]) -> Option<Listing> {
    let mut listing = Listing::default();
    let mut d = Deserializer::new(document);
    d.named_element("ListPartsResult", |d| {
        d.for_each_element(|d, name| {
            match name {
                b"Bucket" => listing.bucket = Some(d.content()?),
                b"Key" => listing.key = Some(d.content()?),
                b"UploadId" => listing.upload_id = Some(d.content()?),
                b"Part" => listing.parts.push(d.content()?),
                _ => return Err(DeError::UnexpectedTagName),
            }
            Ok(())
        })
    })
    .ok()?;
    Some(listing)
}

async fn render(listing: Listing, root: &Path, page: Page) -> Result<Vec<u8>, BoxError> {
    let Listing {
        bucket,
        key,
        upload_id,
        mut parts,
    } = listing;
    parts.retain(|part| part.part_number.is_some_and(|n| n > page.marker));
    parts.sort_by_key(|part| part.part_number);
    let truncated = parts.len() > page.max_parts as usize;
    parts.truncate(page.max_parts as usize);
    let next_marker = parts.last().and_then(|part| part.part_number);

    if let Some(upload_id) = upload_id.as_deref().filter(|id| is_upload_id(id)) {
        let files: Vec<(usize, PathBuf)> = parts
            .iter()
            .enumerate()
            .filter_map(|(i, part)| {
                let n = part.part_number?;
                Some((i, root.join(format!(".upload_id-{upload_id}.part-{n}"))))
            })
            .collect();
        let digests = tokio::task::spawn_blocking(move || {
            files
                .into_iter()
                .map(|(i, path)| (i, md5_hex(&path)))
                .collect::<Vec<_>>()
        })
        .await?;
        for (i, digest) in digests {
            match digest {
                Ok(hex) => parts[i].e_tag = Some(ETag::Strong(hex)),
                // Completed or aborted meanwhile: list it as s3s-fs did.
                Err(err) => eprintln!("obs-testkit: ListParts: cannot hash a part: {err}"),
            }
        }
    }

    let output = ListPartsOutput {
        bucket,
        key,
        upload_id,
        parts: Some(parts),
        is_truncated: Some(truncated),
        max_parts: Some(page.max_parts),
        part_number_marker: Some(page.marker),
        next_part_number_marker: next_marker,
        ..Default::default()
    };
    let mut document = Vec::with_capacity(512);
    let mut serializer = Serializer::new(&mut document);
    serializer.decl()?;
    output.serialize(&mut serializer)?;
    Ok(document)
}

/// s3s-fs's upload ids are UUIDs; anything else must not become part of a path.
fn is_upload_id(id: &str) -> bool {
    !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

fn md5_hex(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Md5::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const UPLOAD: &str = "0f0e0d0c-0b0a-4908-8706-050403020100";

    fn listing_document() -> String {
        let part = |n: i32, size: i64| {
            format!(
                "<Part><LastModified>2026-11-24T21:25:48.000Z</LastModified><PartNumber>{n}</PartNumber><Size>{size}</Size></Part>"
            )
        };
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><ListPartsResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Bucket>b</Bucket><Key>a &amp; b</Key>{}{}{}<UploadId>{UPLOAD}</UploadId></ListPartsResult>",
            part(3, 1),
            part(1, 2),
            part(2, 3)
        )
    }

    #[test]
    fn pages() {
        assert_eq!(
            list_parts_page(&Method::GET, "uploadId=x&partNumber=1"),
            None
        );
        assert_eq!(list_parts_page(&Method::PUT, "uploadId=x"), None);
        assert_eq!(
            list_parts_page(&Method::GET, "uploadId=x"),
            Some(Page {
                max_parts: 1000,
                marker: 0
            })
        );
        assert_eq!(
            list_parts_page(
                &Method::GET,
                "uploadId=x&max-parts=5000&part-number-marker=7"
            ),
            Some(Page {
                max_parts: 1000,
                marker: 7
            })
        );
    }

    #[tokio::test]
    async fn fills_etags_sorts_and_pages() {
        let root = std::env::temp_dir().join(format!("obs-testkit-lp-{}", std::process::id()));
        std::fs::create_dir_all(&root).expect("root");
        for (n, content) in [(1, "aa"), (2, "bbb"), (3, "c")] {
            std::fs::write(root.join(format!(".upload_id-{UPLOAD}.part-{n}")), content)
                .expect("part");
        }
        let listing = parse(listing_document().as_bytes()).expect("parsed");
        assert_eq!(listing.key.as_deref(), Some("a & b"));
        let page = Page {
            max_parts: 2,
            marker: 0,
        };
        let document =
            String::from_utf8(render(listing, &root, page).await.expect("rendered")).expect("utf8");
        let first = document.find("<PartNumber>1<").expect("part 1");
        let second = document.find("<PartNumber>2<").expect("part 2");
        assert!(first < second, "{document}");
        assert!(!document.contains("<PartNumber>3<"), "{document}");
        // md5("aa"), md5("bbb")
        assert!(
            document.contains("<ETag>\"4124bc0a9335c27f086f24ba207a4912\"</ETag>"),
            "{document}"
        );
        assert!(
            document.contains("<ETag>\"08f8e0260c64418510cefb2b06eee5cd\"</ETag>"),
            "{document}"
        );
        assert!(
            document.contains("<IsTruncated>true</IsTruncated>"),
            "{document}"
        );
        assert!(
            document.contains("<NextPartNumberMarker>2</NextPartNumberMarker>"),
            "{document}"
        );
        assert!(document.contains("<Key>a &amp; b</Key>"), "{document}");

        let listing = parse(listing_document().as_bytes()).expect("parsed");
        let page = Page {
            max_parts: 2,
            marker: 2,
        };
        let document =
            String::from_utf8(render(listing, &root, page).await.expect("rendered")).expect("utf8");
        assert!(document.contains("<PartNumber>3<"), "{document}");
        assert!(!document.contains("<PartNumber>2<"), "{document}");
        assert!(
            document.contains("<IsTruncated>false</IsTruncated>"),
            "{document}"
        );
        // md5("c")
        assert!(
            document.contains("\"4a8a08f09d37b73795649038408b5f33\""),
            "{document}"
        );
        let _ = std::fs::remove_dir_all(&root);
    }
}
