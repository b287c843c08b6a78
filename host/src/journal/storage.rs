//! The journal directory on the host's disk: opaque sealed records and one opaque sealed snapshot.
//!
//! Layout of `DIR`:
//!
//! | file | content |
//! |---|---|
//! | `journal` | records, each framed as `u32 BE length | bytes`, appended and fsynced one by one |
//! | `snapshot` | the latest snapshot, replaced atomically (tmp + fsync + rename + directory fsync) |
//! | `snapshot.tmp` | a snapshot being uploaded; removed on open |
//! | `journal.tmp` | the pruned journal being written; removed on open |
//! | `lock` | held with `flock` while a service owns the directory |
//!
//! The only bytes of a record this module interprets are its cleartext header's magic `KDJ1` and sequence number
//! (bytes 4..12, big endian): pruning after a snapshot and discarding an unacknowledged tail need them. Everything
//! else is sealed by the enclave and stored as is.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use crate::dir_lock::{LockError, lock_exclusive};
use nix::fcntl::Flock;

use crate::error::{Error, Result};

const JOURNAL: &str = "journal";
const JOURNAL_TMP: &str = "journal.tmp";
const SNAPSHOT: &str = "snapshot";
const SNAPSHOT_TMP: &str = "snapshot.tmp";
const LOCK: &str = "lock";

// The sequence number in a record's cleartext header (`"KDJ1" | u64 seq`, the part of the enclave's record format
// the journal protocol shares with the host), if the record has one.
pub(crate) use protocol::journal::record_seq;

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> Error + 'a {
    move |source| Error::JournalIo {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// Splits framed bytes into `(offset, record)` pairs; returns them and the length of the complete prefix.
fn frames(bytes: &[u8]) -> (Vec<(u64, &[u8])>, usize) {
    let mut out = Vec::new();
    let mut at = 0usize;
    while let Some(len) = bytes.get(at..at.saturating_add(4)) {
        let n = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
        let start = at + 4;
        let Some(record) = start.checked_add(n).and_then(|end| bytes.get(start..end)) else {
            break;
        };
        out.push((at as u64, record));
        at = start + n;
    }
    (out, at)
}

fn frame_into(out: &mut Vec<u8>, record: &[u8]) -> Result<()> {
    let len = u32::try_from(record.len()).map_err(|_| Error::JournalFraming {
        offset: out.len() as u64,
        reason: "record longer than u32::MAX bytes",
    })?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(record);
    Ok(())
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("fsync directory", dir))
}

fn remove_if_present(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err("remove", path)(e)),
    }
}

/// A snapshot upload in progress.
#[derive(Debug)]
struct Upload {
    file: File,
    written: u64,
}

/// The journal directory, owned exclusively (an `flock` on `DIR/lock`) for as long as this value lives.
#[derive(Debug)]
pub(crate) struct JournalDir {
    dir: PathBuf,
    journal: File,
    /// Length of the journal file's complete, durable content.
    len: u64,
    upload: Option<Upload>,
    max_snapshot_bytes: u64,
    /// Set when a failed append could not be rolled back; refuses every later write.
    poisoned: Option<String>,
    _lock: Flock<File>,
}

impl JournalDir {
    /// Opens (creating if needed) the journal in `dir`, takes its lock, cuts a torn final frame (an append that
    /// was never acknowledged), and removes leftover temporary files.
    pub(crate) fn open(dir: &Path, max_snapshot_bytes: u64) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(io_err("create directory", dir))?;
        let lock = lock_exclusive(dir, LOCK).map_err(|e| match e {
            LockError::Busy => Error::JournalLocked {
                path: dir.to_path_buf(),
            },
            LockError::Io(e) => io_err("lock", &dir.join(LOCK))(e),
        })?;
        remove_if_present(&dir.join(SNAPSHOT_TMP))?;
        remove_if_present(&dir.join(JOURNAL_TMP))?;
        let path = dir.join(JOURNAL);
        let mut journal = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .map_err(io_err("open", &path))?;
        let mut bytes = Vec::new();
        journal
            .read_to_end(&mut bytes)
            .map_err(io_err("read", &path))?;
        let (_, complete) = frames(&bytes);
        if complete < bytes.len() {
            tracing::warn!(path = %path.display(), torn_bytes = bytes.len() - complete,
                "cutting a torn final journal frame (an append that was never acknowledged)");
            journal
                .set_len(complete as u64)
                .map_err(io_err("truncate", &path))?;
            journal.sync_data().map_err(io_err("fsync", &path))?;
        }
        sync_dir(dir)?;
        Ok(Self {
            dir: dir.to_path_buf(),
            journal,
            len: complete as u64,
            upload: None,
            max_snapshot_bytes,
            poisoned: None,
            _lock: lock,
        })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn check_poisoned(&self) -> Result<()> {
        match &self.poisoned {
            Some(why) => Err(Error::JournalPoisoned(why.clone())),
            None => Ok(()),
        }
    }

