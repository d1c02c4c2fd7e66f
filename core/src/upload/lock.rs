//! One upload at a time per checkpoint record. Two uploads given the same
//! `CheckpointFile` (a retry started while the first call still runs, two
//! processes, two files pointed at one record by mistake) would overwrite
//! each other's record, and the next resume would find a record for another
//! file and abort that upload. The second one is refused instead.
//!
//! The lock is an advisory lock (`flock`) on a file beside the record,
//! `.<record name>.obs-lock`: the record itself is replaced by rename on every
//! write, so it cannot carry a lock. The kernel drops the lock when its
//! holder exits, however it exits, so a killed process never leaves a
//! record locked. The holder removes the file when it is done.
//!
//! A lock file this upload made itself is also the first write of a new
//! record: written, synced and linked at the record's name, which then
//! appears whole or not at all, as a rename would make it appear. That
//! spares a new file per upload (a small upload with a record writes it
//! only once), which is most of what a record costs on some file systems.

#![cfg_attr(not(unix), allow(dead_code))]

use std::path::{Path, PathBuf};
use crate::descriptors::Patience;

use super::checkpoint;
use crate::error::{Error, ErrorKind, Result};

/// Held while an upload may read or write its record; dropping it frees
/// the record for the next upload.
pub struct RecordLock {
    record: PathBuf,
    path: PathBuf,
    // The open file holds the lock; closing it releases the lock.
    file: std::fs::File,
    /// Made by this upload and still empty: it may become the record.
    fresh: std::sync::atomic::AtomicBool,
}

impl RecordLock {
    /// Writes a new record through the lock file (see the module's
    /// comment): false when it cannot (a record is there already, the lock
    /// file was not made by this upload or has served, the file system has
    /// no links or refused a step), and the record is to be written the
    /// usual way, which fails with its own error if it must.
    #[cfg(unix)]
    pub fn write_new_record(&self, json: &[u8]) -> bool {
        use std::os::unix::fs::FileExt;
        if !self.fresh.swap(false, std::sync::atomic::Ordering::AcqRel) || std::fs::symlink_metadata(&self.record).is_ok() {
            return false;
        }
        let written = (|| {
            // Made private (mode 0600, see `acquire_blocking`), as every record is.
            self.file.write_all_at(json, 0)?;
            checkpoint::sync_unless_unsupported(&self.file)?;
            std::fs::hard_link(&self.path, &self.record)?;
            if !super::same_file(&std::fs::symlink_metadata(&self.record)?, &self.file.metadata()?) {
                // Something else was at the lock's name: its link goes.
                let _ = std::fs::remove_file(&self.record);
                return Err(std::io::Error::other("the lock file was replaced"));
            }
            Ok::<_, std::io::Error>(())
        })();
        written.is_ok()
    }

    #[cfg(not(unix))]
    pub fn write_new_record(&self, _json: &[u8]) -> bool {
        false
    }
}

