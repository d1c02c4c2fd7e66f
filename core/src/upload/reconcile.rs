//! Reconciling a resumed record with the server: the record may miss parts
//! the server holds (killed between the server's answer and the record's
//! write) or claim parts the server lacks. The server's part list decides,
//! with the local bytes as the judge of a part the record does not know.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::md5::Md5;

use super::checkpoint::{Checkpoint, PartMeta};
use super::plan::Plan;
use crate::error::{Error, ErrorKind, Result};
use crate::http::{self, Client};
use crate::ops::{self, Target};
use crate::sign::{self, Signature};

pub enum Reconciled {
    /// The upload exists; `changed` when the record was corrected.
    Live { changed: bool },
    /// The server refused to list the upload's parts (4xx): the upload may
    /// be gone, or the credentials refused; the caller finds out which.
    Refused(Error),
}

/// An ETag without its quotes, lower-case.
fn bare(etag: &str) -> String {
    etag.trim().trim_matches('"').to_ascii_lowercase()
}

pub async fn reconcile(
    client: &Client,
    sig: Signature,
    target: &Target<'_>,
    plan: Plan,
    record: &mut Checkpoint,
    file: &Arc<std::fs::File>,
) -> Result<Reconciled> {
    let listed = match ops::list_parts(client, sig, target).await {
        Ok(parts) => parts,
        Err(e) if e.kind == ErrorKind::Service && !e.retryable => return Ok(Reconciled::Refused(e)),
        Err(e) => return Err(e),
    };
    let mut changed = false;
    for n in 1..=plan.part_count {
        let (offset, len) = plan.part(n);
        let on_server = listed.iter().find(|p| p.part_number == n);
        let recorded = record.parts_meta.get(&n).filter(|p| p.is_completed && p.etag.is_some());
        let keep = match (recorded, on_server) {
            (Some(r), Some(s)) => {
                s.size == len && s.etag.as_deref().is_none_or(|e| bare(e) == bare(r.etag.as_deref().unwrap_or_default()))
            }
            (Some(_), None) => false,
            (None, Some(s)) => {
                // Adopt a part the record missed when its bytes are ours.
                if let Some(etag) = s.etag.as_deref().filter(|_| s.size == len) {
                    let local = sign::hex(&range_md5(file.clone(), offset, len).await?);
                    if local == bare(etag) {
                        record.parts_meta.insert(n, PartMeta { offset, part_size: len, etag: Some(etag.to_string()), is_completed: true });
                        changed = true;
                    }
                }
                continue;
            }
            (None, None) => continue,
        };
        if !keep {
            record.parts_meta.insert(n, PartMeta { offset, part_size: len, etag: None, is_completed: false });
            changed = true;
        }
    }
    Ok(Reconciled::Live { changed })
}

/// MD5 of a byte range of the file, computed off the async threads.
pub async fn range_md5(file: Arc<std::fs::File>, offset: u64, len: u64) -> Result<[u8; 16]> {
    // Dropped (the call was stopped): the hashing stops within a chunk
    // instead of reading the rest of the file for nothing.
    struct GiveUpOnDrop(Arc<AtomicBool>);
    impl Drop for GiveUpOnDrop {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Relaxed);
        }
    }
    let given_up = GiveUpOnDrop(Arc::new(AtomicBool::new(false)));
    let flag = given_up.0.clone();
    tokio::task::spawn_blocking(move || hash_range(&file, offset, len, &flag))
        .await
        .map_err(|e| Error::new(ErrorKind::Io, "FileReadError", e.to_string()))?
        .map_err(|e| Error::io("FileReadError", "cannot read the file", &e))
}

/// Bytes per read while hashing.
const HASH_CHUNK: usize = 1 << 20;

/// Hashes the range. Past a few chunks, one thread reads ahead while this
/// one hashes, so the rate is MD5's alone, not MD5's plus the reads'.
fn hash_range(file: &std::fs::File, offset: u64, len: u64, given_up: &AtomicBool) -> std::io::Result<[u8; 16]> {
    let end = offset + len;
    let mut h = Md5::new();
    if len <= 4 * HASH_CHUNK as u64 {
        let mut buf = vec![0u8; (len as usize).max(1)];
        http::read_exact_at(file, &mut buf[..len as usize], offset)?;
        h.update(&buf[..len as usize]);
        return Ok(h.finalize());
    }
    let (full_tx, full_rx) = std::sync::mpsc::sync_channel::<std::io::Result<(Vec<u8>, usize)>>(2);
    let (empty_tx, empty_rx) = std::sync::mpsc::channel::<Vec<u8>>();
    for _ in 0..3 {
        let _ = empty_tx.send(vec![0u8; HASH_CHUNK]);
    }
    // `move`: the hasher's ends of both queues belong to this closure and
    // are dropped as it returns, before the scope waits for the reader. A
    // reader blocked on a full queue or waiting for a free buffer then wakes
    // to a closed queue and ends; borrowed ends would outlive the closure
    // and the scope would wait for it forever when the hashing stops early.
    std::thread::scope(move |scope| {
        scope.spawn(move || {
            let mut pos = offset;
            while pos < end {
                // The hasher has stopped (an error) once it drops its end.
                let Ok(mut buf) = empty_rx.recv() else { return };
                let want = ((end - pos) as usize).min(HASH_CHUNK);
                let read = http::read_exact_at(file, &mut buf[..want], pos).map(|()| (buf, want));
                let failed = read.is_err();
                if full_tx.send(read).is_err() || failed {
                    return;
                }
                pos += want as u64;
            }
        });
        let mut hashed = 0u64;
        while hashed < len {
            if given_up.load(Ordering::Relaxed) {
                return Err(std::io::Error::new(std::io::ErrorKind::Interrupted, "the hashing was given up"));
            }
            let (buf, n) = full_rx
                .recv()
                .map_err(|_| std::io::Error::other("the reading thread stopped"))??;
            h.update(&buf[..n]);
            hashed += n as u64;
            let _ = empty_tx.send(buf);
        }
        Ok(h.finalize())
    })
}