    /// Appends one record and fsyncs it. On failure the journal is rolled back to its previous length (or, if
    /// even that fails, refuses every later write), so an unacknowledged record is never kept.
    pub(crate) fn append(&mut self, record: &[u8]) -> Result<()> {
        self.check_poisoned()?;
        let path = self.path(JOURNAL);
        let mut frame = Vec::with_capacity(record.len() + 4);
        frame_into(&mut frame, record)?;
        let result = self
            .journal
            .write_all(&frame)
            .map_err(io_err("append", &path))
            .and_then(|()| self.journal.sync_data().map_err(io_err("fsync", &path)));
        match result {
            Ok(()) => {
                self.len += frame.len() as u64;
                Ok(())
            }
            Err(e) => {
                self.truncate_to(self.len);
                Err(e)
            }
        }
    }

    /// Cuts the journal back to `len` bytes; poisons the directory if that fails.
    fn truncate_to(&mut self, len: u64) {
        let rolled_back = self
            .journal
            .set_len(len)
            .and_then(|()| self.journal.sync_data());
        if let Err(e) = rolled_back {
            self.poisoned = Some(format!(
                "could not roll back the journal to {len} bytes: {e}"
            ));
        }
    }

    /// Every record in the journal, oldest first.
    pub(crate) fn read_records(&self) -> Result<Vec<Vec<u8>>> {
        let bytes = self.read_journal()?;
        let (records, complete) = frames(&bytes);
        if complete != bytes.len() {
            return Err(Error::JournalFraming {
                offset: complete as u64,
                reason: "incomplete frame in the middle of the journal file",
            });
        }
        Ok(records.into_iter().map(|(_, r)| r.to_vec()).collect())
    }

    fn read_journal(&self) -> Result<Vec<u8>> {
        let path = self.path(JOURNAL);
        let mut bytes = Vec::new();
        File::open(&path)
            .and_then(|mut f| f.read_to_end(&mut bytes))
            .map_err(io_err("read", &path))?;
        // Only the durable prefix counts; anything after it is a failed append being rolled back.
        bytes.truncate(usize::try_from(self.len).unwrap_or(usize::MAX));
        Ok(bytes)
    }

    /// Drops the trailing records whose sequence number is `seq` or higher: the enclave asks for this when an
    /// append's acknowledgement never reached it, so the journal is again as it was before that append. Only the
    /// tail is touched. Returns how many records were dropped.
    pub(crate) fn discard_from(&mut self, seq: u64) -> Result<u64> {
        self.check_poisoned()?;
        let bytes = self.read_journal()?;
        let (records, _) = frames(&bytes);
        let mut cut = None;
        let mut dropped = 0u64;
        for (offset, record) in records.iter().rev() {
            match record_seq(record) {
                Some(s) if s >= seq => {
                    cut = Some(*offset);
                    dropped += 1;
                }
                _ => break,
            }
        }
        if let Some(offset) = cut {
            let path = self.path(JOURNAL);
            self.journal
                .set_len(offset)
                .and_then(|()| self.journal.sync_data())
                .map_err(io_err("truncate", &path))?;
            self.len = offset;
            tracing::warn!(
                from_seq = seq,
                dropped,
                "discarded unacknowledged journal records at the enclave's request"
            );
        }
        Ok(dropped)
    }

