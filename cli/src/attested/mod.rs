//! Attested first contact, shared by `daas verify`, `daas kubeconfig` and
//! `daas dev`: connect without trusting the server, fetch a document with a
//! fresh random nonce over that connection, verify it against the pinned
//! root, the caller's nonce, a maximum age, the PCR policy (registry and
//! `--expect-pcr`) and the TLS key binding. Only a server that passes every
//! check is [`Attested`].

pub(crate) mod fetch;

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use attestation::{Pcr, Policy, VerifiedDocument, Verifier};
use chain::{AnyRegistry, OpenOptions, Pcrs, Registry, RegistryUrl};
use clap::Args;
use rustls_pki_types::CertificateDer;
use serde::Serialize;

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
    /// Require PCR0..2 to match an image the registry allows: `local:PATH`
    /// (or a plain file path), or `sui:RPC_URL#CLUSTER_OBJECT_ID`.
    #[arg(long, value_name = "REGISTRY")]
    pub(crate) registry: Option<String>,
    /// Require PCR N to equal HEX (96 hex digits); repeatable.
    #[arg(long = "expect-pcr", value_name = "N=HEX", value_parser = crate::attestation::parse_expected_pcr)]
    pub(crate) expect_pcr: Vec<(u8, Pcr)>,
    /// Reject documents older than this many seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 300)]
    pub(crate) max_age_secs: u64,
    /// Accept the UNSIGNED documents of QEMU's `nitro-enclave` emulator (zero signature, no
    /// certificates): they prove nothing about who made them. For testing enclave images
    /// under the emulator only; never for a server you need to trust.
    #[arg(long, conflicts_with_all = ["root", "dev_root"])]
    pub(crate) dangerous_qemu_emulator: bool,
}

impl TrustArgs {
    /// The policy every check starts from: the production default, which refuses emulator
    /// documents unless `--dangerous-qemu-emulator` was given.
    fn base_policy(&self) -> Policy {
        if self.dangerous_qemu_emulator {
            Policy::new().dangerous_allow_qemu_emulator()
        } else {
            Policy::new()
        }
    }

    fn verifier(&self) -> anyhow::Result<(Verifier, RootKind)> {
        if self.dangerous_qemu_emulator {
            return Ok((Verifier::dangerous_qemu_emulator(), RootKind::QemuEmulator));
        }
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

/// Which root a verification pinned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum RootKind {
    /// AWS Nitro Enclaves Root-G1.
    Aws,
    /// The dev simulator's root (`--dev-root`).
    Dev,
    /// Another root given with `--root`.
    Other,
    /// No root: QEMU's unsigned emulator documents (`--dangerous-qemu-emulator`).
    QemuEmulator,
}

impl RootKind {
    fn describe(self) -> &'static str {
        match self {
            RootKind::Aws => "AWS Nitro Enclaves Root-G1",
            RootKind::Dev => "dev simulator root (NOT AWS; --dev-root)",
            RootKind::Other => "NON-AWS root given with --root",
            RootKind::QemuEmulator => {
                "NONE: unsigned QEMU nitro-enclave emulator documents (--dangerous-qemu-emulator)"
            }
        }
    }
}

/// One row of the PCR table.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct PcrRow {
    index: u8,
    actual: Option<String>,
    expected: Option<String>,
    /// Where the expectation came from (`--expect-pcr`, `registry image ...`).
    source: Option<String>,
    ok: bool,
}

/// One check and its outcome.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Check {
    name: &'static str,
    ok: bool,
    detail: String,
}

/// Everything `daas verify` reports (also as `--json`).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Report {
    pub(crate) valid: bool,
    pub(crate) server: String,
    pub(crate) error: Option<String>,
    root: RootKind,
    root_sha256: String,
    module_id: Option<String>,
    timestamp_ms: Option<u64>,
    timestamp: Option<String>,
    verified_at_ms: u64,
    nonce: String,
    debug_mode: Option<bool>,
    tls_spki_sha256: Option<String>,
    tls_certificate_subject: Option<String>,
    /// The document's `user_data` when it is a 32-byte Ed25519 anchor key.
    anchor_key: Option<String>,
    pcrs: Vec<PcrRow>,
    chain: Vec<String>,
    checks: Vec<Check>,
}

