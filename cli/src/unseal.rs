//! `daas unseal --server URL --secret-file F`: verify an enclave that waits
//! for its root secret (`daas-enclave --root-secret-source operator`), then
//! send the secret to its attested TLS key and check the answer.
//!
//! The secret leaves this machine only after every check of `daas verify`
//! passed (root, nonce, age, PCRs, TLS binding), and only over a TLS
//! connection that accepts nothing but the attested certificate. The
//! enclave answers with the anchor key it derived from the secret; it must
//! equal the one derived here, which proves it took this secret.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use attestation::{Mode, RootSecret};
use clap::Args;
use hyper::StatusCode;
use ring::rand::{SecureRandom, SystemRandom};
use zeroize::Zeroizing;

use crate::attested::{self, ServerUrl, TrustArgs, fetch};

/// Arguments of `daas unseal`.
#[derive(Debug, Args)]
pub(crate) struct UnsealArgs {
    /// The server, `https://HOST[:PORT]`.
    #[arg(long, value_name = "URL")]
    server: ServerUrl,
    #[command(flatten)]
    trust: TrustArgs,
    /// The cluster's root secret: 64 hex digits (or 32 raw bytes).
    #[arg(long, value_name = "PATH")]
    secret_file: PathBuf,
    /// Create SECRET_FILE (mode 0600, 32 random bytes as hex) if it does not
    /// exist: the secret of a new cluster. Keep it safe; it is the only way
    /// to unseal the cluster again.
    #[arg(long)]
    create_secret: bool,
}

/// Runs `daas unseal`.
pub(crate) fn run(args: &UnsealArgs) -> anyhow::Result<()> {
    let secret = read_or_create_secret(&args.secret_file, args.create_secret)?;
    // Dev enclaves derive their keys with the dev label, as they seal.
    let mode = if args.trust.dev_root.is_some() {
        Mode::Dev
    } else {
        Mode::Production
    };
    let expected_anchor = hex::encode(RootSecret::from_bytes(*secret).anchor_public_key(mode));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let attested = match attested::attest(&args.server, &args.trust).await {
            Ok(a) => a,
            Err(report) => {
                print!("{report}");
                bail!(
                    "{} is NOT verified: {}; the root secret was not sent",
                    report.server,
                    report.error.as_deref().unwrap_or("unknown failure")
                );
            }
        };
        let body = Zeroizing::new(
            serde_json::json!({ "rootSecret": hex::encode(*secret) })
                .to_string()
                .into_bytes(),
        );
        let (status, answer) = fetch::post_json_to_attested(
            &args.server,
            &attested.certificate,
            "/unseal",
            body.to_vec(),
        )
        .await?;
        match status {
            StatusCode::OK => {
                let reported = serde_json::from_slice::<serde_json::Value>(&answer)
                    .ok()
                    .and_then(|v| v.get("anchorKey")?.as_str().map(str::to_owned))
                    .unwrap_or_default();
                if reported != expected_anchor {
                    bail!(
                        "{} says it is unsealed with anchor key {reported:?}, but {} derives {expected_anchor}: it did not take this secret",
                        args.server,
                        args.secret_file.display()
                    );
                }
                println!(
                    "unsealed {}: the attested enclave took the root secret (anchor key {expected_anchor})",
                    args.server
                );
                Ok(())
            }
            StatusCode::CONFLICT => {
                if attested.report.anchor_key() == Some(expected_anchor.as_str()) {
                    println!(
                        "{} is already unsealed with this root secret (anchor key {expected_anchor})",
                        args.server
                    );
                    Ok(())
                } else {
                    bail!(
                        "{} is already unsealed, and not with this root secret (its anchor key is {}, this secret derives {expected_anchor})",
                        args.server,
                        attested.report.anchor_key().unwrap_or("unknown")
                    )
                }
            }
            other => bail!(
                "{} refused the root secret ({other}): {}",
                args.server,
                fetch::status_message(&answer)
            ),
        }
    })
}

/// Reads the secret (64 hex digits, surrounding whitespace allowed, or 32
/// raw bytes), or creates it when allowed and missing.
fn read_or_create_secret(path: &Path, create: bool) -> anyhow::Result<Zeroizing<[u8; 32]>> {
    let mut secret = Zeroizing::new([0u8; 32]);
    if create && !path.exists() {
        SystemRandom::new()
            .fill(&mut *secret)
            .map_err(|_| anyhow::anyhow!("no system randomness"))?;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .with_context(|| format!("creating {}", path.display()))?;
        let text = Zeroizing::new(format!("{}\n", hex::encode(*secret)));
        file.write_all(text.as_bytes())
            .and_then(|()| file.sync_all())
            .with_context(|| format!("writing {}", path.display()))?;
        eprintln!("created a new root secret in {}", path.display());
        return Ok(secret);
    }
    let bytes = Zeroizing::new(
        std::fs::read(path)
            .with_context(|| format!("reading the root secret {}", path.display()))?,
    );
    if bytes.len() == 32 {
        secret.copy_from_slice(&bytes);
        return Ok(secret);
    }
    let text = std::str::from_utf8(&bytes).unwrap_or("").trim();
    hex::decode_to_slice(text, &mut *secret).map_err(|_| {
        anyhow::anyhow!(
            "{} must hold the root secret as 64 hex digits or 32 raw bytes",
            path.display()
        )
    })?;
    Ok(secret)
}

#[cfg(test)]
mod tests {
    use super::read_or_create_secret;

    #[test]
    fn secret_files_hold_hex_or_raw_bytes_and_are_created_only_when_asked() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing");
        assert!(read_or_create_secret(&missing, false).is_err());
        let created = read_or_create_secret(&missing, true).unwrap();
        use std::os::unix::fs::PermissionsExt;
        let perm = std::fs::metadata(&missing).unwrap().permissions().mode();
        assert_eq!(perm & 0o777, 0o600);
        // Creating again reads the same secret back, never overwrites it.
        assert_eq!(*read_or_create_secret(&missing, true).unwrap(), *created);
        let raw = dir.path().join("raw");
        std::fs::write(&raw, [5u8; 32]).unwrap();
        assert_eq!(*read_or_create_secret(&raw, false).unwrap(), [5u8; 32]);
        let bad = dir.path().join("bad");
        std::fs::write(&bad, "abcd\n").unwrap();
        let e = read_or_create_secret(&bad, false).unwrap_err().to_string();
        assert!(e.contains("64 hex digits"), "{e}");
    }
}