impl Drop for RecordLock {
    fn drop(&mut self) {
        // The holder's writes are over (each keeps the lock until it ends)
        // and each renamed its temporary file away: one still there was
        // left by a writer that was killed. Looked for first: a removal
        // holds the folder's lock even when it finds nothing, and uploads
        // beside this one wait on it.
        let temp = checkpoint::locked_temp_path(&self.record);
        if std::fs::symlink_metadata(&temp).is_ok() {
            let _ = std::fs::remove_file(&temp);
        }
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

/// The error of an upload whose record's lock file another user made.
fn in_use_by_another_user() -> Error {
    Error::new(
        ErrorKind::Checkpoint,
        "CheckpointFileInUse",
        "CheckpointFile is in use by another user's upload, or was left locked by one: its lock file (.<record name>.obs-lock, beside it) belongs to another user and cannot be opened; nothing was sent",
    )
}

/// The lock file of a record. A name of our own: the holder removes it
/// when done, so it must not be a name another tool might use.
pub fn lock_path(record: &Path) -> PathBuf {
    checkpoint::sidecar_path(record, LOCK_SUFFIX)
}

pub const LOCK_SUFFIX: &str = ".obs-lock";

/// Drops the lock off the async threads (removing its file is file system
/// work, which a hung network mount could make wait).
pub async fn release(lock: Option<std::sync::Arc<RecordLock>>) {
    if let Some(lock) = lock {
        let _ = tokio::task::spawn_blocking(move || drop(lock)).await;
    }
}

fn lock_error(e: &std::io::Error) -> Error {
    Error::io("WriteCheckpointFileError", "cannot lock the checkpoint file", e)
}

/// Locks `record` for this upload. `Err(CheckpointFileInUse)` when another
/// upload holds it. Where no lock can be taken at all (a folder that cannot
/// be written, a file system without locks, a link at the lock's name) the
/// upload goes on without one, as it would have before: `Ok(None)`;
/// writing the record then fails with its own error if the folder is the
/// cause. Any other failure is an error: going on unlocked could undo
/// another upload.
/// `patience`: how long to wait for a file descriptor when the process has
/// none left (see `descriptors`). File system work: run it off the async
/// threads.
#[cfg(unix)]
pub(crate) fn acquire_blocking(record: PathBuf, patience: Patience) -> Result<Option<RecordLock>> {
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    use std::os::unix::io::AsRawFd;

    let path = lock_path(&record);
    let open = |write: bool, new: bool| {
        let mut opts = std::fs::OpenOptions::new();
        // A link planted at the lock's name is not followed, and a FIFO
        // there does not make the open wait. Private (0600), as it may
        // become the record: another user's upload cannot open it, and is
        // told the record is in use.
        opts.read(true).write(write).mode(0o600).custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK);
        if new {
            opts.create_new(true);
        } else {
            opts.create(write);
        }
        opts.open(&path)
    };
    // A lock file this upload makes may become the record; one found there
    // (left by a killed holder, maybe the record itself) is only locked.
    let open_writable = || match open(true, true) {
        Ok(f) => Ok((f, true)),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => open(true, false).map(|f| (f, false)),
        Err(e) => Err(e),
    };
    // A holder that finishes removes the file it locked; one that we opened
    // just before that is locked by nobody but guards nothing, and is
    // opened again. Running out of tries means others keep taking it.
    for _ in 0..16 {
        let (file, fresh) = match crate::descriptors::retry_blocking(&patience, open_writable) {
            Ok(f) => f,
            Err(e) => match e.raw_os_error() {
                // Another user's lock file in a shared folder: a read-only
                // descriptor locks as well (one made readable by all, as
                // older versions made them); one that cannot be opened is
                // another user's private one. No file and no right to make
                // one: the folder cannot be written.
                Some(libc::EACCES | libc::EPERM) => match open(false, false) {
                    Ok(f) => (f, false),
                    Err(_) if std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_file()) => return Err(in_use_by_another_user()),
                    Err(_) => return Ok(None),
                },
                Some(libc::EROFS | libc::ELOOP) => return Ok(None),
                _ => return Err(lock_error(&e)),
            },
        };
        // Something else planted at the lock's name: no lock to be had.
        let ours = match file.metadata() {
            Ok(m) if m.is_file() => (m.dev(), m.ino()),
            _ => return Ok(None),
        };
        // SAFETY: flock on a descriptor this function owns.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let e = std::io::Error::last_os_error();
            match e.raw_os_error() {
                Some(code) if code == libc::EWOULDBLOCK => return Err(in_use_error()),
                Some(libc::EINTR) => continue,
                // The file system has no locks (or, as NFS, none through
                // a descriptor opened read-only).
                Some(libc::ENOLCK | libc::EOPNOTSUPP | libc::ENOSYS | libc::EINVAL | libc::EBADF) => return Ok(None),
                _ => return Err(lock_error(&e)),
            }
        }
        let at_path = std::fs::symlink_metadata(&path).ok().map(|m| (m.dev(), m.ino()));
        if at_path == Some(ours) {
            let fresh = std::sync::atomic::AtomicBool::new(fresh);
            return Ok(Some(RecordLock { record, path, file, fresh }));
        }
    }
    Err(in_use_error())
}