impl Report {
    fn new(server: &ServerUrl, root: RootKind, root_sha256: String, nonce: &[u8]) -> Self {
        Self {
            valid: true,
            server: server.url.clone(),
            error: None,
            root,
            root_sha256,
            module_id: None,
            timestamp_ms: None,
            timestamp: None,
            verified_at_ms: now_ms(),
            nonce: hex::encode(nonce),
            debug_mode: None,
            tls_spki_sha256: None,
            tls_certificate_subject: None,
            anchor_key: None,
            pcrs: vec![],
            chain: vec![],
            checks: vec![],
        }
    }

    /// True when a document arrived and passed the signature check (so a
    /// failure is a verdict, not "the server is not up yet").
    /// The document's 32-byte `user_data` (the enclave's anchor key), hex.
    pub(crate) fn anchor_key(&self) -> Option<&str> {
        self.anchor_key.as_deref()
    }

    pub(crate) fn has_document(&self) -> bool {
        self.module_id.is_some()
    }

    fn fail(mut self, reason: String) -> Self {
        self.valid = false;
        if self.error.is_none() {
            self.error = Some(reason);
        }
        self
    }

    fn check(&mut self, name: &'static str, result: Result<String, String>) {
        let (ok, detail) = match result {
            Ok(d) => (true, d),
            Err(d) => (false, d),
        };
        if !ok && self.error.is_none() {
            self.error = Some(format!("{name}: {detail}"));
        }
        self.valid &= ok;
        self.checks.push(Check { name, ok, detail });
    }

    /// The human-readable report.
    pub(crate) fn print(&self) {
        match &self.error {
            None => println!("{}: VERIFIED", self.server),
            Some(e) => println!("{}: REJECTED: {e}", self.server),
        }
        println!(
            "root:        {} (sha256 {})",
            self.root.describe(),
            self.root_sha256
        );
        if let Some(m) = &self.module_id {
            println!("module_id:   {m}");
        }
        if let (Some(ts), Some(text)) = (self.timestamp_ms, &self.timestamp) {
            let age = self.verified_at_ms.saturating_sub(ts);
            println!("timestamp:   {text} ({ts} ms, {age} ms before verification)");
        }
        println!("nonce:       {} (ours, random)", self.nonce);
        if let Some(spki) = &self.tls_spki_sha256 {
            println!("tls key:     sha256(SPKI) {spki}");
        }
        if let Some(subject) = &self.tls_certificate_subject {
            println!("tls cert:    {subject}");
        }
        if let Some(key) = &self.anchor_key {
            println!("anchor key:  {key} (Ed25519, in user_data; signs registry anchors)");
        }
        if !self.pcrs.is_empty() {
            println!("PCRs:");
            for row in &self.pcrs {
                let actual = row.actual.as_deref().unwrap_or("(absent)");
                let mark = if row.ok { "ok  " } else { "FAIL" };
                match (&row.expected, &row.source) {
                    (Some(expected), Some(source)) => {
                        println!("  [{mark}] PCR{:<2} actual   {actual}", row.index);
                        println!("                expected {expected} ({source})");
                    }
                    _ => println!("  [    ] PCR{:<2} actual   {actual}", row.index),
                }
            }
        }
        if !self.chain.is_empty() {
            println!("chain (root first):");
            for subject in &self.chain {
                println!("  {subject}");
            }
        }
        if !self.checks.is_empty() {
            println!("checks:");
            for c in &self.checks {
                let mark = if c.ok { "ok  " } else { "FAIL" };
                println!("  [{mark}] {}: {}", c.name, c.detail);
            }
        }
    }
}

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

/// How far ahead of ours the server's clock may run.
const MAX_CLOCK_SKEW: Duration = Duration::from_secs(30);

fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .ok()
        .and_then(|d| u64::try_from(d.as_millis()).ok())
        .unwrap_or(0)
}

fn random_nonce() -> anyhow::Result<Vec<u8>> {
    use ring::rand::SecureRandom as _;
    let mut nonce = vec![0u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut nonce)
        .map_err(|_| anyhow::anyhow!("no system randomness for the nonce"))?;
    Ok(nonce)
}

pub(crate) fn registry_url(text: &str) -> anyhow::Result<RegistryUrl> {
    if text.starts_with("local:") || text.starts_with("sui:") || text.starts_with("relay:") {
        Ok(text.parse()?)
    } else {
        Ok(RegistryUrl::Local(PathBuf::from(text)))
    }
}

