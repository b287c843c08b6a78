//! Every way a join is refused, against the real `daas-enclave --dev` and the real
//! `daas-worker run`: the worker stops with the failed check named, creates no Node, and when the
//! enclave was not verified sends the server nothing but the attestation request.
#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

mod common;

use std::path::Path;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use attestation::{AttestationRequest, DevRoot, Pcr, SimNsm};
use chain::{Registry, RegistryAdmin};
use common::fake::{Answer, FakeServer};
use common::{Cluster, block_on, enclave_pcrs, text};
use protocol::join::{
    CHALLENGE_PATH, ChallengeResponse, JOIN_PATH, JoinRequest, JoinStatement, NodeCredentials,
};
use rcgen::PublicKeyData as _;

/// One enclave for every refusal (each test uses its own node names).
fn cluster() -> &'static Cluster {
    static CLUSTER: OnceLock<Cluster> = OnceLock::new();
    CLUSTER.get_or_init(|| Cluster::start_shared("join_refused", &[]))
}

/// Runs `daas-worker run` for `node` as `account` against `server` with `registry`; asserts it
/// stopped with `expected` in its output and that no Node `node` exists.
fn refused(
    server: Option<&str>,
    registry: Option<&Path>,
    account: &str,
    node: &str,
    expected: &str,
) -> String {
    let c = cluster();
    let dir = c.path(&format!("worker-{node}"));
    let registry = match registry {
        Some(path) => format!("local:{}", path.display()),
        None => c.registry_url(),
    };
    let cmd = c.worker_at(
        "run",
        &c.account(account),
        node,
        &dir,
        server.unwrap_or(&c.url),
        &registry,
    );
    let out = c.run_until_exit(cmd);
    let shown = text(&out);
    assert!(!out.status.success(), "the join was not refused:\n{shown}");
    assert!(
        shown.contains(expected),
        "expected {expected:?} in:\n{shown}"
    );
    assert!(
        !c.nodes().contains(&node.to_owned()),
        "a Node {node} exists"
    );
    shown
}

/// The dev NSM of the cluster's enclave (its root), reporting `pcrs`.
fn dev_nsm(pcrs: [Pcr; 3]) -> SimNsm {
    let c = cluster();
    let cert = std::fs::read_to_string(c.dev_root()).unwrap();
    let key = std::fs::read_to_string(c.enclave_dir().join("attestation/dev-root.key")).unwrap();
    let [pcr0, pcr1, pcr2] = pcrs;
    SimNsm::with_image_pcrs(DevRoot::from_pem(&cert, &key).unwrap(), pcr0, pcr1, pcr2)
}

fn real_pcrs() -> [Pcr; 3] {
    let p = enclave_pcrs();
    [p.pcr0, p.pcr1, p.pcr2]
}

/// The live enclave's anchor key (documents that should pass the live check carry it).
fn anchor_key() -> [u8; 32] {
    let c = cluster();
    c.state(&c.registry_path()).live_enclave.unwrap().anchor_key
}

/// A fake server answering with documents of `nsm` stamped `age` ago, carrying `nonce` (the
/// worker's when `None`), binding the fake server's key.
fn fake(nsm: SimNsm, age: Duration, nonce: Option<Vec<u8>>) -> FakeServer {
    let anchor = anchor_key();
    FakeServer::start(Answer::Made(Box::new(move |theirs, key| {
        let request = AttestationRequest::new()
            .public_key(key.to_vec())
            .user_data(anchor.to_vec())
            .nonce(nonce.clone().unwrap_or_else(|| theirs.to_vec()));
        nsm.document_at(request, SystemTime::now() - age).unwrap()
    })))
}

fn assert_sent_nothing(server: &FakeServer) {
    assert_eq!(
        server.others(),
        Vec::<String>::new(),
        "the worker sent more"
    );
}

#[test]
fn refused_when_the_enclave_is_not_live_on_the_registry() {
    let c = cluster();
    // A registry that allows the image but records no live enclave.
    let none_live = c.path("none-live.json");
    c.create_registry(&none_live);
    block_on(c.registry_as(&none_live, &c.admin_keystore()).allow_image(
        enclave_pcrs(),
        "daas-enclave",
        1,
    ))
    .unwrap();
    let account = "not-live";
    c.stake(&c.account(account), "not-live-1");
    refused(
        None,
        Some(&none_live),
        account,
        "not-live-1",
        "REJECTED: live enclave: no enclave is live on the registry",
    );

    // Another enclave of the same image is live there (another TLS key and anchor key).
    let nsm = dev_nsm(real_pcrs());
    let other = nsm
        .document_at(
            AttestationRequest::new()
                .public_key(vec![7; 32])
                .user_data(vec![8; 32])
                .nonce(vec![1]),
            SystemTime::now(),
        )
        .unwrap();
    block_on(
        c.registry_as(&none_live, &c.admin_keystore())
            .register_enclave(&other),
    )
    .unwrap();
    refused(
        None,
        Some(&none_live),
        account,
        "not-live-1",
        "REJECTED: live enclave: this enclave is not the live one",
    );
}

