//! Sui accounts without the Sui SDK: Ed25519 keys in the Sui CLI keystore format
//! (`~/.sui/sui_config/sui.keystore`, a JSON array of Base64 `0x00 || 32-byte seed`), Sui
//! addresses (`blake2b256(0x00 || public key)`) and personal-message signatures (intent
//! `[3, 0, 0]`, then the BCS `vector<u8>` of the message, BLAKE2b-256, Ed25519; serialized as
//! `0x00 || signature || public key`). Built on `ring` and `blake2` only, so the enclave and the
//! worker verify and sign exactly what Sui wallets and `sui-crypto` do (cross-checked in
//! `tests/personal_message.rs`) without the heavy `sui` feature.

use std::fmt;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use blake2::digest::consts::U32;
use blake2::{Blake2b, Digest as _};
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair as _, UnparsedPublicKey};
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::types::Address;

/// Signature-scheme flag of Ed25519 in Sui addresses and serialized signatures.
pub const ED25519_FLAG: u8 = 0x00;
/// Length of a serialized Ed25519 Sui signature: flag, 64-byte signature, 32-byte public key.
pub const SUI_SIGNATURE_LEN: usize = 1 + 64 + 32;
/// Intent of personal messages: scope 3 (PersonalMessage), version 0, app id 0 (Sui).
pub const PERSONAL_MESSAGE_INTENT: [u8; 3] = [3, 0, 0];

type Blake2b256 = Blake2b<U32>;

/// The Sui address of an Ed25519 public key: `blake2b256(0x00 || public_key)`.
#[must_use]
pub fn address_of_public_key(public_key: &[u8; 32]) -> Address {
    let mut hasher = Blake2b256::new();
    hasher.update([ED25519_FLAG]);
    hasher.update(public_key);
    Address(hasher.finalize().into())
}

/// What a Sui personal-message signature signs for `message`: `blake2b256([3, 0, 0] ||
/// bcs(message as vector<u8>))`.
#[must_use]
pub fn personal_message_digest(message: &[u8]) -> [u8; 32] {
    let mut hasher = Blake2b256::new();
    hasher.update(PERSONAL_MESSAGE_INTENT);
    // BCS of a byte vector is its ULEB128 length, then the bytes; it cannot fail.
    hasher.update(bcs::to_bytes(message).unwrap_or_default());
    hasher.finalize().into()
}

/// Why a personal-message signature was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SignatureProblem {
    /// Not [`SUI_SIGNATURE_LEN`] bytes.
    Length,
    /// Not an Ed25519 signature (another scheme flag).
    Scheme,
    /// The Ed25519 signature does not verify for the embedded key and the message.
    Invalid,
}

impl fmt::Display for SignatureProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Length => "a Sui Ed25519 signature is 97 bytes (flag, signature, public key)",
            Self::Scheme => "only Ed25519 signatures (flag 0x00) are accepted",
            Self::Invalid => "the signature does not verify for this message",
        })
    }
}

/// Verifies a serialized Sui Ed25519 signature over the personal message `message` and
/// returns the signer's address.
///
/// # Errors
///
/// The [`SignatureProblem`].
pub fn verify_personal_message(
    signature: &[u8],
    message: &[u8],
) -> std::result::Result<Address, SignatureProblem> {
    if signature.len() != SUI_SIGNATURE_LEN {
        return Err(SignatureProblem::Length);
    }
    let (flag, rest) = signature.split_at(1);
    if flag != [ED25519_FLAG] {
        return Err(SignatureProblem::Scheme);
    }
    let (sig, public_key) = rest.split_at(64);
    let digest = personal_message_digest(message);
    UnparsedPublicKey::new(&ED25519, public_key)
        .verify(&digest, sig)
        .map_err(|_| SignatureProblem::Invalid)?;
    let mut key = [0u8; 32];
    key.copy_from_slice(public_key);
    Ok(address_of_public_key(&key))
}

/// One Ed25519 Sui account: its key and address.
pub struct SuiAccount {
    seed: Zeroizing<[u8; 32]>,
    pair: Ed25519KeyPair,
    address: Address,
}

impl fmt::Debug for SuiAccount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SuiAccount")
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

