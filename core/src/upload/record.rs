//! The one writer of an upload's checkpoint record. Writes run off the
//! async threads, one at a time; changes made while a write is under way
//! are coalesced into the next write.

use std::path::PathBuf;
use std::sync::Arc;
use crate::descriptors::Patience;

use tokio::task::JoinHandle;

use super::checkpoint::{self, Checkpoint};
use super::lock::RecordLock;
use crate::error::{Error, Result};

pub struct RecordWriter {
    path: PathBuf,
    /// How long a write waits for a file descriptor when the process has
    /// none left (see `descriptors`).
    patience: Patience,
    /// The upload's hold on the record, kept by every write until it ends.
    lock: Option<Arc<RecordLock>>,
    dirty: bool,
    writing: Option<JoinHandle<std::io::Result<()>>>,
}

impl RecordWriter {
    pub fn new(path: PathBuf, lock: Option<Arc<RecordLock>>, patience: Patience) -> Self {
        RecordWriter { path, patience, lock, dirty: false, writing: None }
    }

    /// The record changed: write it now, or after the write under way.
    pub fn mark(&mut self, record: &mut Checkpoint) {
        self.dirty = true;
        if self.writing.is_none() {
            self.start(record);
        }
    }

    /// The record changed, but the write waits for the next `flush`: for
    /// a change that the next step may make moot (see `send_parts`).
    pub fn mark_later(&mut self) {
        self.dirty = true;
    }

    fn start(&mut self, record: &mut Checkpoint) {
        record.seal();
        let bytes = serde_json::to_vec(&*record);
        let path = self.path.clone();
        let lock = self.lock.clone();
        let patience = self.patience.clone();
        self.dirty = false;
        self.writing = Some(tokio::task::spawn_blocking(move || {
            let bytes = bytes.map_err(std::io::Error::other)?;
            if lock.as_ref().is_some_and(|l| l.write_new_record(&bytes)) {
                return Ok(());
            }
            crate::descriptors::retry_blocking(&patience, || checkpoint::save(&path, &bytes, lock.is_some()))
        }));
    }

    pub fn is_writing(&self) -> bool {
        self.writing.is_some()
    }

    /// Waits for the write under way; then starts the next if the record
    /// changed meanwhile.
    /// Cancel-safe: dropped before the write ends, it leaves the write
    /// registered, so that no second write can start beside it.
    pub async fn write_finished(&mut self, record: &mut Checkpoint) -> Result<()> {
        if let Some(h) = self.writing.as_mut() {
            let outcome = h.await;
            self.writing = None;
            let failed = match outcome {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(e),
                Err(e) => Some(std::io::Error::other(e)),
            };
            if let Some(e) = failed {
                // What it held is not on disk: the next write (the next
                // change, or a flush) tries again.
                self.dirty = true;
                return Err(Error::io("WriteCheckpointFileError", "cannot write the checkpoint file", &e));
            }
        }
        if self.dirty {
            self.start(record);
        }
        Ok(())
    }

    /// Returns once the record on disk holds every change made so far.
    pub async fn flush(&mut self, record: &mut Checkpoint) -> Result<()> {
        while self.writing.is_some() || self.dirty {
            if self.writing.is_none() {
                self.start(record);
            }
            self.write_finished(record).await?;
        }
        Ok(())
    }

    pub async fn write_now(&mut self, record: &mut Checkpoint) -> Result<()> {
        self.dirty = true;
        self.flush(record).await
    }

    /// Waits for any write under way, then deletes the record.
    pub async fn remove(mut self) {
        if let Some(h) = self.writing.take() {
            let _ = h.await;
        }
        checkpoint::remove(&self.path).await;
    }
}
