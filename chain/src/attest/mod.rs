//! Attested first contact, the checks: a document a server answered `GET
//! /attestation?nonce=<ours>` with, over a TLS connection that presented `peer_leaf`, is
//! checked against a [`TrustPolicy`] (pinned root, our nonce, freshness, production mode,
//! expected PCRs) and the registry's [`ClusterState`] (the PCRs are an allowed image and the
//! enclave is the live one: its TLS key digest and anchor key), and the connection's key must
//! be the attested one. `daas verify`, `daas kubeconfig`, `daas dev` and `daas-worker` all run
//! exactly these checks; the result is an [`EnclaveReport`] that names each check and the
//! first that failed.

mod report;

pub use report::{Check, EnclaveReport, PcrRow, RootKind, TrustPolicy};

use std::time::Duration;

use attestation::{Pcr, Policy, VerifiedDocument};

use crate::types::{AllowedImage, ClusterState, Pcrs};

/// How far ahead of ours the server's clock may run.
pub const MAX_SERVER_CLOCK_SKEW: Duration = Duration::from_secs(30);

fn subject(cert_der: &[u8]) -> Option<String> {
    use x509_cert::der::Decode as _;
    x509_cert::Certificate::from_der(cert_der)
        .ok()
        .map(|c| c.tbs_certificate.subject.to_string())
}

fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Checks `document`, served over a connection that presented `peer_leaf` (DER), against
/// `policy`, our `nonce`, and, when given, the registry's `cluster` state, at `now_ms`. The
/// report is [`EnclaveReport::valid`] only when every check passed.
#[must_use]
pub fn check_enclave(
    server: &str,
    policy: &TrustPolicy,
    nonce: &[u8],
    document: &[u8],
    peer_leaf: &[u8],
    cluster: Option<&ClusterState>,
    now_ms: u64,
) -> EnclaveReport {
    let mut report = EnclaveReport::new(server, policy, nonce, now_ms);
    report.tls_spki_sha256 = attestation::spki_sha256(peer_leaf).ok().map(hex::encode);
    report.tls_certificate_subject = subject(peer_leaf);

    // Signature and certificate chain up to the pinned root, valid now.
    let doc = match policy.verifier.verify(document, now_ms) {
        Ok(doc) => doc,
        Err(e) => {
            let hint = match (&e, policy.root) {
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
            return report;
        }
    };
    report.check(
        "document signed under the pinned root",
        Ok(format!(
            "ES384 signature by the leaf of a {}-certificate chain from {}",
            doc.chain_subjects().len(),
            policy.root.describe()
        )),
    );
    report.fill_document(&doc);

    // Each policy below checks one rule, so the report names the one that failed; debug mode
    // is rejected by its own check ("production mode").
    let policy_result = |p: Policy, at: u64| p.check(&doc, at).map_err(|e| e.to_string());
    report.check(
        "nonce",
        policy_result(
            Policy::new()
                .dangerous_allow_debug()
                .require_nonce(nonce.to_vec()),
            now_ms,
        )
        .map(|()| "the document carries our fresh nonce".to_owned()),
    );
    // The nonce already proves the document is new; the age check guards against a server
    // clock that is off, allowing it to run a little ahead.
    report.check(
        "freshness",
        policy_result(
            Policy::new()
                .dangerous_allow_debug()
                .max_age(policy.max_age + MAX_SERVER_CLOCK_SKEW),
            now_ms.saturating_add(duration_ms(MAX_SERVER_CLOCK_SKEW)),
        )
        .map(|()| {
            format!(
                "{} ms old, at most {} s",
                now_ms.saturating_sub(doc.timestamp_ms()),
                policy.max_age.as_secs()
            )
        }),
    );
    report.check(
        "production mode",
        policy_result(Policy::new(), now_ms)
            .map(|()| "PCR0..2 are not zero (not a debug-mode enclave)".to_owned()),
    );
    check_pcrs(
        &mut report,
        &doc,
        &policy.expected_pcrs,
        cluster.map(|c| c.images.as_slice()),
    );
    if let Some(cluster) = cluster {
        report.check("live enclave", live_enclave(&doc, cluster));
    }
    let connection_key = report.tls_spki_sha256.clone().unwrap_or_default();
    report.check(
        "TLS binding",
        attestation::check_tls_binding(peer_leaf, &doc)
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
    report
}

/// The document's enclave is the one the registry records live: same TLS key digest (the
/// document's `public_key`) and anchor key (`user_data`), and its image is still allowed.
fn live_enclave(doc: &VerifiedDocument, cluster: &ClusterState) -> Result<String, String> {
    let live = cluster
        .live_enclave
        .as_ref()
        .ok_or("no enclave is live on the registry (it must register first)")?;
    let bound = doc.public_key().map(hex::encode).unwrap_or_default();
    if doc.public_key() != Some(live.tls_key_digest.as_slice()) {
        return Err(format!(
            "this enclave is not the live one: the registry's live enclave has TLS key {}, this \
             document binds {}",
            hex::encode(live.tls_key_digest),
            if bound.is_empty() { "none" } else { &bound }
        ));
    }
    if doc.user_data() != Some(live.anchor_key.as_slice()) {
        return Err(format!(
            "this enclave is not the live one: the registry's live enclave has anchor key {}, \
             this document carries {}",
            hex::encode(live.anchor_key),
            doc.user_data()
                .map(hex::encode)
                .unwrap_or_else(|| "none".into())
        ));
    }
    if !cluster.is_image_allowed(live.image_version) {
        return Err(format!(
            "the live enclave's image v{} has been retired",
            live.image_version
        ));
    }
    Ok(format!(
        "TLS key and anchor key are the live enclave's (image v{}, registered at {} ms)",
        live.image_version, live.registered_at_ms
    ))
}

fn check_pcrs(
    report: &mut EnclaveReport,
    doc: &VerifiedDocument,
    expected: &[(u8, Pcr)],
    images: Option<&[AllowedImage]>,
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
            .fold(Policy::new().dangerous_allow_debug(), |p, (i, v)| {
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
