//! Deterministic `newc` cpio archives (the format the Linux kernel unpacks as an initramfs).
//!
//! Every archive built here is a pure function of its entries: entries are written in
//! byte order of their paths (so a directory always precedes its contents), owners are
//! root (uid = gid = 0), every mtime is 0, inode numbers are the entry's position, and the
//! only mode bits are the ones the caller chose. The same entries give the same bytes on
//! any machine, which is what makes the enclave's PCRs reproducible.

use std::collections::BTreeMap;

use crate::error::{Error, Result};

/// File type bits of a regular file.
const S_IFREG: u32 = 0o100_000;
/// File type bits of a directory.
const S_IFDIR: u32 = 0o040_000;
/// File type bits of a character device.
const S_IFCHR: u32 = 0o020_000;
/// File type bits of a symbolic link.
const S_IFLNK: u32 = 0o120_000;
/// Permission bits a caller may set (setuid, setgid, sticky and rwx for all).
const PERMISSION_BITS: u32 = 0o7777;
/// The magic of the `newc` format (no checksum).
const NEWC_MAGIC: &[u8; 6] = b"070701";
/// The name of the entry that ends every archive.
const TRAILER: &str = "TRAILER!!!";

/// What an entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Node {
    Dir,
    File(Vec<u8>),
    CharDevice { major: u32, minor: u32 },
    Symlink(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    perm: u32,
    node: Node,
}

/// A set of files, directories, device nodes and links, written as a deterministic `newc`
/// archive by [`CpioArchive::to_bytes`].
///
/// Paths are relative (`init`, `bin/daas-enclave`), use `/` as the separator and may not
/// contain empty, `.` or `..` components. Missing parent directories are added with mode
/// `0755`. Adding a path twice replaces the earlier entry.
///
/// ```
/// let mut archive = image::CpioArchive::new();
/// archive.add_file("bin/hello", 0o755, b"#!/bin/sh\necho hi\n".to_vec())?;
/// let bytes = archive.to_bytes()?;
/// assert_eq!(&bytes[..6], b"070701");
/// # Ok::<(), image::Error>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CpioArchive {
    entries: BTreeMap<String, Entry>,
}

impl CpioArchive {
    /// An empty archive.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a directory with permission bits `perm` (e.g. `0o755`).
    ///
    /// # Errors
    /// [`Error::InvalidArchivePath`] for a bad path, [`Error::InvalidMode`] if `perm` has
    /// bits outside `0o7777`.
    pub fn add_dir(&mut self, path: &str, perm: u32) -> Result<&mut Self> {
        self.insert(path, perm, Node::Dir)
    }

    /// Adds a regular file with permission bits `perm` and the given contents.
    ///
    /// # Errors
    /// As for [`CpioArchive::add_dir`].
    pub fn add_file(&mut self, path: &str, perm: u32, contents: Vec<u8>) -> Result<&mut Self> {
        self.insert(path, perm, Node::File(contents))
    }

    /// Adds a character device node (e.g. `dev/console`, major 5, minor 1).
    ///
    /// # Errors
    /// As for [`CpioArchive::add_dir`].
    pub fn add_char_device(
        &mut self,
        path: &str,
        perm: u32,
        major: u32,
        minor: u32,
    ) -> Result<&mut Self> {
        self.insert(path, perm, Node::CharDevice { major, minor })
    }

    /// Adds a symbolic link at `path` pointing to `target` (mode `0777`).
    ///
    /// # Errors
    /// [`Error::InvalidArchivePath`] for a bad path or an empty target.
    pub fn add_symlink(&mut self, path: &str, target: &str) -> Result<&mut Self> {
        if target.is_empty() || target.contains('\0') {
            return Err(Error::InvalidArchivePath {
                path: target.to_owned(),
                reason: "a link target must be non-empty and contain no NUL",
            });
        }
        self.insert(path, 0o777, Node::Symlink(target.to_owned()))
    }