#[test]
fn refused_when_the_pcrs_are_not_allowed() {
    let c = cluster();
    let other_image = c.path("other-image.json");
    c.create_registry(&other_image);
    let pcrs = chain::Pcrs {
        pcr0: Pcr::measure(b"another image"),
        ..enclave_pcrs()
    };
    block_on(
        c.registry_as(&other_image, &c.admin_keystore())
            .allow_image(pcrs, "other", 1),
    )
    .unwrap();
    c.stake(&c.account("pcrs"), "pcrs-1");
    refused(
        None,
        Some(&other_image),
        "pcrs",
        "pcrs-1",
        "REJECTED: registry: PCR0..2 match none of the 1 allowed images",
    );
}

#[test]
fn refused_for_a_debug_mode_document() {
    let c = cluster();
    c.stake(&c.account("debug"), "debug-1");
    let server = fake(dev_nsm([Pcr::ZERO; 3]), Duration::ZERO, None);
    refused(
        Some(&server.url),
        None,
        "debug",
        "debug-1",
        "REJECTED: production mode",
    );
    assert_sent_nothing(&server);
}

#[test]
fn refused_for_a_stale_document() {
    let c = cluster();
    c.stake(&c.account("stale"), "stale-1");
    let server = fake(dev_nsm(real_pcrs()), Duration::from_secs(600), None);
    let shown = refused(
        Some(&server.url),
        None,
        "stale",
        "stale-1",
        "REJECTED: freshness",
    );
    assert!(shown.contains("ms old; at most"), "{shown}");
    assert_sent_nothing(&server);
}

#[test]
fn refused_for_a_replayed_document() {
    let c = cluster();
    c.stake(&c.account("replay"), "replay-1");
    // A genuine document the enclave served to someone else.
    let server = FakeServer::start(Answer::Fixed(c.document()));
    refused(
        Some(&server.url),
        None,
        "replay",
        "replay-1",
        "REJECTED: nonce",
    );
    assert_sent_nothing(&server);
}

#[test]
fn refused_for_the_wrong_nonce() {
    let c = cluster();
    c.stake(&c.account("nonce"), "nonce-1");
    let server = fake(dev_nsm(real_pcrs()), Duration::ZERO, Some(vec![0x42; 32]));
    refused(
        Some(&server.url),
        None,
        "nonce",
        "nonce-1",
        "REJECTED: nonce",
    );
    assert_sent_nothing(&server);
}

#[test]
fn refused_when_the_tls_key_is_not_bound() {
    let c = cluster();
    c.stake(&c.account("mitm"), "mitm-1");
    // A man in the middle with its own TLS key relays the real enclave's document.
    let server = FakeServer::start(Answer::Forward(c.server()));
    refused(
        Some(&server.url),
        None,
        "mitm",
        "mitm-1",
        "REJECTED: TLS binding",
    );
    assert_sent_nothing(&server);
}

#[test]
fn refused_without_a_stake() {
    refused(
        None,
        None,
        "no-stake",
        "no-stake-1",
        "no stake holds node name \"no-stake-1\"",
    );
}

#[test]
fn refused_for_a_stake_of_another_node_name() {
    let c = cluster();
    c.stake(&c.account("other-name"), "other-name-b");
    refused(
        None,
        None,
        "other-name",
        "other-name-a",
        "stakes node name other-name-b, not \"other-name-a\"",
    );
}

#[test]
fn refused_for_a_stake_of_another_owner() {
    let c = cluster();
    c.stake(&c.account("owner-a"), "owner-1");
    refused(
        None,
        None,
        "owner-b",
        "owner-1",
        "the stake for \"owner-1\" is owned by another account",
    );
}

#[test]
fn refused_while_unstaking() {
    let c = cluster();
    let account = c.account("unstaking");
    c.stake(&account, "unstaking-1");
    block_on(
        c.registry_as(&c.registry_path(), &account)
            .request_unstake("unstaking-1"),
    )
    .unwrap();
    refused(None, None, "unstaking", "unstaking-1", "is unstaking");
}

#[test]
fn refused_after_withdrawal() {
    let c = cluster();
    let account = c.account("withdrawn");
    c.stake(&account, "withdrawn-1");
    let registry = c.registry_as(&c.registry_path(), &account);
    block_on(registry.request_unstake("withdrawn-1")).unwrap();
    block_on(registry.withdraw("withdrawn-1")).unwrap();
    refused(
        None,
        None,
        "withdrawn",
        "withdrawn-1",
        "no stake holds node name \"withdrawn-1\"",
    );
}

