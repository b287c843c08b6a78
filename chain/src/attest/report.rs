//! The report of a first-contact verification, and the policy it was made under.

use std::fmt;
use std::time::{Duration, UNIX_EPOCH};

use attestation::{Pcr, VerifiedDocument, Verifier};
use serde::Serialize;

/// Which root a verification pins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RootKind {
    /// AWS Nitro Enclaves Root-G1.
    Aws,
    /// The dev simulator's root (`--dev-root`).
    Dev,
    /// Another root given with `--root`.
    Other,
}

impl RootKind {
    /// How reports describe it.
    #[must_use]
    pub fn describe(self) -> &'static str {
        match self {
            RootKind::Aws => "AWS Nitro Enclaves Root-G1",
            RootKind::Dev => "dev simulator root (NOT AWS; --dev-root)",
            RootKind::Other => "NON-AWS root given with --root",
        }
    }
}

/// What a verification requires besides the registry.
#[derive(Debug, Clone)]
pub struct TrustPolicy {
    /// The pinned root.
    pub verifier: Verifier,
    /// What that root is, for reports.
    pub root: RootKind,
    /// PCRs that must have these values (`--expect-pcr`).
    pub expected_pcrs: Vec<(u8, Pcr)>,
    /// The oldest document accepted.
    pub max_age: Duration,
}

impl TrustPolicy {
    /// The production policy: AWS's root, no expected PCRs, documents at most 5 minutes old.
    #[must_use]
    pub fn aws_nitro() -> Self {
        Self {
            verifier: Verifier::aws_nitro(),
            root: RootKind::Aws,
            expected_pcrs: Vec::new(),
            max_age: Duration::from_secs(300),
        }
    }
}

/// One row of the PCR table.
#[derive(Debug, Clone, Serialize)]
pub struct PcrRow {
    pub(super) index: u8,
    pub(super) actual: Option<String>,
    pub(super) expected: Option<String>,
    /// Where the expectation came from (`--expect-pcr`, `registry image ...`).
    pub(super) source: Option<String>,
    pub(super) ok: bool,
}

/// One check and its outcome.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// Its name (`nonce`, `freshness`, `registry`, `live enclave`, `TLS binding`, ...).
    pub name: &'static str,
    /// Whether it passed.
    pub ok: bool,
    /// What was found.
    pub detail: String,
}

/// Everything a verification found (`daas verify` prints it, also as `--json`).
#[derive(Debug, Clone, Serialize)]
pub struct EnclaveReport {
    /// True when every check passed.
    pub valid: bool,
    /// The server, as written in kubeconfigs.
    pub server: String,
    /// The first failure, `check: detail`.
    pub error: Option<String>,
    pub(super) root: RootKind,
    root_sha256: String,
    pub(super) module_id: Option<String>,
    pub(super) timestamp_ms: Option<u64>,
    pub(super) timestamp: Option<String>,
    pub(super) verified_at_ms: u64,
    pub(super) nonce: String,
    pub(super) debug_mode: Option<bool>,
    pub(super) tls_spki_sha256: Option<String>,
    pub(super) tls_certificate_subject: Option<String>,
    /// The document's `user_data` when it is a 32-byte Ed25519 anchor key.
    pub(super) anchor_key: Option<String>,
    pub(super) pcrs: Vec<PcrRow>,
    pub(super) chain: Vec<String>,
    pub(super) checks: Vec<Check>,
}

