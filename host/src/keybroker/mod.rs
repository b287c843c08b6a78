//! The key broker: the host makes the KMS call that releases the cluster's root secret to an attested enclave,
//! and keeps the KMS-wrapped copy of it (`CiphertextBlob`) on disk. It never sees the secret: KMS encrypts its
//! answer to the RSA key in the enclave's attestation document (`CiphertextForRecipient`).
//!
//! # Protocol
//!
//! One request per connection, over vsock (production) or a Unix socket (dev): the key broker protocol of
//! `protocol::keybroker` (a `ROOT_SECRET` request carrying the attestation document, answered `OK` with
//! `CiphertextForRecipient` or `ERROR` with a UTF-8 message; frames of at most [`MAX_FRAME_BYTES`]).
//!
//! A frame over the limit, with length 0, of another kind, or with a wrong magic or version gets `ERROR` and the
//! connection is closed. A request must arrive within [`REQUEST_TIMEOUT`].
//!
//! # What the broker does
//!
//! If the state directory holds a stored `CiphertextBlob`, it calls KMS `Decrypt{CiphertextBlob, KeyId,
//! Recipient}`. Otherwise it calls `GenerateDataKey{KeyId, NumberOfBytes: 32, Recipient}` and stores the returned
//! `CiphertextBlob` durably (temporary file, fsync, rename, directory fsync) before it replies: the enclave must
//! never seal data under a secret that could be lost. A failed `Decrypt` is reported, never answered with a new
//! key. Requests are handled one at a time, so two first boots cannot create two secrets.
//!
//! The KMS key policy decides who gets the secret (`kms:RecipientAttestation:PCR0` and friends); the broker
//! checks nothing about the document: it cannot be trusted to, and does not need to be.

#[cfg(test)]
mod tests;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use protocol::frame::FrameError;
pub use protocol::keybroker::{ERROR, MAGIC, MAX_FRAME_BYTES, OK, ROOT_SECRET, VERSION};
use tokio::io::AsyncWriteExt;
use tokio_util::sync::CancellationToken;

use crate::accept::accept_until_shutdown;
use crate::dir_lock::{LockError, lock_exclusive};
use crate::error::{Error, Result, error_chain};
use crate::frame_io;
use crate::kms::KmsClient;
use crate::transport::{Listener, PeerAddr, Stream};

/// How long a connection may take to send its request.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once; more are closed on accept.
pub const MAX_CONNECTIONS: usize = 16;
/// The stored `CiphertextBlob` under the state directory.
pub const STORED_BLOB_FILE: &str = "root-secret.kms-blob";
/// Largest stored blob read back (a KMS `CiphertextBlob` is at most 6144 bytes).
const MAX_BLOB_BYTES: u64 = 64 * 1024;
/// Length of the root secret KMS generates.
const ROOT_SECRET_BYTES: u32 = 32;

/// The lock file in the state directory.
const LOCK_FILE: &str = "lock";

/// Serves root-secret requests; see the module documentation.
#[derive(Debug)]
pub struct KeyBroker {
    kms: KmsClient,
    key_id: String,
    state_dir: PathBuf,
    /// One KMS exchange (and blob write) at a time.
    serial: tokio::sync::Mutex<()>,
    /// Held for the broker's life: a second broker on the same state directory could generate a second data
    /// key and overwrite the blob the first one's enclave sealed with.
    _lock: nix::fcntl::Flock<std::fs::File>,
}

impl KeyBroker {
    /// A broker that keeps its blob in `state_dir` (created if missing) and asks `kms` about `key_id`.
    ///
    /// # Errors
    ///
    /// [`Error::KeyBrokerIo`] if the directory cannot be created.
    pub fn new(kms: KmsClient, key_id: String, state_dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(state_dir).map_err(|source| Error::KeyBrokerIo {
            op: "creating",
            path: state_dir.to_owned(),
            source,
        })?;
        let lock = lock_exclusive(state_dir, LOCK_FILE).map_err(|e| match e {
            LockError::Busy => Error::KeyBrokerLocked {
                path: state_dir.to_owned(),
            },
            LockError::Io(source) => Error::KeyBrokerIo {
                op: "locking",
                path: state_dir.join(LOCK_FILE),
                source,
            },
        })?;
        Ok(Self {
            kms,
            key_id,
            state_dir: state_dir.to_owned(),
            serial: tokio::sync::Mutex::new(()),
            _lock: lock,
        })
    }

    /// Accepts enclave connections on `listener` until `shutdown`, then lets open requests finish.
    pub async fn serve(self: Arc<Self>, listener: Listener, shutdown: CancellationToken) {
        let admit = |stream, peer, open| {
            if open >= MAX_CONNECTIONS {
                tracing::warn!(
                    ?peer,
                    "too many key broker connections; closing the new one"
                );
                return None;
            }
            Some(Arc::clone(&self).connection(stream, peer))
        };
        let on_error = |e: &std::io::Error| tracing::warn!(error = %e, "key broker: accept failed");
        let mut connections = accept_until_shutdown(&listener, &shutdown, admit, on_error).await;
        while connections.join_next().await.is_some() {}
    }