#[test]
fn refused_when_slashed_below_the_minimum() {
    let c = cluster();
    c.stake(&c.account("slashed"), "slashed-1");
    block_on(
        c.registry_as(&c.registry_path(), &c.admin_keystore())
            .slash("slashed-1", 1),
    )
    .unwrap();
    refused(
        None,
        None,
        "slashed",
        "slashed-1",
        "below the cluster minimum of 1000 MIST (slashed)",
    );
}

#[test]
fn refused_when_a_live_node_holds_the_name() {
    let c = cluster();
    let account = c.account("held");
    c.stake(&account, "held-1");
    let first =
        common::RunningWorker::start(c.worker("run", &account, "held-1", &c.path("held-a")));
    assert!(first.first_line().starts_with("joined"));
    common::wait_until(Duration::from_secs(60), "held-1 Ready", || {
        c.ready("held-1")
    });
    // Another machine with the same account (another node key) cannot take the name.
    let mut cmd = c.worker("run", &account, "held-1", &c.path("held-b"));
    cmd.env("RUST_LOG", "warn");
    let out = c.run_until_exit(cmd);
    let shown = text(&out);
    assert!(!out.status.success(), "{shown}");
    assert!(
        shown.contains("is already held by a live node with another key"),
        "{shown}"
    );
    // The first keeps its name.
    assert!(c.ready("held-1"));
}

/// Attests the cluster's enclave, asks for a challenge and returns a signed request for
/// `node` (as `account`), with the connection it came over.
async fn signed_request(
    state: &chain::ClusterState,
    account: &Path,
    node: &str,
) -> (worker::client::Connection, JoinStatement, JoinRequest) {
    let c = cluster();
    let mut attested = worker::attest(&c.server(), &c.policy(), Some(state))
        .await
        .unwrap();
    let challenge: ChallengeResponse = attested
        .connection
        .post_json(CHALLENGE_PATH, &serde_json::json!({}))
        .await
        .unwrap();
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(&challenge.challenge, &mut bytes).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let statement = JoinStatement::new(
        state.id.0,
        attested.tls_key_sha256,
        bytes,
        node,
        key.subject_public_key_info(),
    );
    let keystore = chain::AccountKeystore::load(account).unwrap();
    let signature = keystore
        .account(None)
        .unwrap()
        .sign_personal_message(&statement.to_bcs());
    let request = JoinRequest::new(&statement, &signature);
    (attested.connection, statement, request)
}

fn refusal(result: Result<NodeCredentials, worker::client::ClientError>) -> String {
    match result {
        Ok(_) => panic!("the join was accepted"),
        Err(e) => {
            assert_eq!(e.status().map(|s| s.as_u16()), Some(403), "{e}");
            e.to_string()
        }
    }
}

#[test]
fn refused_for_a_forged_signature() {
    let c = cluster();
    let account = c.account("forged");
    c.stake(&account, "forged-1");
    let state = c.state(&c.registry_path());
    block_on(async {
        // A flipped bit in the signature.
        let (mut connection, _, mut request) = signed_request(&state, &account, "forged-1").await;
        let mut signature = request.signature_bytes().unwrap();
        signature[10] ^= 1;
        request.signature = base64_encode(&signature);
        let why = refusal(connection.post_json(JOIN_PATH, &request).await);
        assert!(why.contains("the join signature is refused"), "{why}");

        // A valid signature over another statement (the node name changed after signing).
        let (mut connection, _, mut request) = signed_request(&state, &account, "forged-1").await;
        request.node_name = "forged-2".into();
        let why = refusal(connection.post_json(JOIN_PATH, &request).await);
        assert!(why.contains("the join signature is refused"), "{why}");
    });
    assert!(!c.nodes().contains(&"forged-1".to_owned()));
}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[test]
fn refused_for_a_replayed_signature() {
    let c = cluster();
    let account = c.account("replayed");
    c.stake(&account, "replayed-1");
    let state = c.state(&c.registry_path());
    block_on(async {
        let (mut connection, _, request) = signed_request(&state, &account, "replayed-1").await;
        let credentials: NodeCredentials = connection.post_json(JOIN_PATH, &request).await.unwrap();
        assert_eq!(credentials.node_name, "replayed-1");
        // The same signed request again, on the same or a new connection.
        let why = refusal(connection.post_json(JOIN_PATH, &request).await);
        assert!(
            why.contains("the challenge is unknown, expired or already used"),
            "{why}"
        );
        let (mut other, _, _) = signed_request(&state, &account, "replayed-1").await;
        let why = refusal(other.post_json(JOIN_PATH, &request).await);
        assert!(
            why.contains("the challenge is unknown, expired or already used"),
            "{why}"
        );
    });
    assert!(!c.nodes().contains(&"replayed-1".to_owned()));
}