impl EnclaveReport {
    /// A report about `server` under `policy` for our `nonce`, with no checks yet.
    #[must_use]
    pub fn new(server: &str, policy: &TrustPolicy, nonce: &[u8], now_ms: u64) -> Self {
        Self {
            valid: true,
            server: server.to_owned(),
            error: None,
            root: policy.root,
            root_sha256: hex::encode(policy.verifier.root_sha256()),
            module_id: None,
            timestamp_ms: None,
            timestamp: None,
            verified_at_ms: now_ms,
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

    /// The document's 32-byte `user_data` (the enclave's anchor key), hex.
    #[must_use]
    pub fn anchor_key(&self) -> Option<&str> {
        self.anchor_key.as_deref()
    }

    /// SHA-256 of the connection's TLS key, hex.
    #[must_use]
    pub fn tls_spki_sha256(&self) -> Option<&str> {
        self.tls_spki_sha256.as_deref()
    }

    /// True when a document arrived and passed the signature check (so a failure is a
    /// verdict, not "the server is not up yet").
    #[must_use]
    pub fn has_document(&self) -> bool {
        self.module_id.is_some()
    }

    /// The checks, in order.
    #[must_use]
    pub fn checks(&self) -> &[Check] {
        &self.checks
    }

    /// Marks the report failed for `reason` (unless it failed already) and returns it.
    #[must_use]
    pub fn fail(mut self, reason: String) -> Self {
        self.valid = false;
        if self.error.is_none() {
            self.error = Some(reason);
        }
        self
    }

    pub(super) fn check(&mut self, name: &'static str, result: Result<String, String>) {
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

    pub(super) fn fill_document(&mut self, doc: &VerifiedDocument) {
        self.module_id = Some(doc.module_id().to_owned());
        self.timestamp_ms = Some(doc.timestamp_ms());
        self.timestamp = Some(
            humantime::format_rfc3339_millis(
                UNIX_EPOCH + Duration::from_millis(doc.timestamp_ms()),
            )
            .to_string(),
        );
        self.debug_mode = Some(doc.is_debug_mode());
        self.anchor_key = doc.user_data().filter(|u| u.len() == 32).map(hex::encode);
        self.chain = doc.chain_subjects().to_vec();
    }
}

impl fmt::Display for EnclaveReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.error {
            None => writeln!(f, "{}: VERIFIED", self.server)?,
            Some(e) => writeln!(f, "{}: REJECTED: {e}", self.server)?,
        }
        writeln!(
            f,
            "root:        {} (sha256 {})",
            self.root.describe(),
            self.root_sha256
        )?;
        if let Some(m) = &self.module_id {
            writeln!(f, "module_id:   {m}")?;
        }
        if let (Some(ts), Some(text)) = (self.timestamp_ms, &self.timestamp) {
            let age = self.verified_at_ms.saturating_sub(ts);
            writeln!(
                f,
                "timestamp:   {text} ({ts} ms, {age} ms before verification)"
            )?;
        }
        writeln!(f, "nonce:       {} (ours, random)", self.nonce)?;
        if let Some(spki) = &self.tls_spki_sha256 {
            writeln!(f, "tls key:     sha256(SPKI) {spki}")?;
        }
        if let Some(subject) = &self.tls_certificate_subject {
            writeln!(f, "tls cert:    {subject}")?;
        }
        if let Some(key) = &self.anchor_key {
            writeln!(
                f,
                "anchor key:  {key} (Ed25519, in user_data; signs registry anchors)"
            )?;
        }
        if !self.pcrs.is_empty() {
            writeln!(f, "PCRs:")?;
            for row in &self.pcrs {
                let actual = row.actual.as_deref().unwrap_or("(absent)");
                let mark = if row.ok { "ok  " } else { "FAIL" };
                match (&row.expected, &row.source) {
                    (Some(expected), Some(source)) => {
                        writeln!(f, "  [{mark}] PCR{:<2} actual   {actual}", row.index)?;
                        writeln!(f, "                expected {expected} ({source})")?;
                    }
                    _ => writeln!(f, "  [    ] PCR{:<2} actual   {actual}", row.index)?,
                }
            }
        }
        if !self.chain.is_empty() {
            writeln!(f, "chain (root first):")?;
            for subject in &self.chain {
                writeln!(f, "  {subject}")?;
            }
        }
        if !self.checks.is_empty() {
            writeln!(f, "checks:")?;
            for c in &self.checks {
                let mark = if c.ok { "ok  " } else { "FAIL" };
                writeln!(f, "  [{mark}] {}: {}", c.name, c.detail)?;
            }
        }
        Ok(())
    }
}
