//! `daas attestation ...`: verify Nitro attestation documents.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use attestation::{Pcr, Policy, VerifiedDocument, Verifier};
use clap::{Args, Subcommand};

/// Attestation subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum AttestationCommand {
    /// Verify an attestation document (raw CBOR, as the NSM emits it) against
    /// the AWS Nitro root and a policy. Exits 0 and prints the decoded fields
    /// when valid; exits non-zero with the reason otherwise.
    Verify(VerifyArgs),
    /// Issue a document from the dev NSM simulator (PCR0..2 measure this
    /// `daas` binary) under a fresh dev root, for trying `verify --root`.
    Simulate(SimulateArgs),
}

/// Arguments of `daas attestation simulate`.
#[derive(Debug, Args)]
pub(crate) struct SimulateArgs {
    /// Where to write the document (raw CBOR).
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// Where to write the dev root certificate (PEM) to pass as --root.
    #[arg(long, value_name = "PEM")]
    root_out: PathBuf,
    /// Nonce to include, hex.
    #[arg(long, value_name = "HEX", value_parser = parse_hex)]
    nonce: Option<HexBytes>,
}

/// Arguments of `daas attestation verify`.
#[derive(Debug, Args)]
pub(crate) struct VerifyArgs {
    /// The document: an untagged COSE_Sign1, raw CBOR bytes.
    #[arg(long, value_name = "FILE")]
    document: PathBuf,
    /// Verification time in ms since the UNIX epoch. Use the current time to
    /// authenticate a live enclave; a document's own timestamp only to
    /// re-check a stored document.
    #[arg(long, value_name = "MILLIS")]
    at_ms: u64,
    /// Trust this root certificate (PEM) instead of the pinned AWS Nitro
    /// Root-G1, e.g. the dev simulator's root.
    #[arg(long, value_name = "PEM")]
    root: Option<PathBuf>,
    /// Require PCR N to equal HEX (96 hex digits); repeatable.
    #[arg(long = "expect-pcr", value_name = "N=HEX", value_parser = parse_expected_pcr)]
    expect_pcr: Vec<(u8, Pcr)>,
    /// Require the document's nonce to equal HEX.
    #[arg(long, value_name = "HEX", value_parser = parse_hex)]
    nonce: Option<HexBytes>,
    /// Reject documents older than this many seconds at --at-ms.
    #[arg(long, value_name = "SECONDS")]
    max_age_secs: Option<u64>,
    /// Accept documents from debug-mode enclaves (PCR0..2 all zero).
    #[arg(long)]
    allow_debug: bool,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

pub(crate) fn parse_expected_pcr(s: &str) -> Result<(u8, Pcr), String> {
    let (index, value) = s
        .split_once('=')
        .ok_or_else(|| format!("expected N=HEX, got {s:?}"))?;
    let index: u8 = index
        .trim()
        .parse()
        .map_err(|e| format!("PCR index {index:?}: {e}"))?;
    if usize::from(index) >= attestation::PcrSet::MAX_PCRS {
        return Err(format!("PCR index {index} is out of range 0..32"));
    }
    let pcr = Pcr::from_hex(value.trim())
        .map_err(|e| format!("PCR{index} value must be 96 hex digits (48 bytes): {e}"))?;
    Ok((index, pcr))
}

/// Bytes given as hex on the command line (a newtype, so clap does not
/// read `Vec<u8>` as a list of numbers).
#[derive(Debug, Clone)]
pub(crate) struct HexBytes(Vec<u8>);

fn parse_hex(s: &str) -> Result<HexBytes, String> {
    hex::decode(s)
        .map(HexBytes)
        .map_err(|e| format!("not hex: {e}"))
}

pub(crate) fn run(cmd: AttestationCommand) -> anyhow::Result<()> {
    match cmd {
        AttestationCommand::Verify(args) => verify(&args),
        AttestationCommand::Simulate(args) => simulate(&args),
    }
}

fn simulate(args: &SimulateArgs) -> anyhow::Result<()> {
    let nsm = attestation::SimNsm::new(attestation::DevRoot::generate()?)?;
    let mut request = attestation::AttestationRequest::new();
    if let Some(nonce) = &args.nonce {
        request = request.nonce(nonce.0.clone());
    }
    let now = std::time::SystemTime::now();
    let doc = nsm.document_at(request, now)?;
    std::fs::write(&args.out, &doc).with_context(|| format!("writing {}", args.out.display()))?;
    let (cert_pem, _key_pem) = nsm.root().to_pem();
    std::fs::write(&args.root_out, cert_pem)
        .with_context(|| format!("writing {}", args.root_out.display()))?;
    let at_ms = now.duration_since(std::time::UNIX_EPOCH)?.as_millis();
    println!("document:  {} ({} bytes)", args.out.display(), doc.len());
    println!(
        "dev root:  {} (sha256 {})",
        args.root_out.display(),
        hex::encode(nsm.root().sha256())
    );
    println!("timestamp: {at_ms} ms");
    Ok(())
}

fn verify(args: &VerifyArgs) -> anyhow::Result<()> {
    let bytes = std::fs::read(&args.document)
        .with_context(|| format!("reading {}", args.document.display()))?;
    let verifier = match &args.root {
        None => Verifier::aws_nitro(),
        Some(path) => {
            let pem = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
            Verifier::dangerous_trust_root_pem(&pem)
                .with_context(|| format!("root certificate {}", path.display()))?
        }
    };
    let mut policy = Policy::new();
    for (index, value) in &args.expect_pcr {
        policy = policy.expect_pcr(*index, *value);
    }
    if let Some(nonce) = &args.nonce {
        policy = policy.require_nonce(nonce.0.clone());
    }
    if let Some(secs) = args.max_age_secs {
        policy = policy.max_age(Duration::from_secs(secs));
    }
    if args.allow_debug {
        policy = policy.dangerous_allow_debug();
    }
    match verifier.verify_with_policy(&bytes, args.at_ms, &policy) {
        Ok(doc) => {
            if args.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&to_json(&verifier, &doc))?
                );
            } else {
                print_report(&verifier, &doc, args.at_ms);
            }
            Ok(())
        }
        Err(err) => {
            if args.json {
                let out = serde_json::json!({ "valid": false, "error": err.to_string() });
                println!("{}", serde_json::to_string_pretty(&out)?);
            }
            Err(anyhow::Error::new(err).context(format!(
                "attestation document {} rejected",
                args.document.display()
            )))
        }
    }
}

