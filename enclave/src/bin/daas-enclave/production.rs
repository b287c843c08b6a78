//! What production mode checks before it starts.

use std::path::Path;

use anyhow::{Result, bail};
use attestation::{NitroNsm, Nsm as _};
use enclave::api::attestation::{DEV_ROOT_CERT, DEV_ROOT_KEY};

/// Files only dev mode writes. A production enclave finding one was pointed at a dev data
/// directory (or one copied from it), and refuses to mix the two.
const DEV_ARTEFACTS: [(&str, &str); 3] = [
    ("root-secret.dev", "the dev root secret file"),
    (DEV_ROOT_CERT, "the dev attestation root certificate"),
    (DEV_ROOT_KEY, "the dev attestation root key"),
];

/// Fails naming the first dev artefact under `dir`.
pub(crate) fn refuse_dev_artefacts(dir: &Path) -> Result<()> {
    for (name, what) in DEV_ARTEFACTS {
        let path = dir.join(name);
        if path.exists() {
            bail!(
                "{} holds {what} ({}), a dev-mode artefact: a production enclave never uses dev keys, \
                 dev roots or dev-sealed data; give it a data directory dev mode has never used",
                dir.display(),
                path.display()
            );
        }
    }
    Ok(())
}

/// Logs PCR0..2 as this enclave's NSM reports them (what verifiers and KMS compare).
pub(crate) async fn log_nsm(nsm: &NitroNsm) {
    for index in 0..3u16 {
        match nsm.describe_pcr(index).await {
            Ok(pcr) => tracing::info!(
                index,
                locked = pcr.locked,
                value = %hex::encode(&pcr.value),
                "PCR from the Nitro Secure Module"
            ),
            Err(e) => tracing::warn!(index, error = %e, "DescribePCR failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_artefacts_are_named() {
        let dir = tempfile::tempdir().unwrap();
        refuse_dev_artefacts(dir.path()).unwrap();
        std::fs::create_dir_all(dir.path().join("attestation")).unwrap();
        std::fs::write(dir.path().join(DEV_ROOT_CERT), b"x").unwrap();
        let err = refuse_dev_artefacts(dir.path()).unwrap_err().to_string();
        assert!(err.contains("dev attestation root certificate"), "{err}");
        assert!(err.contains("dev-mode artefact"), "{err}");
    }
}