pub(crate) async fn allowed_images(text: &str) -> anyhow::Result<Vec<chain::AllowedImage>> {
    let url = registry_url(text)?;
    let registry = AnyRegistry::open(&url, &OpenOptions::default())
        .await
        .with_context(|| format!("opening the registry {text}"))?;
    Ok(registry
        .cluster()
        .await
        .with_context(|| format!("reading the registry {text}"))?
        .images)
}

fn subject(cert: &CertificateDer<'_>) -> Option<String> {
    use x509_cert::der::Decode as _;
    x509_cert::Certificate::from_der(cert)
        .ok()
        .map(|c| c.tbs_certificate.subject.to_string())
}

/// Verifies `server` under `trust`. Returns the report either way: `Ok`
/// only when every check passed.
///
/// # Errors
///
/// The report, with its first failure in `error`, when any check failed,
/// including failing to reach the server or read the registry.
pub(crate) async fn attest(server: &ServerUrl, trust: &TrustArgs) -> Result<Attested, Box<Report>> {
    let nonce = random_nonce().unwrap_or_default();
    let (verifier, root) = match trust.verifier() {
        Ok(v) => v,
        Err(e) => {
            let report = Report::new(server, RootKind::Other, String::new(), &nonce);
            return Err(Box::new(report.fail(format!("{e:#}"))));
        }
    };
    let mut report = Report::new(server, root, hex::encode(verifier.root_sha256()), &nonce);
    if nonce.is_empty() {
        return Err(Box::new(
            report.fail("no system randomness for the nonce".into()),
        ));
    }
    // Registry first: a registry we cannot read must not look like "no policy".
    let images = match &trust.registry {
        Some(text) => match allowed_images(text).await {
            Ok(images) => Some(images),
            Err(e) => return Err(Box::new(report.fail(format!("{e:#}")))),
        },
        None => None,
    };
    let fetched = match fetch::fetch_attestation(server, &nonce).await {
        Ok(f) => f,
        Err(e) => return Err(Box::new(report.fail(format!("{e:#}")))),
    };
    let Some(leaf) = fetched.peer_chain.first().cloned() else {
        return Err(Box::new(
            report.fail("the server presented no certificate".into()),
        ));
    };
    report.tls_spki_sha256 = attestation::spki_sha256(&leaf).ok().map(hex::encode);
    report.tls_certificate_subject = subject(&leaf);
    let at_ms = now_ms();
    report.verified_at_ms = at_ms;

    // Signature and certificate chain up to the pinned root, valid now.
    let doc = match verifier.verify(&fetched.document, at_ms) {
        Ok(doc) => doc,
        Err(e) => {
            let hint = match (&e, root) {
                (attestation::VerifyError::UntrustedRoot { .. }, RootKind::Aws) => {
                    "; production policy accepts only AWS Nitro Root-G1 (a dev enclave's \
                     simulated root needs --dev-root)"
                }
                _ => "",
            };
            report.check(
                "document signed under the pinned root",
                Err(format!("{e}{hint}")),
            );
            return Err(Box::new(report));
        }
    };
    report.check(
        "document signed under the pinned root",
        Ok(format!(
            "ES384 signature by the leaf of a {}-certificate chain from {}",
            doc.chain_subjects().len(),
            root.describe()
        )),
    );
    fill_document(&mut report, &doc);

    // Each policy below checks one rule, so the report names the one that
    // failed; debug mode is rejected by its own check ("production mode").
    let base = || trust.base_policy();
    let policy_result = |policy: Policy, at: u64| policy.check(&doc, at).map_err(|e| e.to_string());
    report.check(
        "nonce",
        policy_result(
            base().dangerous_allow_debug().require_nonce(nonce.clone()),
            at_ms,
        )
        .map(|()| "the document carries our fresh nonce".to_owned()),
    );
    // The nonce already proves the document is new; the age check guards
    // against a server clock that is off, allowing it to run a little ahead.
    report.check(
        "freshness",
        policy_result(
            base()
                .dangerous_allow_debug()
                .max_age(Duration::from_secs(trust.max_age_secs) + MAX_CLOCK_SKEW),
            at_ms.saturating_add(duration_ms(MAX_CLOCK_SKEW)),
        )
        .map(|()| {
            format!(
                "{} ms old, at most {} s",
                at_ms.saturating_sub(doc.timestamp_ms()),
                trust.max_age_secs
            )
        }),
    );
    report.check(
        "production mode",
        policy_result(base(), at_ms)
            .map(|()| "PCR0..2 are not zero (not a debug-mode enclave)".to_owned()),
    );
    if doc.is_qemu_emulator() {
        report.check(
            "emulator",
            Ok(
                "NOT A NITRO ENCLAVE: an unsigned QEMU nitro-enclave emulator document, accepted \
                because of --dangerous-qemu-emulator"
                    .to_owned(),
            ),
        );
    }
    check_pcrs(
        &mut report,
        &doc,
        &trust.expect_pcr,
        images.as_deref(),
        base(),
    );
    let connection_key = report.tls_spki_sha256.clone().unwrap_or_default();
    report.check(
        "TLS binding",
        attestation::check_tls_binding(&leaf, &doc)
            .map(|()| {
                "the document's public_key is SHA-256 of this connection's certificate key"
                    .to_owned()
            })
            .map_err(|e| {
                format!(
                    "{e}: the attested key is {}, this connection's is {}",
                    doc.public_key().map(hex::encode).unwrap_or_default(),
                    connection_key
                )
            }),
    );
    if report.valid {
        Ok(Attested {
            report,
            certificate: leaf,
            document: fetched.document,
        })
    } else {
        Err(Box::new(report))
    }
}

