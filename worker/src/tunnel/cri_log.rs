//! Container logs in the CRI format containerd writes (`<RFC 3339 time> <stdout|stderr>
//! <P|F> <text>`, one entry per line, `P` for a partial line continued by the next entry),
//! read as `pods/log` returns them: the kubelet's order of options (tail first, then since),
//! timestamps at the start of each whole line, `limitBytes` on the output, and `follow`
//! polling the file until the container stops. A followed log carries on into the new file
//! when the worker rotates it (`pods::log_rotation`): the reader keeps the file it opened,
//! finishes it, and moves to the file now at the path.

use std::io;
use std::os::unix::fs::MetadataExt as _;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use jiff::Timestamp;
use protocol::tunnel::LogOptions;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::ByteStream;

/// How often a followed log is read again.
const FOLLOW_POLL: Duration = Duration::from_millis(200);

/// Whether the container still runs (a followed log ends after it stops).
pub type StillRunning = Box<dyn Fn() -> bool + Send + Sync>;

/// One entry of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    /// The timestamp as written.
    time: String,
    /// It continues on the next entry.
    partial: bool,
    /// The text, without the newline.
    text: Vec<u8>,
}

fn parse_entry(line: &[u8]) -> Option<Entry> {
    let mut parts = line.splitn(4, |b| *b == b' ');
    let time = std::str::from_utf8(parts.next()?).ok()?.to_string();
    let stream = parts.next()?;
    if stream != b"stdout" && stream != b"stderr" {
        return None;
    }
    let partial = match parts.next()? {
        b"P" => true,
        b"F" => false,
        _ => return None,
    };
    Some(Entry {
        time,
        partial,
        text: parts.next().unwrap_or_default().to_vec(),
    })
}

struct Reader {
    path: PathBuf,
    options: LogOptions,
    since: Option<Timestamp>,
    running: StillRunning,
    /// The file being read and its inode, kept open: after a rotation it is the renamed file.
    file: Option<(tokio::fs::File, u64)>,
    /// Bytes of that file consumed so far (whole lines only).
    offset: u64,
    /// Output bytes still allowed by `limitBytes`.
    budget: Option<u64>,
    /// The last entry written ended a line.
    at_line_start: bool,
    started: bool,
    done: bool,
}

impl Reader {
    /// Formats `entries` (already chosen), honouring since and the byte budget.
    fn format(&mut self, entries: &[Entry]) -> Vec<u8> {
        let mut out = Vec::new();
        for e in entries {
            if let Some(since) = self.since {
                match e.time.parse::<Timestamp>() {
                    Ok(t) if t >= since => {}
                    _ => continue,
                }
            }
            if self.options.timestamps && self.at_line_start {
                out.extend_from_slice(e.time.as_bytes());
                out.push(b' ');
            }
            out.extend_from_slice(&e.text);
            if !e.partial {
                out.push(b'\n');
            }
            self.at_line_start = !e.partial;
        }
        if let Some(budget) = self.budget.as_mut() {
            let keep = usize::try_from(*budget)
                .unwrap_or(usize::MAX)
                .min(out.len());
            out.truncate(keep);
            *budget -= u64::try_from(keep).unwrap_or(u64::MAX);
            if *budget == 0 {
                self.done = true;
            }
        }
        out
    }

    /// The whole lines of the file after `offset`; advances it. Once the kept file has no
    /// more whole lines and another file is at the path (rotated), reads on in that one.
    async fn read_new(&mut self) -> io::Result<Vec<Entry>> {
        let mut entries = self.read_kept().await?;
        if entries.is_empty() && self.options.follow && self.rotated().await {
            self.file = None;
            self.offset = 0;
            entries = self.read_kept().await?;
        }
        Ok(entries)
    }

    /// Whether the path now names another file than the one kept open.
    async fn rotated(&self) -> bool {
        let Some((_, ino)) = &self.file else {
            return false;
        };
        tokio::fs::metadata(&self.path)
            .await
            .is_ok_and(|m| m.ino() != *ino)
    }

    /// The whole lines of the kept file (opened at the path first) after `offset`.
    async fn read_kept(&mut self) -> io::Result<Vec<Entry>> {
        if self.file.is_none() {
            let f = tokio::fs::File::open(&self.path).await?;
            let ino = f.metadata().await?.ino();
            self.file = Some((f, ino));
        }
        let Some((f, _)) = self.file.as_mut() else {
            return Ok(Vec::new());
        };
        f.seek(io::SeekFrom::Start(self.offset)).await?;
        let mut bytes = Vec::new();
        f.read_to_end(&mut bytes).await?;
        let whole = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        self.offset += u64::try_from(whole).unwrap_or(u64::MAX);
        Ok(bytes
            .get(..whole)
            .unwrap_or_default()
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .filter_map(parse_entry)
            .collect())
    }

    async fn next_chunk(&mut self) -> Option<io::Result<Bytes>> {
        loop {
            if self.done {
                return None;
            }
            if !self.started {
                self.started = true;
                let mut entries = match self.read_new().await {
                    Ok(e) => e,
                    Err(e) => return Some(Err(e)),
                };
                if let Some(n) = self.options.tail_lines {
                    let n = usize::try_from(n).unwrap_or(usize::MAX);
                    let skip = entries.len().saturating_sub(n);
                    entries.drain(..skip);
                }
                let out = self.format(&entries);
                if !self.options.follow {
                    self.done = true;
                }
                if !out.is_empty() {
                    return Some(Ok(Bytes::from(out)));
                }
                continue;
            }
            // Following: read what was added; after the container stopped, one last read.
            let stopped = !(self.running)();
            if !stopped {
                tokio::time::sleep(FOLLOW_POLL).await;
            }
            let entries = match self.read_new().await {
                Ok(e) => e,
                Err(e) => return Some(Err(e)),
            };
            if stopped {
                self.done = true;
            }
            let out = self.format(&entries);
            if !out.is_empty() {
                return Some(Ok(Bytes::from(out)));
            }
        }
    }
}

/// The log at `path` with `options`; `running` tells a followed log when to end. `now` is the
/// clock `sinceSeconds` counts back from.
pub fn read(
    path: PathBuf,
    options: LogOptions,
    running: StillRunning,
    now: Timestamp,
) -> ByteStream {
    let since = match (options.since_unix_seconds, options.since_seconds) {
        (Some(s), _) => Timestamp::from_second(s).ok(),
        (None, Some(secs)) => i64::try_from(secs)
            .ok()
            .and_then(|s| now.checked_sub(jiff::SignedDuration::from_secs(s)).ok()),
        (None, None) => None,
    };
    let reader = Reader {
        path,
        budget: options.limit_bytes,
        since,
        options,
        running,
        file: None,
        offset: 0,
        at_line_start: true,
        started: false,
        done: false,
    };
    Box::pin(futures::stream::unfold(reader, |mut r| async move {
        r.next_chunk().await.map(|c| (c, r))
    }))
}

/// A CRI log line for `text` on `stream` at `time` (`partial`: the line goes on in the next
/// entry), as containerd writes them.
pub fn entry(time: Timestamp, stream: &str, partial: bool, text: &str) -> String {
    // jiff's RFC 3339 form trims trailing zeros of the fraction, as Go's RFC3339Nano does.
    format!(
        "{time} {stream} {} {text}\n",
        if partial { "P" } else { "F" }
    )
}

#[cfg(test)]
mod tests;
