//! Attested first contact, shared by `daas verify`, `daas kubeconfig` and
//! `daas dev`: connect without trusting the server, fetch a document with a
//! fresh random nonce over that connection, verify it against the pinned
//! root, the caller's nonce, a maximum age, the PCR policy (`--expect-pcr`),
//! the registry (allowed images and the live enclave's keys) and the TLS key
//! binding. Only a server that passes every check is [`Attested`]. The
//! checks are `chain::attest`'s and the connection is `worker`'s, so
//! `daas-worker` verifies exactly as `daas verify` does.

pub(crate) mod fetch;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use attestation::{Pcr, Verifier};
use chain::attest::{EnclaveReport, RootKind, TrustPolicy};
use chain::{AnyRegistry, ClusterState, OpenOptions, Registry, RegistryUrl};
use clap::Args;
use rustls_pki_types::CertificateDer;

pub(crate) use fetch::ServerUrl;

/// How much to trust, shared by every command that contacts a server.
#[derive(Debug, Clone, Args)]
pub(crate) struct TrustArgs {
    /// Trust this root certificate (PEM) instead of the pinned AWS Nitro
    /// Root-G1. A file holding AWS's own root is the default; any other root
    /// is reported as not AWS.
    #[arg(long, value_name = "PEM", conflicts_with = "dev_root")]
    pub(crate) root: Option<PathBuf>,
    /// Trust the dev simulator's root (`DATA_DIR/attestation/dev-root.crt`
    /// of `daas-enclave --dev`). Dev clusters only: never pass this for a
    /// production server.
    #[arg(long, value_name = "PEM")]
    pub(crate) dev_root: Option<PathBuf>,
    /// Require PCR0..2 to match an image the registry allows and the server
    /// to be the enclave it records live (TLS key and anchor key): `local:PATH`
    /// (or a plain file path), or `sui:RPC_URL#CLUSTER_OBJECT_ID`.
    #[arg(long, value_name = "REGISTRY")]
    pub(crate) registry: Option<String>,
    /// Require PCR N to equal HEX (96 hex digits); repeatable.
    #[arg(long = "expect-pcr", value_name = "N=HEX", value_parser = crate::attestation::parse_expected_pcr)]
    pub(crate) expect_pcr: Vec<(u8, Pcr)>,
    /// Reject documents older than this many seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 300)]
    pub(crate) max_age_secs: u64,
}

impl TrustArgs {
    /// The policy these flags describe.
    pub(crate) fn policy(&self) -> anyhow::Result<TrustPolicy> {
        let (verifier, root) = self.verifier()?;
        Ok(TrustPolicy {
            verifier,
            root,
            expected_pcrs: self.expect_pcr.clone(),
            max_age: Duration::from_secs(self.max_age_secs),
        })
    }

    fn verifier(&self) -> anyhow::Result<(Verifier, RootKind)> {
        let read = |path: &PathBuf| {
            std::fs::read(path).with_context(|| format!("reading {}", path.display()))
        };
        if let Some(path) = &self.dev_root {
            let verifier = Verifier::dangerous_trust_root_pem(&read(path)?)
                .with_context(|| format!("dev root certificate {}", path.display()))?;
            return Ok((verifier, RootKind::Dev));
        }
        if let Some(path) = &self.root {
            let verifier = Verifier::dangerous_trust_root_pem(&read(path)?)
                .with_context(|| format!("root certificate {}", path.display()))?;
            let kind = if verifier.is_aws_nitro() {
                RootKind::Aws
            } else {
                RootKind::Other
            };
            return Ok((verifier, kind));
        }
        Ok((Verifier::aws_nitro(), RootKind::Aws))
    }
}

/// What every check found (`daas verify` prints it, also as `--json`).
pub(crate) type Report = EnclaveReport;

/// A server whose attestation verified and whose TLS key is the attested one.
#[derive(Debug)]
pub(crate) struct Attested {
    /// The report (valid).
    pub(crate) report: Report,
    /// The server's leaf certificate on the attested connection.
    pub(crate) certificate: CertificateDer<'static>,
    /// The verified attestation document, as served (COSE_Sign1).
    pub(crate) document: Vec<u8>,
}

fn registry_url(text: &str) -> anyhow::Result<RegistryUrl> {
    if text.starts_with("local:") || text.starts_with("sui:") {
        Ok(text.parse()?)
    } else {
        Ok(RegistryUrl::Local(PathBuf::from(text)))
    }
}

async fn registry_state(text: &str) -> anyhow::Result<ClusterState> {
    let url = registry_url(text)?;
    let registry = AnyRegistry::open(&url, &OpenOptions::default())
        .await
        .with_context(|| format!("opening the registry {text}"))?;
    registry
        .cluster()
        .await
        .with_context(|| format!("reading the registry {text}"))
}

/// Verifies `server` under `trust` (the checks of [`chain::attest::check_enclave`], run by
/// [`worker::attest`] on a first-contact connection). Returns the report either way: `Ok`
/// only when every check passed.
///
/// # Errors
///
/// The report, with its first failure in `error`, when any check failed,
/// including failing to reach the server or read the registry.
pub(crate) async fn attest(server: &ServerUrl, trust: &TrustArgs) -> Result<Attested, Box<Report>> {
    let policy = match trust.policy() {
        Ok(p) => p,
        Err(e) => {
            let policy = TrustPolicy {
                root: RootKind::Other,
                ..TrustPolicy::aws_nitro()
            };
            let report = Report::new(&server.url, &policy, &[], worker::attested::now_ms());
            return Err(Box::new(report.fail(format!("{e:#}"))));
        }
    };
    // Registry first: a registry we cannot read must not look like "no policy".
    let cluster = match &trust.registry {
        Some(text) => match registry_state(text).await {
            Ok(state) => Some(state),
            Err(e) => {
                let report = Report::new(&server.url, &policy, &[], worker::attested::now_ms());
                return Err(Box::new(report.fail(format!("{e:#}"))));
            }
        },
        None => None,
    };
    match worker::attest(server, &policy, cluster.as_ref()).await {
        Ok(a) => Ok(Attested {
            report: a.report,
            certificate: a.certificate,
            document: a.document,
        }),
        Err(e) => Err(Box::new(e.report(server, &policy))),
    }
}
