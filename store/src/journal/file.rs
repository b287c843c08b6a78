//! A journal in two local files: `journal` (length-framed records, appended
//! and fsynced) and `snapshot` (replaced atomically). Dev mode and tests use
//! it; in enclave mode the host's journal service plays this role.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::record::peek_header;
use super::{Journal, JournalError, PartialAppend};

const JOURNAL: &str = "journal";
const SNAPSHOT: &str = "snapshot";

/// An append-only journal file with fsync on every append.
#[derive(Debug)]
pub struct FileJournal {
    dir: PathBuf,
    file: File,
    len: u64,
    poisoned: Option<String>,
}

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> JournalError + 'a {
    move |cause| JournalError::Io {
        op,
        path: path.to_path_buf(),
        cause,
    }
}

/// Splits framed bytes into records; returns the records and the length of
/// the complete prefix (anything after it is a torn final frame).
fn frames(bytes: &[u8]) -> (Vec<&[u8]>, usize) {
    let mut out = Vec::new();
    let mut at = 0;
    while bytes.len() - at >= 4 {
        let n =
            u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]) as usize;
        if bytes.len() - at - 4 < n {
            break;
        }
        out.push(&bytes[at + 4..at + 4 + n]);
        at += 4 + n;
    }
    (out, at)
}

fn sync_dir(dir: &Path) -> Result<(), JournalError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("fsync directory", dir))
}

impl FileJournal {
    /// Opens (creating if needed) the journal in `dir`. A torn final frame —
    /// left by a crash in the middle of an append that was therefore never
    /// acknowledged — is cut off.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, JournalError> {
        let dir = dir.as_ref().to_path_buf();
        std::fs::create_dir_all(&dir).map_err(io("create directory", &dir))?;
        let path = dir.join(JOURNAL);
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .map_err(io("open", &path))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(io("read", &path))?;
        let (_, complete) = frames(&bytes);
        if complete < bytes.len() {
            tracing::warn!(path = %path.display(), torn_bytes = bytes.len() - complete, "cutting a torn final journal frame (an unacknowledged append)");
            file.set_len(complete as u64)
                .map_err(io("truncate", &path))?;
            file.sync_data().map_err(io("fsync", &path))?;
        }
        sync_dir(&dir)?;
        Ok(FileJournal {
            dir,
            file,
            len: complete as u64,
            poisoned: None,
        })
    }

    fn journal_path(&self) -> PathBuf {
        self.dir.join(JOURNAL)
    }

    fn write_atomically(&self, name: &str, bytes: &[u8]) -> Result<(), JournalError> {
        let tmp = self.dir.join(format!("{name}.tmp"));
        let dst = self.dir.join(name);
        let mut f = File::create(&tmp).map_err(io("create", &tmp))?;
        f.write_all(bytes).map_err(io("write", &tmp))?;
        f.sync_all().map_err(io("fsync", &tmp))?;
        std::fs::rename(&tmp, &dst).map_err(io("rename", &dst))?;
        sync_dir(&self.dir)
    }
}

impl Journal for FileJournal {
    fn append(&mut self, record: &[u8]) -> Result<(), JournalError> {
        self.append_batch(&[record]).map_err(|p| p.error)
    }

    fn append_batch(&mut self, records: &[&[u8]]) -> Result<(), PartialAppend> {
        let refused = |error| PartialAppend { durable: 0, error };
        if let Some(why) = &self.poisoned {
            return Err(refused(JournalError::Poisoned(why.clone())));
        }
        let path = self.journal_path();
        let mut frames = Vec::with_capacity(records.iter().map(|r| 4 + r.len()).sum());
        for record in records {
            let len = u32::try_from(record.len()).map_err(|_| {
                refused(JournalError::Framing {
                    offset: self.len,
                    reason: format!("record of {} bytes is too large to frame", record.len()),
                })
            })?;
            frames.extend_from_slice(&len.to_be_bytes());
            frames.extend_from_slice(record);
        }
        // One write and one fsync for the whole batch: either all of it is
        // acknowledged or none (a torn tail is cut on the next open).
        let result = self
            .file
            .write_all(&frames)
            .map_err(io("append", &path))
            .and_then(|()| self.file.sync_data().map_err(io("fsync", &path)));
        match result {
            Ok(()) => {
                self.len += frames.len() as u64;
                Ok(())
            }
            Err(err) => {
                // Roll back a partial append so the next record still lines up.
                let rolled_back = self
                    .file
                    .set_len(self.len)
                    .and_then(|()| self.file.sync_data());
                if let Err(e) = rolled_back {
                    self.poisoned = Some(format!("could not roll back a failed append: {e}"));
                }
                Err(refused(err))
            }
        }
    }

    fn read_records(&mut self) -> Result<Vec<Vec<u8>>, JournalError> {
        let path = self.journal_path();
        let mut bytes = Vec::new();
        let mut f = File::open(&path).map_err(io("open", &path))?;
        f.read_to_end(&mut bytes).map_err(io("read", &path))?;
        let (records, complete) = frames(&bytes);
        if complete != bytes.len() {
            return Err(JournalError::Framing {
                offset: complete as u64,
                reason: "incomplete frame".into(),
            });
        }
        Ok(records.into_iter().map(<[u8]>::to_vec).collect())
    }

    fn write_snapshot(
        &mut self,
        snapshot: &[u8],
        covers_through_seq: u64,
    ) -> Result<(), JournalError> {
        self.write_atomically(SNAPSHOT, snapshot)?;
        // Keep only records the snapshot does not cover. A record whose header
        // cannot be read is kept: restore will report it precisely.
        let records = self.read_records()?;
        let mut kept = Vec::new();
        for r in &records {
            if peek_header(r).map_or(true, |h| h.seq > covers_through_seq) {
                kept.extend_from_slice(&(r.len() as u32).to_be_bytes());
                kept.extend_from_slice(r);
            }
        }
        self.write_atomically(JOURNAL, &kept)?;
        let path = self.journal_path();
        self.file = OpenOptions::new()
            .read(true)
            .append(true)
            .open(&path)
            .map_err(io("open", &path))?;
        self.file
            .seek(SeekFrom::End(0))
            .map_err(io("seek", &path))?;
        self.len = kept.len() as u64;
        Ok(())
    }

    fn read_snapshot(&mut self) -> Result<Option<Vec<u8>>, JournalError> {
        let path = self.dir.join(SNAPSHOT);
        match std::fs::read(&path) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io("read", &path)(e)),
        }
    }
}