#[cfg(not(unix))]
pub(crate) fn acquire_blocking(_record: PathBuf, _patience: Patience) -> Result<Option<RecordLock>> {
    Ok(None)
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::FileTypeExt;

    fn patience() -> Patience {
        Patience::new(std::time::Duration::from_secs(5), || false)
    }

    async fn acquire(record: &Path, patience: Patience) -> Result<Option<RecordLock>> {
        let record = record.to_path_buf();
        tokio::task::spawn_blocking(move || acquire_blocking(record, patience)).await.unwrap()
    }

    fn record_in(dir: &tempfile::TempDir) -> PathBuf {
        dir.path().join("r.upload_record")
    }

    #[tokio::test]
    async fn a_held_record_is_refused_until_its_holder_is_done() {
        let dir = tempfile::tempdir().unwrap();
        let record = record_in(&dir);
        let first = acquire(&record, patience()).await.unwrap().expect("a lock where files can be written");
        assert!(lock_path(&record).exists());
        let second = acquire(&record, patience()).await;
        assert_eq!(second.err().map(|e| e.code), Some("CheckpointFileInUse".to_string()));
        drop(first);
        assert!(!lock_path(&record).exists(), "the holder removes the lock file");
        let third = acquire(&record, patience()).await.unwrap();
        assert!(third.is_some());
    }

    #[tokio::test]
    async fn a_lock_file_left_by_a_dead_process_does_not_block() {
        let dir = tempfile::tempdir().unwrap();
        let record = record_in(&dir);
        std::fs::write(lock_path(&record), b"").unwrap();
        let lock = acquire(&record, patience()).await.unwrap();
        assert!(lock.is_some());
    }

    #[tokio::test]
    async fn a_temporary_record_a_killed_writer_left_is_removed_on_release() {
        let dir = tempfile::tempdir().unwrap();
        let record = record_in(&dir);
        std::fs::write(checkpoint::locked_temp_path(&record), b"{\"torn").unwrap();
        std::fs::write(&record, b"{}").unwrap();
        let lock = acquire(&record, patience()).await.unwrap();
        assert!(lock.is_some());
        release(lock.map(std::sync::Arc::new)).await;
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("r.upload_record")], "the record stays, the rest goes");
    }

    #[test]
    fn a_new_record_is_the_lock_file_linked_at_the_records_name() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let dir = tempfile::tempdir().unwrap();
        let record = record_in(&dir);
        let lock = acquire_blocking(record.clone(), patience()).unwrap().unwrap();
        assert!(lock.write_new_record(b"{\"first\":1}"));
        assert_eq!(std::fs::read(&record).unwrap(), b"{\"first\":1}");
        let (r, l) = (std::fs::metadata(&record).unwrap(), std::fs::metadata(lock_path(&record)).unwrap());
        assert_eq!((r.ino(), r.nlink()), (l.ino(), 2), "one file under two names");
        assert_eq!(r.permissions().mode() & 0o777, 0o600);
        assert!(!lock.write_new_record(b"{}"), "only once: later writes replace the record by rename");
        // A later write replaces the record; the lock file keeps the lock.
        checkpoint::save(&record, b"{\"second\":2}", true).unwrap();
        assert!(matches!(acquire_blocking(record.clone(), patience()), Err(e) if e.code == "CheckpointFileInUse"));
        drop(lock);
        assert_eq!(std::fs::read(&record).unwrap(), b"{\"second\":2}");
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("r.upload_record")]);
    }

    #[test]
    fn a_lock_file_not_made_by_this_upload_or_a_record_already_there_is_not_written_through() {
        let dir = tempfile::tempdir().unwrap();
        // Left by a killed holder: it may be the record itself.
        let record = record_in(&dir);
        std::fs::write(&record, b"{\"kept\":1}").unwrap();
        std::fs::hard_link(&record, lock_path(&record)).unwrap();
        let lock = acquire_blocking(record.clone(), patience()).unwrap().unwrap();
        std::fs::remove_file(&record).unwrap();
        assert!(!lock.write_new_record(b"{}"));
        assert_eq!(std::fs::read(lock_path(&record)).unwrap(), b"{\"kept\":1}");
        assert!(!record.exists());
        drop(lock);
        // A record there already is replaced by rename, not linked over.
        std::fs::write(&record, b"{\"old\":1}").unwrap();
        let lock = acquire_blocking(record.clone(), patience()).unwrap().unwrap();
        assert!(!lock.write_new_record(b"{}"));
        assert_eq!(std::fs::read(&record).unwrap(), b"{\"old\":1}");
        assert_eq!(std::fs::read(lock_path(&record)).unwrap(), b"");
    }

    #[test]
    fn a_lock_file_replaced_meanwhile_is_not_linked_as_the_record() {
        let dir = tempfile::tempdir().unwrap();
        let record = record_in(&dir);
        let lock = acquire_blocking(record.clone(), patience()).unwrap().unwrap();
        let other = dir.path().join("other");
        std::fs::write(&other, b"not ours").unwrap();
        std::fs::rename(&other, lock_path(&record)).unwrap();
        assert!(!lock.write_new_record(b"{}"));
        assert!(std::fs::symlink_metadata(&record).is_err(), "no link to what replaced the lock file");
        assert_eq!(std::fs::read(lock_path(&record)).unwrap(), b"not ours");
    }

    #[tokio::test]
    async fn a_fifo_at_the_lock_name_does_not_make_the_call_wait() {
        let dir = tempfile::tempdir().unwrap();
        let record = record_in(&dir);
        let fifo = std::ffi::CString::new(lock_path(&record).into_os_string().into_encoded_bytes()).unwrap();
        // SAFETY: mkfifo with a valid C string.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
        let lock = tokio::time::timeout(std::time::Duration::from_secs(5), acquire(&record, patience())).await.expect("no wait");
        assert!(lock.unwrap().is_none(), "no lock on a FIFO");
        assert!(std::fs::symlink_metadata(lock_path(&record)).unwrap().file_type().is_fifo(), "left alone");
    }

    #[tokio::test]
    async fn a_link_at_the_lock_name_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let record = record_in(&dir);
        let target = dir.path().join("precious");
        std::fs::write(&target, b"keep").unwrap();
        std::os::unix::fs::symlink(&target, lock_path(&record)).unwrap();
        let lock = acquire(&record, patience()).await.unwrap();
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
                    match acquire_blocking(record.to_path_buf(), patience()) {
                        Ok(Some(lock)) => {
                            assert_eq!(holders.fetch_add(1, Ordering::SeqCst), 0, "two holders at once");
                            std::thread::yield_now();
                            holders.fetch_sub(1, Ordering::SeqCst);
                            drop(lock);
                            held += 1;
                        }
                        Ok(None) => panic!("went on unlocked where a lock can be taken"),
                        Err(e) => assert_eq!(e.code, "CheckpointFileInUse"),
                    }
                }
                held
            }));
        }
        let total: usize = tasks.into_iter().map(|t| t.join().unwrap()).sum();
        assert!(total > 0);
    }
}