fn fill_document(report: &mut Report, doc: &VerifiedDocument) {
    report.module_id = Some(doc.module_id().to_owned());
    report.timestamp_ms = Some(doc.timestamp_ms());
    report.timestamp = Some(
        humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(doc.timestamp_ms()))
            .to_string(),
    );
    report.debug_mode = Some(doc.is_debug_mode());
    report.anchor_key = doc.user_data().filter(|u| u.len() == 32).map(hex::encode);
    report.chain = doc.chain_subjects().to_vec();
}

fn check_pcrs(
    report: &mut Report,
    doc: &VerifiedDocument,
    expected: &[(u8, Pcr)],
    images: Option<&[chain::AllowedImage]>,
    base: Policy,
) {
    let actual = |i: u8| doc.pcrs().get(i).copied();
    // The registry admits an image when PCR0..2 all match one allowed image.
    let image = images.and_then(|images| {
        let pcrs = Pcrs {
            pcr0: actual(0)?,
            pcr1: actual(1)?,
            pcr2: actual(2)?,
        };
        images.iter().find(|i| i.pcrs == pcrs)
    });
    let mut rows: Vec<PcrRow> = Vec::new();
    let mut row = |index: u8, want: Option<(Pcr, String)>| {
        let got = actual(index);
        let ok = want.as_ref().is_none_or(|(w, _)| Some(*w) == got);
        rows.push(PcrRow {
            index,
            actual: got.map(|p| p.to_string()),
            expected: want.as_ref().map(|(w, _)| w.to_string()),
            source: want.map(|(_, s)| s),
            ok,
        });
    };
    for index in 0..3u8 {
        let from_flag = expected.iter().find(|(i, _)| *i == index);
        let from_registry = image.map(|img| {
            let p = match index {
                0 => img.pcrs.pcr0,
                1 => img.pcrs.pcr1,
                _ => img.pcrs.pcr2,
            };
            (
                p,
                format!("registry image {:?} v{}", img.label, img.version),
            )
        });
        match from_flag {
            Some((_, p)) => row(index, Some((*p, "--expect-pcr".to_owned()))),
            None => row(index, from_registry),
        }
    }
    for (index, p) in expected.iter().filter(|(i, _)| *i >= 3) {
        row(*index, Some((*p, "--expect-pcr".to_owned())));
    }
    rows.sort_by_key(|r| r.index);
    report.pcrs = rows;

    if !expected.is_empty() {
        let policy = expected
            .iter()
            .fold(base.dangerous_allow_debug(), |p, (i, v)| {
                p.expect_pcr(*i, *v)
            });
        let indexes: Vec<String> = expected.iter().map(|(i, _)| format!("PCR{i}")).collect();
        report.check(
            "expected PCRs",
            policy
                .check(doc, report.verified_at_ms)
                .map(|()| format!("{} as given with --expect-pcr", indexes.join(", ")))
                .map_err(|e| e.to_string()),
        );
    }
    if let Some(images) = images {
        let result = match image {
            Some(img) => Ok(format!(
                "PCR0..2 are allowed image {:?} v{}",
                img.label, img.version
            )),
            None => Err(format!(
                "PCR0..2 match none of the {} allowed images",
                images.len()
            )),
        };
        report.check("registry", result);
    }
}
