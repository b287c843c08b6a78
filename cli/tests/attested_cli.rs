//! `daas verify` and `daas kubeconfig` against a real `daas-enclave --dev`:
//! accepted with the dev root; refused (non-zero, reason printed) under the
//! AWS root, with a wrong expected PCR, with a registry that does not allow
//! the image, and through a man in the middle that terminates TLS with its
//! own key and forwards everything to the real enclave. The kubeconfig works
//! with the real kubectl.
#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

mod common;

use std::net::SocketAddr;
use std::sync::Arc;

use chain::{Address, ClusterSettings, FileRegistry, Pcrs, Registry, RegistryAdmin};
use common::{Enclave, bin, daas, kubectl, text};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};

fn verify(enclave: &Enclave, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["verify", "--server", &enclave.url];
    args.extend_from_slice(extra);
    daas(&args)
}

fn dev_root(enclave: &Enclave) -> String {
    enclave.arg("attestation/dev-root.crt")
}

fn enclave_pcrs() -> Pcrs {
    let [pcr0, pcr1, pcr2] = attestation::measure_binary_file(&bin("daas-enclave")).unwrap();
    Pcrs { pcr0, pcr1, pcr2 }
}

#[test]
fn verify_accepts_the_dev_enclave_under_the_dev_root() {
    let enclave = Enclave::start();
    let root = dev_root(&enclave);
    let pcrs = enclave_pcrs();
    let pcr0 = format!("0={}", pcrs.pcr0);
    let out = verify(&enclave, &["--dev-root", &root, "--expect-pcr", &pcr0]);
    let shown = text(&out);
    assert!(out.status.success(), "{shown}");
    assert!(shown.contains(": VERIFIED"), "{shown}");
    assert!(shown.contains("[ok  ] TLS binding"), "{shown}");
    assert!(shown.contains("[ok  ] expected PCRs"), "{shown}");
    assert!(shown.contains(&pcrs.pcr0.to_string()), "{shown}");
    assert!(shown.contains("CN=k3s-daas.dev-root"), "{shown}");

    let out = verify(&enclave, &["--dev-root", &root, "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["valid"], true);
    assert_eq!(report["root"], "dev");
    assert_eq!(report["pcrs"][2]["actual"], pcrs.pcr2.to_string());
    assert_eq!(report["chain"].as_array().unwrap().len(), 5);
    assert_eq!(report["nonce"].as_str().unwrap().len(), 64);
}

#[test]
fn verify_refuses_the_dev_root_under_the_production_policy() {
    let enclave = Enclave::start();
    let out = verify(&enclave, &[]);
    let shown = text(&out);
    assert!(!out.status.success(), "{shown}");
    assert!(shown.contains("REJECTED"), "{shown}");
    assert!(shown.contains("not the trusted root"), "{shown}");
    assert!(shown.contains("needs --dev-root"), "{shown}");

    let out = verify(&enclave, &["--json"]);
    assert!(!out.status.success());
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["valid"], false);
    assert_eq!(report["root"], "aws");
}

#[test]
fn verify_refuses_a_wrong_expected_pcr() {
    let enclave = Enclave::start();
    let root = dev_root(&enclave);
    let wrong = format!("2={}", "ab".repeat(48));
    let out = verify(&enclave, &["--dev-root", &root, "--expect-pcr", &wrong]);
    let shown = text(&out);
    assert!(!out.status.success(), "{shown}");
    assert!(shown.contains("REJECTED: expected PCRs"), "{shown}");
    assert!(shown.contains("[FAIL] PCR2"), "{shown}");
    assert!(shown.contains(&"ab".repeat(48)), "{shown}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_checks_the_registry_allowed_images_and_live_enclave() {
    let enclave = tokio::task::spawn_blocking(Enclave::start).await.unwrap();
    let root = dev_root(&enclave);
    let dir = tempfile::tempdir().unwrap();
    let admin: Address = "0xad".parse().unwrap();
    let settings = ClusterSettings {
        min_stake: 1,
        unstake_cooldown_ms: 0,
        max_document_age_ms: 300_000,
    };
    let path = dir.path().join("registry.json");
    let verifier =
        attestation::Verifier::dangerous_trust_root_pem(&std::fs::read(&root).unwrap()).unwrap();
    let registry = FileRegistry::init(&path, "dev", settings, admin, verifier).unwrap();
    let other = Pcrs {
        pcr0: attestation::Pcr::measure(b"another image"),
        ..enclave_pcrs()
    };
    registry.allow_image(other, "other", 1).await.unwrap();
    let registry_arg = format!("local:{}", path.display());
    let doc_path = dir.path().join("doc.cbor");
    let run = |extra: Vec<String>| {
        let mut args = vec![
            "verify".to_owned(),
            "--server".to_owned(),
            enclave.url.clone(),
            "--dev-root".to_owned(),
            root.clone(),
            "--save-document".to_owned(),
            doc_path.display().to_string(),
        ];
        args.extend(extra);
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        daas(&refs)
    };
    let out = run(vec!["--registry".into(), registry_arg.clone()]);
    let shown = text(&out);
    assert!(!out.status.success(), "{shown}");
    assert!(shown.contains("REJECTED: registry"), "{shown}");
    assert!(shown.contains("none of the 1 allowed images"), "{shown}");

    registry
        .allow_image(enclave_pcrs(), "daas-enclave dev", 2)
        .await
        .unwrap();
    // The image is allowed, but this enclave is not the one the registry records live.
    let out = run(vec!["--registry".into(), registry_arg.clone()]);
    let shown = text(&out);
    assert!(!out.status.success(), "{shown}");
    assert!(
        shown.contains("REJECTED: live enclave: no enclave is live on the registry"),
        "{shown}"
    );

    // Registered with a document it served (the verification above saved none, so fetch one).
    let out = verify(
        &enclave,
        &[
            "--dev-root",
            &root,
            "--save-document",
            &doc_path.display().to_string(),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    registry
        .register_enclave(&std::fs::read(&doc_path).unwrap())
        .await
        .unwrap();
    // A plain path means a local registry too.
    let out = run(vec!["--registry".into(), path.display().to_string()]);
    let shown = text(&out);
    assert!(out.status.success(), "{shown}");
    assert!(
        shown.contains("registry image \"daas-enclave dev\" v2"),
        "{shown}"
    );
    assert!(shown.contains("[ok  ] live enclave"), "{shown}");
}

/// A TLS-terminating proxy with its own key: clients talk TLS to it, it
/// talks TLS to the real enclave and copies bytes both ways, so
/// `/attestation` answers come from the real enclave, nonce and all.
async fn man_in_the_middle(upstream: SocketAddr, enclave_ca: CertificateDer<'static>) -> String {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let own = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(own.signing_key.serialize_der()));
    let server = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![own.cert.der().clone()], key)
        .unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(enclave_ca).unwrap();
    let mut client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    client.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            let connector = connector.clone();
            tokio::spawn(async move {
                let Ok(mut downstream) = acceptor.accept(tcp).await else {
                    return;
                };
                let up = tokio::net::TcpStream::connect(upstream).await.unwrap();
                let name = ServerName::try_from("127.0.0.1").unwrap();
                let mut upstream = connector.connect(name, up).await.unwrap();
                let _ = tokio::io::copy_bidirectional(&mut downstream, &mut upstream).await;
            });
        }
    });
    url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_refuses_a_man_in_the_middle() {
    let enclave = tokio::task::spawn_blocking(Enclave::start).await.unwrap();
    let upstream: SocketAddr = enclave.url.trim_start_matches("https://").parse().unwrap();
    let ca = CertificateDer::from_pem_file(enclave.path("pki/server.crt")).unwrap();
    let mitm = man_in_the_middle(upstream, ca).await;
    let root = dev_root(&enclave);
    let out = tokio::task::spawn_blocking(move || {
        daas(&["verify", "--server", &mitm, "--dev-root", &root])
    })
    .await
    .unwrap();
    let shown = text(&out);
    assert!(!out.status.success(), "{shown}");
    // Everything about the document is genuine; only the binding fails.
    assert!(shown.contains("[ok  ] nonce"), "{shown}");
    assert!(shown.contains("REJECTED: TLS binding"), "{shown}");
    assert!(
        shown.contains("not bound by the attestation document"),
        "{shown}"
    );
}

#[test]
fn kubeconfig_pins_the_attested_certificate_for_kubectl() {
    let enclave = Enclave::start();
    let root = dev_root(&enclave);
    let out_dir = tempfile::tempdir().unwrap();
    let with_cert = out_dir.path().join("cert.kubeconfig");
    let out = daas(&[
        "kubeconfig",
        "--server",
        &enclave.url,
        "--dev-root",
        &root,
        "--out",
        with_cert.to_str().unwrap(),
        "--client-cert",
        &enclave.arg("pki/admin.crt"),
        "--client-key",
        &enclave.arg("pki/admin.key"),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let got = kubectl(&with_cert, &["get", "ns", "-o", "name"]);
    assert!(got.status.success(), "{}", text(&got));
    assert!(String::from_utf8_lossy(&got.stdout).contains("namespace/kube-system"));

    // The pinned CA is the served leaf itself, not the issuing dev CA.
    let yaml = std::fs::read_to_string(&with_cert).unwrap();
    let served = std::fs::read_to_string(enclave.path("pki/server.crt")).unwrap();
    let pinned = yaml
        .lines()
        .find_map(|l| l.trim().strip_prefix("certificate-authority-data: "))
        .unwrap();
    use base64::Engine as _;
    let pinned = base64::engine::general_purpose::STANDARD
        .decode(pinned)
        .unwrap();
    let served_der = CertificateDer::from_pem_slice(served.as_bytes()).unwrap();
    let pinned_der = CertificateDer::from_pem_slice(&pinned).unwrap();
    assert_eq!(served_der, pinned_der);

    let token = std::fs::read_to_string(enclave.path("pki/admin.token")).unwrap();
    let with_token = out_dir.path().join("token.kubeconfig");
    let out = daas(&[
        "kubeconfig",
        "--server",
        &enclave.url,
        "--dev-root",
        &root,
        "--out",
        with_token.to_str().unwrap(),
        "--token",
        token.trim(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let got = kubectl(
        &with_token,
        &["create", "configmap", "pinned", "--from-literal=a=b"],
    );
    assert!(got.status.success(), "{}", text(&got));

    // Nothing is written for a server that does not verify.
    let refused = out_dir.path().join("refused.kubeconfig");
    let out = daas(&[
        "kubeconfig",
        "--server",
        &enclave.url,
        "--out",
        refused.to_str().unwrap(),
        "--token",
        token.trim(),
    ]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("no kubeconfig written"));
    assert!(!refused.exists());
}

/// The document `daas verify --save-document` keeps is what the registry's
/// `register_enclave` takes: it binds the TLS key digest in `public_key` and
/// the enclave's Ed25519 anchor key in `user_data`, and registers under the
/// registry's rules (here with the dev root trusted explicitly).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verified_document_registers_the_enclave() {
    let enclave = tokio::task::spawn_blocking(Enclave::start).await.unwrap();
    let root = dev_root(&enclave);
    let dir = tempfile::tempdir().unwrap();
    let doc_path = dir.path().join("doc.cbor");
    let doc_arg = doc_path.display().to_string();
    let out = verify(
        &enclave,
        &["--dev-root", &root, "--save-document", &doc_arg, "--json"],
    );
    assert!(out.status.success(), "{}", text(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let anchor_key = report["anchor_key"].as_str().unwrap().to_owned();
    let tls_key = report["tls_spki_sha256"].as_str().unwrap().to_owned();

    let settings = ClusterSettings {
        min_stake: 1,
        unstake_cooldown_ms: 0,
        max_document_age_ms: 300_000,
    };
    let verifier =
        attestation::Verifier::dangerous_trust_root_pem(&std::fs::read(&root).unwrap()).unwrap();
    let admin: Address = "0xad".parse().unwrap();
    let registry = FileRegistry::init(
        dir.path().join("registry.json"),
        "dev",
        settings,
        admin,
        verifier,
    )
    .unwrap();
    registry
        .allow_image(enclave_pcrs(), "daas-enclave dev", 1)
        .await
        .unwrap();
    let document = std::fs::read(&doc_path).unwrap();
    let live = registry.register_enclave(&document).await.unwrap();
    assert_eq!(hex::encode(live.anchor_key), anchor_key);
    assert_eq!(hex::encode(live.tls_key_digest), tls_key);
    assert_eq!(live.pcrs, enclave_pcrs());
}