    async fn connection(self: Arc<Self>, mut stream: Stream, peer: PeerAddr) {
        let reply = match tokio::time::timeout(REQUEST_TIMEOUT, read_request(&mut stream)).await {
            Err(_) => Err("no request within the time limit".to_owned()),
            Ok(Err(message)) => Err(message),
            Ok(Ok(document)) => self
                .ciphertext_for_recipient(&document)
                .await
                .map_err(|e| error_chain(&e)),
        };
        let (kind, body) = match &reply {
            Ok(envelope) => {
                tracing::info!(?peer, "root secret released to the attested enclave key");
                (OK, envelope.as_slice())
            }
            Err(message) => {
                tracing::warn!(?peer, error = %message, "root secret request failed");
                (ERROR, message.as_bytes())
            }
        };
        let sent = async {
            frame_io::write_frame(&mut stream, kind, body).await?;
            stream.flush().await?;
            stream.shutdown().await
        };
        if let Err(e) = sent.await {
            tracing::warn!(?peer, error = %e, "key broker: sending the reply failed");
        }
    }

    /// Asks KMS for the root secret encrypted to the key in `document`: `Decrypt` of the stored blob, or
    /// `GenerateDataKey` (storing its blob durably first) when there is none.
    ///
    /// # Errors
    ///
    /// [`Error::Kms`] when KMS refuses or cannot be reached, [`Error::KeyBrokerIo`] when the blob cannot be read
    /// or stored.
    pub async fn ciphertext_for_recipient(&self, document: &[u8]) -> Result<Vec<u8>> {
        let _serial = self.serial.lock().await;
        let path = self.state_dir.join(STORED_BLOB_FILE);
        let stored = {
            let path = path.clone();
            tokio::task::spawn_blocking(move || read_blob(&path))
                .await
                .map_err(|e| Error::KeyBrokerIo {
                    op: "reading",
                    path: self.state_dir.join(STORED_BLOB_FILE),
                    source: std::io::Error::other(e),
                })??
        };
        match stored {
            Some(blob) => {
                tracing::info!(key_id = %self.key_id, "KMS Decrypt of the stored root secret");
                Ok(self.kms.decrypt(&self.key_id, &blob, document).await?)
            }
            None => {
                tracing::info!(key_id = %self.key_id, "no stored root secret: KMS GenerateDataKey");
                let generated = self
                    .kms
                    .generate_data_key(&self.key_id, ROOT_SECRET_BYTES, document)
                    .await?;
                let dir = self.state_dir.clone();
                let blob = generated.ciphertext_blob;
                tokio::task::spawn_blocking(move || store_blob(&dir, &blob))
                    .await
                    .map_err(|e| Error::KeyBrokerIo {
                        op: "storing",
                        path: path.clone(),
                        source: std::io::Error::other(e),
                    })??;
                tracing::info!(path = %path.display(), "stored the KMS-wrapped root secret");
                Ok(generated.ciphertext_for_recipient)
            }
        }
    }
}

/// Reads and checks one request; the error is the message for the `ERROR` reply.
async fn read_request(stream: &mut Stream) -> Result<Vec<u8>, String> {
    let (kind, body) = match frame_io::read_frame(stream, MAX_FRAME_BYTES).await {
        Ok(frame) => frame,
        Err(FrameError::Closed) => return Err("connection closed before a request".into()),
        Err(FrameError::Empty) => return Err("empty frame".into()),
        Err(FrameError::Oversize { len, limit }) => {
            return Err(format!("frame of {len} bytes is over the limit of {limit}"));
        }
        Err(FrameError::Io(e)) => return Err(format!("reading the request: {e}")),
        Err(other) => return Err(other.to_string()),
    };
    protocol::keybroker::parse_request(kind, &body)
        .map(<[u8]>::to_vec)
        .map_err(|e| e.to_string())
}

/// The stored blob, or `None` if there is none yet.
fn read_blob(path: &Path) -> Result<Option<Vec<u8>>> {
    let io = |source| Error::KeyBrokerIo {
        op: "reading",
        path: path.to_owned(),
        source,
    };
    let meta = match std::fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(e)),
    };
    if meta.len() == 0 || meta.len() > MAX_BLOB_BYTES {
        return Err(io(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "{} bytes is no KMS CiphertextBlob (1..={MAX_BLOB_BYTES} bytes)",
                meta.len()
            ),
        )));
    }
    std::fs::read(path).map(Some).map_err(io)
}

/// Writes the blob durably: temporary file, fsync, rename, directory fsync.
fn store_blob(dir: &Path, blob: &[u8]) -> Result<()> {
    let path = dir.join(STORED_BLOB_FILE);
    let tmp = dir.join(format!("{STORED_BLOB_FILE}.tmp"));
    let io = |op, path: &Path| {
        let path = path.to_owned();
        move |source| Error::KeyBrokerIo { op, path, source }
    };
    let mut file = std::fs::File::create(&tmp).map_err(io("creating", &tmp))?;
    file.write_all(blob).map_err(io("writing", &tmp))?;
    file.sync_all().map_err(io("syncing", &tmp))?;
    drop(file);
    std::fs::rename(&tmp, &path).map_err(io("renaming into", &path))?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("syncing", dir))
}
