//! An exclusive `flock` on a file in a service's state directory, so two services never share one directory
//! (two journal services would interleave appends; two key brokers could each generate and store a data key;
//! two `daas dev` would run one cluster twice).
//! The kernel drops the lock when the process dies, however it dies.

use std::fs::{File, OpenOptions};
use std::path::Path;

use nix::fcntl::{Flock, FlockArg};

/// Why [`lock_exclusive`] failed.
#[derive(Debug)]
pub enum LockError {
    /// Another process holds the lock.
    Busy,
    /// The lock file could not be opened or locked.
    Io(std::io::Error),
}

/// Takes the exclusive lock on `dir/name` (created if missing) for as long as the returned value lives.
///
/// # Errors
///
/// [`LockError::Busy`] if another process holds it, [`LockError::Io`] if the file cannot be opened or locked.
pub fn lock_exclusive(dir: &Path, name: &str) -> Result<Flock<File>, LockError> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(name))
        .map_err(LockError::Io)?;
    Flock::lock(file, FlockArg::LockExclusiveNonblock).map_err(|(_, errno)| {
        if errno == nix::errno::Errno::EWOULDBLOCK {
            LockError::Busy
        } else {
            LockError::Io(std::io::Error::from(errno))
        }
    })
}