impl SuiAccount {
    /// The account of an Ed25519 seed (the 32 bytes after the flag in a keystore entry).
    #[must_use]
    pub fn from_seed(seed: [u8; 32]) -> Self {
        // Ed25519 key generation only rejects seeds of the wrong length.
        #[allow(clippy::expect_used)]
        let pair = Ed25519KeyPair::from_seed_unchecked(&seed)
            .expect("invariant: a 32-byte seed is a valid Ed25519 seed");
        let mut public = [0u8; 32];
        public.copy_from_slice(pair.public_key().as_ref());
        Self {
            seed: Zeroizing::new(seed),
            pair,
            address: address_of_public_key(&public),
        }
    }

    /// A fresh account from the system random generator.
    ///
    /// # Errors
    ///
    /// [`Error::Keystore`] when the generator fails.
    pub fn generate() -> Result<Self> {
        let mut seed = Zeroizing::new([0u8; 32]);
        SystemRandom::new()
            .fill(seed.as_mut())
            .map_err(|_| Error::Keystore {
                path: PathBuf::new(),
                reason: "the system random generator failed".to_owned(),
            })?;
        Ok(Self::from_seed(*seed))
    }

    /// Its Sui address.
    #[must_use]
    pub fn address(&self) -> Address {
        self.address
    }

    /// Its raw Ed25519 public key.
    #[must_use]
    pub fn public_key(&self) -> [u8; 32] {
        let mut public = [0u8; 32];
        public.copy_from_slice(self.pair.public_key().as_ref());
        public
    }

    /// Signs `message` as a Sui personal message; the serialized signature
    /// (`0x00 || signature || public key`).
    #[must_use]
    pub fn sign_personal_message(&self, message: &[u8]) -> [u8; SUI_SIGNATURE_LEN] {
        let digest = personal_message_digest(message);
        let mut out = [0u8; SUI_SIGNATURE_LEN];
        out[0] = ED25519_FLAG;
        out[1..65].copy_from_slice(self.pair.sign(&digest).as_ref());
        out[65..].copy_from_slice(self.pair.public_key().as_ref());
        out
    }

    /// The keystore entry: Base64 of `0x00 || seed`.
    #[must_use]
    fn keystore_entry(&self) -> String {
        let mut bytes = Zeroizing::new([0u8; 33]);
        bytes[0] = ED25519_FLAG;
        bytes[1..].copy_from_slice(self.seed.as_ref());
        base64::engine::general_purpose::STANDARD.encode(bytes.as_ref())
    }
}

/// The Ed25519 accounts of a Sui CLI keystore file.
#[derive(Debug)]
pub struct AccountKeystore {
    path: PathBuf,
    accounts: Vec<SuiAccount>,
}

