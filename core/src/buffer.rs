//! Reusable buffers for request bodies. A part's bytes are read from the
//! file into a pooled buffer and handed to the connection as `Bytes`; when
//! the connection is done with them the buffer goes back to the pool. Fresh
//! allocations of this size would be mapped, zeroed and unmapped by the
//! allocator every time, which costs more CPU than the upload itself.

use std::sync::Mutex;

use bytes::Bytes;

/// Size of one read from the file into the request body. Small enough that
/// the HTTP client's queue (about 400 KiB a connection) does not keep large
/// buffers alive for their last few bytes; large enough that the reads cost
/// little next to the copy.
pub const CHUNK: usize = 64 * 1024;
/// Buffers kept for reuse; more than this are freed (bounds idle memory: 24 MiB).
const KEEP: usize = 384;

static POOL: Mutex<Vec<Box<[u8]>>> = Mutex::new(Vec::new());

/// A buffer of `CHUNK` bytes, from the pool when one is free.
pub fn take() -> Box<[u8]> {
    let reused = POOL.lock().unwrap_or_else(|p| p.into_inner()).pop();
    reused.unwrap_or_else(|| vec![0u8; CHUNK].into_boxed_slice())
}

fn give_back(buf: Box<[u8]>) {
    let mut pool = POOL.lock().unwrap_or_else(|p| p.into_inner());
    if pool.len() < KEEP {
        pool.push(buf);
    }
}

/// The first `len` bytes of a pooled buffer, owned by `Bytes`.
struct Filled {
    buf: Option<Box<[u8]>>,
    len: usize,
}

impl AsRef<[u8]> for Filled {
    fn as_ref(&self) -> &[u8] {
        self.buf.as_deref().map(|b| &b[..self.len]).unwrap_or_default()
    }
}

impl Drop for Filled {
    fn drop(&mut self) {
        if let Some(buf) = self.buf.take() {
            give_back(buf);
        }
    }
}

/// Wraps the first `len` bytes of `buf` (from [`take`]) as `Bytes`; the
/// buffer returns to the pool when the last clone is dropped.
pub fn freeze(buf: Box<[u8]>, len: usize) -> Bytes {
    let len = len.min(buf.len());
    Bytes::from_owner(Filled { buf: Some(buf), len })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_come_back_to_the_pool() {
        let mut b = take();
        b[..3].copy_from_slice(b"abc");
        let ptr = b.as_ptr();
        let bytes = freeze(b, 3);
        assert_eq!(&bytes[..], b"abc");
        let clone = bytes.clone();
        drop(bytes);
        assert_eq!(&clone[..], b"abc", "alive while any clone is");
        drop(clone);
        // Another thread's test may take it first; only check when we get one back.
        let again = take();
        if again.as_ptr() == ptr {
            assert_eq!(again.len(), CHUNK);
        }
    }
}