    /// Starts a snapshot upload (replacing one in progress).
    pub(crate) fn begin_snapshot(&mut self) -> Result<()> {
        self.check_poisoned()?;
        self.upload = None;
        let path = self.path(SNAPSHOT_TMP);
        let file = File::create(&path).map_err(io_err("create", &path))?;
        self.upload = Some(Upload { file, written: 0 });
        Ok(())
    }

    /// Adds bytes to the snapshot being uploaded.
    pub(crate) fn snapshot_chunk(&mut self, bytes: &[u8]) -> Result<()> {
        let path = self.path(SNAPSHOT_TMP);
        let max = self.max_snapshot_bytes;
        let upload = self.upload.as_mut().ok_or(Error::JournalRequest {
            reason: "snapshot chunk without a snapshot begin",
        })?;
        let written = upload.written.saturating_add(bytes.len() as u64);
        if written > max {
            self.upload = None;
            return Err(Error::JournalRequest {
                reason: "snapshot exceeds the service's size limit (--max-snapshot-bytes)",
            });
        }
        upload
            .file
            .write_all(bytes)
            .map_err(io_err("write", &path))?;
        upload.written = written;
        Ok(())
    }

    /// Completes the upload: checks its length, makes it durable and replaces `snapshot` atomically, then prunes
    /// the records it covers (sequence numbers up to and including `covers_through_seq`).
    pub(crate) fn commit_snapshot(
        &mut self,
        total_len: u64,
        covers_through_seq: u64,
    ) -> Result<()> {
        self.check_poisoned()?;
        let upload = self.upload.take().ok_or(Error::JournalRequest {
            reason: "snapshot commit without a snapshot begin",
        })?;
        if upload.written != total_len {
            return Err(Error::JournalRequest {
                reason: "snapshot commit names a length other than the bytes uploaded",
            });
        }
        let tmp = self.path(SNAPSHOT_TMP);
        upload.file.sync_all().map_err(io_err("fsync", &tmp))?;
        drop(upload);
        let dst = self.path(SNAPSHOT);
        std::fs::rename(&tmp, &dst).map_err(io_err("rename", &dst))?;
        sync_dir(&self.dir)?;
        self.prune(covers_through_seq)
    }

    /// Rewrites the journal without the records a snapshot covers. A record whose header cannot be read is kept:
    /// the enclave will report it precisely when it restores.
    fn prune(&mut self, covers_through_seq: u64) -> Result<()> {
        let records = self.read_records()?;
        let mut kept = Vec::new();
        let mut dropped = 0usize;
        for r in &records {
            if record_seq(r).is_none_or(|s| s > covers_through_seq) {
                frame_into(&mut kept, r)?;
            } else {
                dropped += 1;
            }
        }
        if dropped == 0 {
            return Ok(());
        }
        let tmp = self.path(JOURNAL_TMP);
        let dst = self.path(JOURNAL);
        let mut f = File::create(&tmp).map_err(io_err("create", &tmp))?;
        f.write_all(&kept).map_err(io_err("write", &tmp))?;
        f.sync_all().map_err(io_err("fsync", &tmp))?;
        drop(f);
        std::fs::rename(&tmp, &dst).map_err(io_err("rename", &dst))?;
        sync_dir(&self.dir)?;
        self.journal = OpenOptions::new()
            .read(true)
            .append(true)
            .open(&dst)
            .map_err(io_err("open", &dst))?;
        self.len = kept.len() as u64;
        tracing::info!(
            covers_through_seq,
            dropped,
            kept = records.len() - dropped,
            "snapshot stored; covered records pruned"
        );
        Ok(())
    }

    /// Abandons a snapshot upload in progress (its connection went away).
    pub(crate) fn abort_snapshot(&mut self) {
        if self.upload.take().is_some() {
            let _ = remove_if_present(&self.path(SNAPSHOT_TMP));
        }
    }

    /// The stored snapshot, if any.
    pub(crate) fn read_snapshot(&self) -> Result<Option<Vec<u8>>> {
        let path = self.path(SNAPSHOT);
        match std::fs::read(&path) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err("read", &path)(e)),
        }
    }
}