fn opt_hex(bytes: Option<&[u8]>) -> serde_json::Value {
    bytes.map_or(serde_json::Value::Null, |b| hex::encode(b).into())
}

fn to_json(verifier: &Verifier, doc: &VerifiedDocument) -> serde_json::Value {
    let pcrs: serde_json::Map<String, serde_json::Value> = doc
        .pcrs()
        .iter()
        .map(|(i, p)| (i.to_string(), p.to_string().into()))
        .collect();
    serde_json::json!({
        "valid": true,
        "root_sha256": hex::encode(verifier.root_sha256()),
        "aws_root": verifier.is_aws_nitro(),
        "module_id": doc.module_id(),
        "timestamp_ms": doc.timestamp_ms(),
        "debug_mode": doc.is_debug_mode(),
        "pcrs": pcrs,
        "public_key": opt_hex(doc.public_key()),
        "user_data": opt_hex(doc.user_data()),
        "nonce": opt_hex(doc.nonce()),
        "chain": doc.chain_subjects(),
    })
}

fn print_report(verifier: &Verifier, doc: &VerifiedDocument, at_ms: u64) {
    let root = if verifier.is_aws_nitro() {
        "AWS Nitro Enclaves Root-G1"
    } else {
        "NON-AWS root given with --root"
    };
    println!("attestation document: VALID at {at_ms} ms");
    println!(
        "root:        {root} (sha256 {})",
        hex::encode(verifier.root_sha256())
    );
    println!("module_id:   {}", doc.module_id());
    println!("timestamp:   {} ms", doc.timestamp_ms());
    println!(
        "debug mode:  {}",
        if doc.is_debug_mode() {
            "YES (PCR0..2 are zero: measurements prove nothing)"
        } else {
            "no"
        }
    );
    for (i, pcr) in doc.pcrs().iter() {
        println!("PCR{i:<2}       {pcr}");
    }
    let show = |b: Option<&[u8]>| b.map_or_else(|| "(absent)".to_owned(), hex::encode);
    println!("public_key:  {}", show(doc.public_key()));
    println!("user_data:   {}", show(doc.user_data()));
    println!("nonce:       {}", show(doc.nonce()));
    println!("chain (root first):");
    for subject in doc.chain_subjects() {
        println!("  {subject}");
    }
}