/// The ETag S3 and OBS give an object completed from parts with these
/// ETags: MD5 of the parts' binary MD5s, then `-<count>`. `None` when a
/// part's ETag is not a plain MD5 (encrypted uploads).
pub fn multipart_etag<'a>(etags: impl Iterator<Item = &'a str>) -> Option<String> {
    let mut h = Md5::new();
    let mut count = 0;
    for e in etags {
        let hex = bare(e);
        if hex.len() != 32 || !hex.is_ascii() {
            return None;
        }
        let bytes: Option<Vec<u8>> = (0..16).map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()).collect();
        h.update(&bytes?);
        count += 1;
    }
    Some(format!("{}-{count}", sign::hex(&h.finalize())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::md5;

    #[test]
    fn multipart_etag_is_md5_of_part_md5s() {
        // Two parts "a" and "b": md5("a") = 0cc175b9..., md5("b") = 92eb5ffe...
        let a = format!("\"{}\"", sign::hex(&md5::digest(b"a")));
        let b = sign::hex(&md5::digest(b"b"));
        let mut joined = md5::digest(b"a").to_vec();
        joined.extend_from_slice(&md5::digest(b"b"));
        let want = format!("{}-2", sign::hex(&md5::digest(&joined)));
        assert_eq!(multipart_etag([a.as_str(), b.as_str()].into_iter()), Some(want));
        assert_eq!(multipart_etag(["\"not-an-md5\""].into_iter()), None);
        // 32 bytes that are not 32 ASCII characters: no answer, no panic.
        assert_eq!(multipart_etag(["\"ü00000000000000000000000000000a\""].into_iter()), None);
    }

    #[tokio::test]
    async fn range_md5_reads_exactly_the_range() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"0123456789").unwrap();
        let f = Arc::new(std::fs::File::open(&path).unwrap());
        assert_eq!(range_md5(f.clone(), 2, 3).await.unwrap(), md5::digest(b"234"));
        assert_eq!(range_md5(f.clone(), 0, 0).await.unwrap(), md5::digest(b""));
        assert!(range_md5(f, 8, 5).await.is_err(), "past the end is an error");
    }

    #[tokio::test]
    async fn long_ranges_hash_the_same_read_ahead() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let data: Vec<u8> = (0..(11 * HASH_CHUNK + 12_345) as u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        std::fs::write(&path, &data).unwrap();
        let f = Arc::new(std::fs::File::open(&path).unwrap());
        let (off, len) = (777u64, data.len() as u64 - 1000);
        let want = md5::digest(&data[off as usize..(off + len) as usize]);
        assert_eq!(range_md5(f.clone(), off, len).await.unwrap(), want);
        let err = range_md5(f, 5, data.len() as u64).await.unwrap_err();
        assert_eq!(err.code, "FileReadError", "a range past the end is an error, not a hang");
    }

    #[test]
    fn hashing_given_up_returns_and_its_reader_ends() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, vec![3u8; 12 * HASH_CHUNK]).unwrap();
        let file = std::fs::File::open(&path).unwrap();
        for delay_us in [0u64, 200, 2000] {
            let given_up = Arc::new(AtomicBool::new(delay_us == 0));
            let (done_tx, done_rx) = std::sync::mpsc::channel();
            let (file, flag) = (file.try_clone().unwrap(), given_up.clone());
            // The scope inside returns only once its reader thread has ended.
            std::thread::spawn(move || done_tx.send(hash_range(&file, 0, 12 * HASH_CHUNK as u64, &flag).map(|_| ())));
            std::thread::sleep(std::time::Duration::from_micros(delay_us));
            given_up.store(true, Ordering::Relaxed);
            match done_rx.recv_timeout(std::time::Duration::from_secs(20)) {
                Ok(Err(e)) => assert_eq!(e.kind(), std::io::ErrorKind::Interrupted),
                Ok(Ok(())) => assert!(delay_us > 0, "hashing that was given up before it began cannot finish"),
                Err(_) => panic!("hashing given up after {delay_us} us did not return: its reader thread is stuck"),
            }
        }
    }
}