impl AccountKeystore {
    /// Reads a keystore. Entries of other schemes (Secp256k1, Secp256r1) are skipped: only
    /// Ed25519 accounts sign here.
    ///
    /// # Errors
    ///
    /// [`Error::Keystore`] when the file is unreadable, not a JSON array of strings, or an entry
    /// is not Base64 of a flag and a 32-byte key.
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let bad = |reason: String| Error::Keystore {
            path: path.clone(),
            reason,
        };
        let text = std::fs::read_to_string(&path).map_err(|e| bad(e.to_string()))?;
        let entries: Vec<String> = serde_json::from_str(&text)
            .map_err(|e| bad(format!("not a JSON array of strings: {e}")))?;
        let mut accounts = Vec::new();
        for (i, entry) in entries.iter().enumerate() {
            let bytes = Zeroizing::new(
                base64::engine::general_purpose::STANDARD
                    .decode(entry.trim())
                    .map_err(|e| bad(format!("entry {i} is not Base64: {e}")))?,
            );
            let (flag, key) = bytes
                .split_first()
                .ok_or_else(|| bad(format!("entry {i} is empty")))?;
            let seed: [u8; 32] = key
                .try_into()
                .map_err(|_| bad(format!("entry {i} is not a flag and a 32-byte key")))?;
            if *flag == ED25519_FLAG {
                accounts.push(SuiAccount::from_seed(seed));
            }
        }
        Ok(Self { path, accounts })
    }

    /// Reads the keystore at `path`, or starts an empty one there when the file does not exist
    /// (nothing is written until [`AccountKeystore::save`]).
    ///
    /// # Errors
    ///
    /// As [`AccountKeystore::load`] for an existing file.
    pub fn load_or_empty(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        if path.exists() {
            Self::load(path)
        } else {
            Ok(Self {
                path: path.to_path_buf(),
                accounts: Vec::new(),
            })
        }
    }

    /// The file.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The Ed25519 accounts, in file order.
    #[must_use]
    pub fn accounts(&self) -> &[SuiAccount] {
        &self.accounts
    }

    /// The account with `address`, or the first one when `address` is `None`.
    ///
    /// # Errors
    ///
    /// [`Error::Keystore`] when the keystore has no (such) Ed25519 account.
    pub fn account(&self, address: Option<Address>) -> Result<&SuiAccount> {
        let found = match address {
            None => self.accounts.first(),
            Some(a) => self.accounts.iter().find(|k| k.address() == a),
        };
        found.ok_or_else(|| Error::Keystore {
            path: self.path.clone(),
            reason: match address {
                None => "holds no Ed25519 key".to_owned(),
                Some(a) => format!("holds no Ed25519 key for {a}"),
            },
        })
    }

    /// Adds `account` (kept in memory until [`AccountKeystore::save`]).
    pub fn push(&mut self, account: SuiAccount) {
        self.accounts.push(account);
    }

    /// Writes the keystore in the Sui CLI format, readable only by its owner.
    ///
    /// # Errors
    ///
    /// [`Error::Keystore`] when the file cannot be written.
    pub fn save(&self) -> Result<()> {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        let bad = |e: std::io::Error| Error::Keystore {
            path: self.path.clone(),
            reason: e.to_string(),
        };
        let entries: Vec<String> = self
            .accounts
            .iter()
            .map(SuiAccount::keystore_entry)
            .collect();
        let json = Zeroizing::new(serde_json::to_string_pretty(&entries).unwrap_or_default());
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(bad)?;
        }
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&self.path)
            .map_err(bad)?;
        file.write_all(json.as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(bad)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_and_verifies_and_names_the_signer() {
        let account = SuiAccount::from_seed([7; 32]);
        let sig = account.sign_personal_message(b"hello");
        assert_eq!(
            verify_personal_message(&sig, b"hello"),
            Ok(account.address())
        );
        assert_eq!(
            verify_personal_message(&sig, b"hellp"),
            Err(SignatureProblem::Invalid)
        );
        let mut flipped = sig;
        flipped[10] ^= 1;
        assert_eq!(
            verify_personal_message(&flipped, b"hello"),
            Err(SignatureProblem::Invalid)
        );
        let mut other_key = sig;
        other_key[65..].copy_from_slice(&SuiAccount::from_seed([8; 32]).public_key());
        assert_eq!(
            verify_personal_message(&other_key, b"hello"),
            Err(SignatureProblem::Invalid)
        );
        let mut scheme = sig;
        scheme[0] = 1;
        assert_eq!(
            verify_personal_message(&scheme, b"hello"),
            Err(SignatureProblem::Scheme)
        );
        assert_eq!(
            verify_personal_message(&sig[1..], b"hello"),
            Err(SignatureProblem::Length)
        );
    }

    #[test]
    fn keystore_round_trips_and_skips_other_schemes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sui.keystore");
        let mut store = AccountKeystore::load_or_empty(&path).unwrap();
        assert!(store.account(None).is_err());
        store.push(SuiAccount::from_seed([1; 32]));
        store.push(SuiAccount::from_seed([2; 32]));
        store.save().unwrap();
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);

        // A secp256k1 entry (flag 1) as the Sui CLI writes it is skipped, not an error.
        let mut entries: Vec<String> =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let mut secp = vec![1u8];
        secp.extend_from_slice(&[3; 32]);
        entries.insert(0, base64::engine::general_purpose::STANDARD.encode(secp));
        std::fs::write(&path, serde_json::to_string(&entries).unwrap()).unwrap();

        let back = AccountKeystore::load(&path).unwrap();
        let addresses: Vec<Address> = back.accounts().iter().map(SuiAccount::address).collect();
        assert_eq!(
            addresses,
            vec![
                SuiAccount::from_seed([1; 32]).address(),
                SuiAccount::from_seed([2; 32]).address()
            ]
        );
        let second = SuiAccount::from_seed([2; 32]).address();
        assert_eq!(back.account(Some(second)).unwrap().address(), second);
        assert!(back.account(Some(Address::ZERO)).is_err());

        std::fs::write(&path, "[\"!!\"]").unwrap();
        let err = AccountKeystore::load(&path).unwrap_err().to_string();
        assert!(err.contains("not Base64"), "{err}");
    }
}
