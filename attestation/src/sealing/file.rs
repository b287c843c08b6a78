//! Dev-mode root-secret source: a local file of exactly 32 raw bytes, mode
//! 0600, created on first use.

use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use zeroize::Zeroize;

use super::{KEY_LEN, RootSecret};
use crate::error::{Error, Result};

impl RootSecret {
    /// Loads the dev root secret from `path`, or creates it (0600, fresh
    /// random bytes) if the file does not exist. Blocking file I/O: call it
    /// from `spawn_blocking` in async code.
    ///
    /// Only for [`super::Mode::Dev`]: keys derived from it must be derived
    /// with `Mode::Dev`, so nothing it seals opens in production.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] on I/O failure, [`Error::SecretPermissions`] if the file
    /// is accessible to group or others, [`Error::SecretLength`] if it is not
    /// exactly 32 bytes.
    pub fn load_or_create_dev_file(path: &Path) -> Result<Self> {
        let io = |source| Error::Io {
            path: path.to_owned(),
            source,
        };
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
        {
            Ok(mut file) => {
                let secret = Self::generate()?;
                file.write_all(&secret.0).map_err(io)?;
                file.sync_all().map_err(io)?;
                tracing::info!(path = %path.display(), "created dev root secret");
                Ok(secret)
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Self::load_dev_file(path),
            Err(e) => Err(io(e)),
        }
    }

    /// Loads an existing dev root-secret file.
    ///
    /// # Errors
    ///
    /// As [`RootSecret::load_or_create_dev_file`], and [`Error::Io`] if the
    /// file does not exist.
    pub fn load_dev_file(path: &Path) -> Result<Self> {
        let io = |source| Error::Io {
            path: path.to_owned(),
            source,
        };
        let mut file = std::fs::File::open(path).map_err(io)?;
        let meta = file.metadata().map_err(io)?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(Error::SecretPermissions {
                path: path.to_owned(),
                mode,
            });
        }
        if meta.len() != KEY_LEN as u64 {
            return Err(Error::SecretLength {
                path: path.to_owned(),
                len: meta.len(),
            });
        }
        let mut bytes = [0u8; KEY_LEN];
        file.read_exact(&mut bytes).map_err(io)?;
        let secret = Self(bytes);
        bytes.zeroize();
        Ok(secret)
    }
}