    /// The number of entries, including the parent directories added implicitly.
    #[must_use]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the archive has no entries.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn insert(&mut self, path: &str, perm: u32, node: Node) -> Result<&mut Self> {
        validate_path(path)?;
        if perm & !PERMISSION_BITS != 0 {
            return Err(Error::InvalidMode {
                path: path.to_owned(),
                mode: perm,
            });
        }
        // Parents first: every proper prefix ending before a '/' is a directory.
        for (i, _) in path.match_indices('/') {
            let parent = &path[..i];
            match self.entries.get(parent) {
                Some(Entry {
                    node: Node::Dir, ..
                }) => {}
                Some(_) => {
                    return Err(Error::InvalidArchivePath {
                        path: path.to_owned(),
                        reason: "a parent path is already a non-directory entry",
                    });
                }
                None => {
                    self.entries.insert(
                        parent.to_owned(),
                        Entry {
                            perm: 0o755,
                            node: Node::Dir,
                        },
                    );
                }
            }
        }
        self.entries.insert(path.to_owned(), Entry { perm, node });
        Ok(self)
    }

    /// Writes the archive in `newc` format: entries in byte order of their paths, then the
    /// `TRAILER!!!` entry.
    ///
    /// # Errors
    /// [`Error::ArchiveTooLarge`] if a file is 4 GiB or larger, or there are more than
    /// `u32::MAX` entries (the format stores both in 32 bits).
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        for (index, (path, entry)) in self.entries.iter().enumerate() {
            let ino = u32::try_from(index + 1)
                .map_err(|_| Error::ArchiveTooLarge { path: path.clone() })?;
            let (kind, nlink, data, rdev): (u32, u32, &[u8], (u32, u32)) = match &entry.node {
                Node::Dir => (S_IFDIR, 2, &[], (0, 0)),
                Node::File(contents) => (S_IFREG, 1, contents, (0, 0)),
                Node::CharDevice { major, minor } => (S_IFCHR, 1, &[], (*major, *minor)),
                Node::Symlink(target) => (S_IFLNK, 1, target.as_bytes(), (0, 0)),
            };
            let size = u32::try_from(data.len())
                .map_err(|_| Error::ArchiveTooLarge { path: path.clone() })?;
            let header = NewcHeader {
                ino,
                mode: kind | entry.perm,
                nlink,
                size,
                rdev,
            };
            write_entry(&mut out, &header, path, data);
        }
        let trailer = NewcHeader {
            ino: 0,
            mode: 0,
            nlink: 1,
            size: 0,
            rdev: (0, 0),
        };
        write_entry(&mut out, &trailer, TRAILER, &[]);
        Ok(out)
    }
}

/// The fields of a `newc` header that vary; the others are always zero.
struct NewcHeader {
    ino: u32,
    mode: u32,
    nlink: u32,
    size: u32,
    rdev: (u32, u32),
}

fn write_entry(out: &mut Vec<u8>, header: &NewcHeader, name: &str, data: &[u8]) {
    // Name length counts the terminating NUL. Paths are validated to be short.
    let namesize = name.len() + 1;
    let fields: [u32; 13] = [
        header.ino,
        header.mode,
        0, // uid
        0, // gid
        header.nlink,
        0, // mtime
        header.size,
        0, // dev major
        0, // dev minor
        header.rdev.0,
        header.rdev.1,
        u32::try_from(namesize).unwrap_or(u32::MAX),
        0, // check (unused in newc)
    ];
    out.extend_from_slice(NEWC_MAGIC);
    for field in fields {
        out.extend_from_slice(format!("{field:08x}").as_bytes());
    }
    out.extend_from_slice(name.as_bytes());
    out.push(0);
    pad4(out);
    out.extend_from_slice(data);
    pad4(out);
}

fn pad4(out: &mut Vec<u8>) {
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
}

/// Longest path accepted; the kernel's initramfs unpacker rejects names over `PATH_MAX`.
const MAX_PATH_LEN: usize = 4095;

fn validate_path(path: &str) -> Result<()> {
    let bad = |reason| {
        Err(Error::InvalidArchivePath {
            path: path.to_owned(),
            reason,
        })
    };
    if path.is_empty() {
        return bad("the path is empty");
    }
    if path.len() > MAX_PATH_LEN {
        return bad("the path is longer than 4095 bytes");
    }
    if path.starts_with('/') {
        return bad("the path must be relative (no leading '/')");
    }
    if path.contains('\0') {
        return bad("the path contains a NUL byte");
    }
    if path == TRAILER {
        return bad("the path is the archive trailer's name");
    }
    if path
        .split('/')
        .any(|c| c.is_empty() || c == "." || c == "..")
    {
        return bad("the path has an empty, '.' or '..' component");
    }
    Ok(())
}

#[cfg(test)]
mod tests;
