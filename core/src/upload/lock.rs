//! One upload at a time per checkpoint record. Two uploads given the same
//! `CheckpointFile` (a retry started while the first call still runs, two
//! processes, two files pointed at one record by mistake) would overwrite
//! each other's record, and the next resume would find a record for another
//! file and abort that upload. The second one is refused instead.
//!
//! The lock is an advisory lock (`flock`) on a file beside the record,
//! `.<record name>.lock`: the record itself is replaced by rename on every
//! write, so it cannot carry a lock. The kernel drops the lock when its
//! holder exits, however it exits, so a killed process never leaves a
//! record locked. The holder removes the file when it is done.

use std::path::{Path, PathBuf};

use crate::error::{Error, ErrorKind, Result};

/// Held while an upload may read or write its record; dropping it frees
/// the record for the next upload.
pub struct RecordLock {
    path: PathBuf,
    // The open file holds the lock; closing it releases the lock.
    _file: std::fs::File,
}

impl Drop for RecordLock {
    fn drop(&mut self) {
        // Removed while still locked: whoever opened this file meanwhile
        // sees it gone once they lock it, and opens a new one.
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The error of an upload whose record another upload holds.
pub fn in_use_error() -> Error {
    Error::new(
        ErrorKind::Checkpoint,
        "CheckpointFileInUse",
        "CheckpointFile is in use by another upload (in this or another process); nothing was sent",
    )
}

/// The lock file of a record.
pub fn lock_path(record: &Path) -> PathBuf {
    let name = record.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    record.with_file_name(format!(".{name}.lock"))
}

/// Locks `record` for this upload. `Err(CheckpointFileInUse)` when another
/// upload holds it. Where no lock can be taken (a folder that cannot be
/// written, a file system without locks) the upload goes on without one,
/// as it would have before: `Ok(None)`; writing the record then fails with
/// its own error if the folder is the cause.
pub async fn acquire(record: &Path) -> Result<Option<RecordLock>> {
    let path = lock_path(record);
    tokio::task::spawn_blocking(move || acquire_blocking(path))
        .await
        .unwrap_or(Ok(None))
}

#[cfg(unix)]
fn acquire_blocking(path: PathBuf) -> Result<Option<RecordLock>> {
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    use std::os::unix::io::AsRawFd;

    // A holder that finishes removes the file it locked; one that we opened
    // just before that is locked by nobody but guards nothing. A few tries
    // get past any such race.
    for _ in 0..16 {
        let mut opts = std::fs::OpenOptions::new();
        // A link planted at the lock's name is not followed.
        opts.read(true).write(true).create(true).mode(0o600).custom_flags(libc::O_NOFOLLOW);
        let Ok(file) = opts.open(&path) else { return Ok(None) };
        // SAFETY: flock on a descriptor this function owns.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let e = std::io::Error::last_os_error();
            return match e.raw_os_error() {
                Some(code) if code == libc::EWOULDBLOCK => Err(in_use_error()),
                _ => Ok(None),
            };
        }
        let ours = file.metadata().ok().map(|m| (m.dev(), m.ino()));
        let at_path = std::fs::symlink_metadata(&path).ok().map(|m| (m.dev(), m.ino()));
        if ours.is_some() && ours == at_path {
            return Ok(Some(RecordLock { path, _file: file }));
        }
        // Locked a file that its holder removed meanwhile: open again.
        drop(file);
    }
    Ok(None)
}

#[cfg(not(unix))]
fn acquire_blocking(_path: PathBuf) -> Result<Option<RecordLock>> {
    Ok(None)
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    fn record_in(dir: &tempfile::TempDir) -> PathBuf {
        dir.path().join("r.upload_record")
    }

    #[tokio::test]
    async fn a_held_record_is_refused_until_its_holder_is_done() {
        let dir = tempfile::tempdir().unwrap();
        let record = record_in(&dir);
        let first = acquire(&record).await.unwrap().expect("a lock where files can be written");
        assert!(lock_path(&record).exists());
        let second = acquire(&record).await;
        assert_eq!(second.err().map(|e| e.code), Some("CheckpointFileInUse".to_string()));
        drop(first);
        assert!(!lock_path(&record).exists(), "the holder removes the lock file");
        let third = acquire(&record).await.unwrap();
        assert!(third.is_some());
    }

    #[tokio::test]
    async fn a_lock_file_left_by_a_dead_process_does_not_block() {
        let dir = tempfile::tempdir().unwrap();
        let record = record_in(&dir);
        std::fs::write(lock_path(&record), b"").unwrap();
        let lock = acquire(&record).await.unwrap();
        assert!(lock.is_some());
    }

    #[tokio::test]
    async fn a_link_at_the_lock_name_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let record = record_in(&dir);
        let target = dir.path().join("precious");
        std::fs::write(&target, b"keep").unwrap();
        std::os::unix::fs::symlink(&target, lock_path(&record)).unwrap();
        let lock = acquire(&record).await.unwrap();
        assert!(lock.is_none(), "no lock through a link");
        assert_eq!(std::fs::read(&target).unwrap(), b"keep");
        assert!(std::fs::symlink_metadata(lock_path(&record)).unwrap().file_type().is_symlink(), "the link is left alone");
    }

    #[tokio::test]
    async fn racing_holders_never_hold_at_once() {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicUsize, Ordering};
        let dir = tempfile::tempdir().unwrap();
        let record = Arc::new(record_in(&dir));
        let holders = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let (record, holders) = (record.clone(), holders.clone());
            tasks.push(std::thread::spawn(move || {
                let mut held = 0;
                for _ in 0..300 {
                    if let Ok(Some(lock)) = acquire_blocking(lock_path(&record)) {
                        assert_eq!(holders.fetch_add(1, Ordering::SeqCst), 0, "two holders at once");
                        std::thread::yield_now();
                        holders.fetch_sub(1, Ordering::SeqCst);
                        drop(lock);
                        held += 1;
                    }
                }
                held
            }));
        }
        let total: usize = tasks.into_iter().map(|t| t.join().unwrap()).sum();
        assert!(total > 0);
    }
}
