//! Opening the cluster with its root secret: the journal, the store, and the rollback check
//! against the registry's latest anchor.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use attestation::{Mode, Purpose, PurposeKey, RootSecret};
use chain::{AnyRegistry, OpenOptions};
use enclave::api::sealed::UnsealRefused;
use enclave::auth::keys::ClusterKeys;
use enclave::boot::anchor::{self, AnchorRecorder, JournalVerdict, Unreachable};
use enclave::registry::{ObjectStore, generic::WriteOptions};
use enclave::store::journal::{JournalEndpoint, RemoteJournal, RemoteJournalOptions};
use enclave::store::{
    FileJournal, Journal, RootSecretKeys, Store, StoreOptions, journal_opens_with,
};
use ring::rand::{SecureRandom, SystemRandom};

use crate::args::{Args, Plan};

/// What opening the cluster gives.
pub(crate) struct Opened {
    pub(crate) store: Store,
    /// The anchor public key the root secret derives (bound in documents' `user_data`).
    pub(crate) anchor_key: [u8; 32],
    /// Records anchors while serving, when anchors are on.
    pub(crate) recorder: Option<AnchorRecorder>,
    /// The node CA's key, derived from the root secret (issues node certificates).
    pub(crate) node_ca: PurposeKey,
    /// The identity keys derived from the root secret (service-account tokens, client CA).
    pub(crate) identity: ClusterKeys,
}

impl std::fmt::Debug for Opened {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Opened")
            .field("anchor_key", &hex::encode(self.anchor_key))
            .finish_non_exhaustive()
    }
}

/// Why the cluster did not open, told apart for `daas unseal`.
#[derive(Debug)]
pub(crate) enum OpenError {
    /// The root secret does not open the sealed state.
    WrongKey(anyhow::Error),
    /// The registry cannot be read (and no degraded start was asked for).
    RegistryUnreachable(anyhow::Error),
    /// Anything else, the rollback refusals included.
    Other(anyhow::Error),
}

impl OpenError {
    pub(crate) fn into_anyhow(self) -> anyhow::Error {
        match self {
            OpenError::WrongKey(e) | OpenError::RegistryUnreachable(e) | OpenError::Other(e) => e,
        }
    }

    /// How `daas unseal` hears about it.
    pub(crate) fn refusal(&self) -> UnsealRefused {
        match self {
            OpenError::WrongKey(e) => UnsealRefused {
                code: 422,
                message: format!(
                    "this root secret does not open the cluster's sealed state ({e:#})"
                ),
            },
            OpenError::RegistryUnreachable(e) => UnsealRefused {
                code: 503,
                message: format!(
                    "the registry cannot be read, so the journal cannot be checked against its \
                     latest rollback anchor; try again once it can ({e:#})"
                ),
            },
            OpenError::Other(e) => UnsealRefused {
                code: 503,
                message: format!("opening the cluster failed: {e:#}"),
            },
        }
    }
}

/// When the registry cannot be read during opening.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WhileUnreachable {
    /// Retry until it can (nothing is served meanwhile).
    Wait,
    /// Fail this attempt (the operator may try again).
    Refuse,
}

/// The cluster's ID in the store's sealing: a 0600 file in dev mode; in production derived
/// from the root secret (the enclave's data directory is a tmpfs that every boot starts empty,
/// and the sealed journal must open again after a reboot).
fn cluster_id(dir: &Path, mode: Mode, root: &RootSecret) -> Result<[u8; 16]> {
    match mode {
        Mode::Dev => secret_file(&dir.join("cluster-id"), 16)?
            .try_into()
            .map_err(|_| anyhow::anyhow!("cluster id length")),
        Mode::Production => {
            let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
            ctx.update(b"k3s-daas/cluster-id/v1");
            ctx.update(&root.anchor_public_key(mode));
            let mut id = [0u8; 16];
            id.copy_from_slice(&ctx.finish().as_ref()[..16]);
            Ok(id)
        }
    }
}

/// Reads `path`, or creates it with `n` random bytes (mode 0600).
pub(crate) fn secret_file(path: &Path, n: usize) -> Result<Vec<u8>> {
    if path.exists() {
        let b = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        if b.len() != n {
            bail!("{} holds {} bytes, expected {n}", path.display(), b.len());
        }
        return Ok(b);
    }
    let mut b = vec![0u8; n];
    SystemRandom::new()
        .fill(&mut b)
        .map_err(|_| anyhow::anyhow!("no system randomness"))?;
    enclave::api::pki::write_private(path, &b)?;
    Ok(b)
}

/// Connects to the journal service, retrying until `timeout` (it may start after us).
async fn connect_journal(endpoint: &JournalEndpoint, timeout: Duration) -> Result<RemoteJournal> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut delay = Duration::from_millis(50);
    loop {
        let ep = endpoint.clone();
        let attempt = tokio::task::spawn_blocking(move || {
            RemoteJournal::connect(ep, RemoteJournalOptions::default())
        })
        .await
        .context("journal connect task")?;
        match attempt {
            Ok(j) => return Ok(j),
            // A transport this build cannot use will not appear by waiting.
            Err(enclave::store::JournalError::Connection { cause, .. })
                if cause.kind() == std::io::ErrorKind::Unsupported =>
            {
                bail!("journal service {endpoint}: {cause}");
            }
            Err(e) if tokio::time::Instant::now() + delay < deadline => {
                tracing::info!(%endpoint, error = %e, "journal service not reachable yet; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(1));
            }
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("connecting to the journal service {endpoint}"));
            }
        }
    }
}

async fn open_journal(args: &Args, plan: &Plan) -> Result<Box<dyn Journal>> {
    Ok(match &plan.journal {
        Some(endpoint) => {
            let timeout = Duration::from_secs(args.journal_connect_timeout);
            let j = connect_journal(endpoint, timeout).await?;
            tracing::info!(%endpoint, "journal kept by the host's journal service");
            Box::new(j)
        }
        None => Box::new(
            FileJournal::open(args.data_dir.join("journal")).context("opening the journal")?,
        ),
    })
}

/// Opens the sealed store with the keys of `root`, checks its journal against the
/// registry's latest anchor, and sets up anchoring.
pub(crate) async fn open_cluster(
    args: &Args,
    plan: &Plan,
    root: RootSecret,
    unreachable: WhileUnreachable,
) -> Result<Opened, OpenError> {
    let mode = plan.mode;
    let cluster = cluster_id(&args.data_dir, mode, &root).map_err(OpenError::Other)?;
    let anchor_key = root.anchor_public_key(mode);
    let signing_key = root.anchor_signing_key(mode);
    let node_ca = root.derive(Purpose::NodeCa, mode);
    let identity = ClusterKeys::derive(&root, mode)
        .context("deriving the identity keys")
        .map_err(OpenError::Other)?;
    // Kept for naming dev-sealed data if the production keys refuse the journal.
    let dev_keys =
        (mode == Mode::Production).then(|| RootSecretKeys::new(root.clone(), Mode::Dev, 1));
    let keys = RootSecretKeys::new(root, mode, 1);
    let journal = open_journal(args, plan).await.map_err(OpenError::Other)?;
    let resident_max_bytes = if args.watch_cache {
        args.watch_cache_max_mib.saturating_mul(1024 * 1024)
    } else {
        0
    };
    let options = StoreOptions::new(args.data_dir.join("index"), cluster)
        .with_observer(Arc::new(enclave::metrics::store::RegistryObserver))
        .with_resident_max_bytes(resident_max_bytes)
        .with_watch_buffer(args.watch_event_buffer.max(1))
        // The API objects; the audit log is read rarely and left to the index.
        .with_resident_prefix(b"/registry/".to_vec());
    // Restoring reads the whole journal (possibly over a socket): blocking work.
    let opened = tokio::task::spawn_blocking(move || Store::open(options, &keys, journal))
        .await
        .context("store open task")
        .map_err(OpenError::Other)?;
    let store = match opened {
        Ok(store) => store,
        Err(e) if e.is_unopenable_with_these_keys() => {
            if let Some(dev_keys) = dev_keys
                && sealed_in_dev_mode(args, plan, cluster, &dev_keys).await
            {
                return Err(OpenError::Other(anyhow::anyhow!(
                    "the journal was sealed by a dev-mode enclave (dev-labelled keys): a production \
                     enclave never opens dev-sealed data; start a new cluster, or keep this one in dev mode"
                )));
            }
            return Err(OpenError::WrongKey(
                anyhow::Error::new(e).context("opening the store"),
            ));
        }
        Err(e) => {
            return Err(OpenError::Other(
                anyhow::Error::new(e).context("opening the store"),
            ));
        }
    };
    let recorder = match &plan.registry {
        Some(url) if plan.anchors => {
            Some(check_anchor(args, url, &store, anchor_key, signing_key, unreachable).await?)
        }
        _ => None,
    };
    Ok(Opened {
        store,
        anchor_key,
        recorder,
        node_ca,
        identity,
    })
}

/// Whether the journal's newest item opens with the dev-labelled keys of the same secret.
async fn sealed_in_dev_mode(
    args: &Args,
    plan: &Plan,
    cluster: [u8; 16],
    dev_keys: &RootSecretKeys,
) -> bool {
    let Ok(mut journal) = open_journal(args, plan).await else {
        return false;
    };
    let keys = dev_keys.clone();
    tokio::task::spawn_blocking(move || {
        journal_opens_with(journal.as_mut(), cluster, &keys).unwrap_or(false)
    })
    .await
    .unwrap_or(false)
}

/// The rollback check: reads the registry's latest anchor (waiting or refusing while it
/// cannot be read, or starting degraded if asked) and compares it with the journal.
async fn check_anchor(
    args: &Args,
    url: &chain::RegistryUrl,
    store: &Store,
    anchor_key: [u8; 32],
    signing_key: ring::signature::Ed25519KeyPair,
    unreachable: WhileUnreachable,
) -> Result<AnchorRecorder, OpenError> {
    let registry = Arc::new(
        AnyRegistry::open(url, &OpenOptions::default())
            .await
            .with_context(|| format!("opening the registry {url}"))
            .map_err(OpenError::Other)?,
    );
    let policy = if args.degraded_start_without_registry {
        Unreachable::StartDegraded
    } else {
        Unreachable::Wait
    };
    let view = match unreachable {
        WhileUnreachable::Wait => {
            anchor::latest_anchor(&registry, policy, Duration::from_secs(5)).await
        }
        WhileUnreachable::Refuse if policy == Unreachable::StartDegraded => {
            anchor::latest_anchor(&registry, policy, Duration::ZERO).await
        }
        WhileUnreachable::Refuse => {
            use chain::Registry as _;
            let state = registry
                .cluster()
                .await
                .with_context(|| format!("registry {url} cannot be read"))
                .map_err(OpenError::RegistryUnreachable)?;
            Some(anchor::RegistryView {
                cluster: state.id,
                latest: state.latest_anchor,
            })
        }
    };
    let points = store.opened_points();
    let (cluster, anchored) = match view {
        Some(view) => {
            let verdict =
                anchor::check_journal(view.latest.as_ref(), &anchor_key, view.cluster, points)
                    .map_err(|e| OpenError::Other(e.into()))?;
            let end = points.last().map_or(0, |p| p.revision);
            match verdict {
                JournalVerdict::NoAnchor => {
                    tracing::info!(journal_end = end, "the registry holds no anchor yet");
                }
                JournalVerdict::Matches { anchored } => {
                    tracing::info!(
                        anchored,
                        journal_end = end,
                        "journal checked against the registry's latest anchor"
                    );
                }
                JournalVerdict::PastAnchorInSnapshot { anchored, snapshot } => {
                    tracing::info!(
                        anchored,
                        snapshot,
                        journal_end = end,
                        "journal is past the latest anchor (its revision is inside the sealed snapshot)"
                    );
                }
            }
            (Some(view.cluster), view.latest.map_or(0, |a| a.revision))
        }
        // Degraded: anchors still get recorded once the registry answers, for the cluster
        // it names then.
        None => (None, 0),
    };
    Ok(AnchorRecorder::new(
        registry,
        signing_key,
        cluster,
        store.clone(),
        anchored,
    ))
}

/// Creates the namespaces every cluster has.
pub(crate) async fn ensure_namespaces(objects: &ObjectStore) -> Result<()> {
    let info = objects
        .table()
        .lookup("", "v1", "namespaces")
        .context("namespaces missing from the resource table")?;
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        let body = serde_json::json!({"metadata": {"name": ns}});
        match objects
            .create(&info, None, body, &WriteOptions::default())
            .await
        {
            Ok(_) | Err(enclave::registry::Error::AlreadyExists { .. }) => {}
            Err(e) => return Err(e).context(format!("creating namespace {ns}")),
        }
    }
    Ok(())
}

/// Writes a sealed snapshot every `every` if the store has new revisions.
pub(crate) async fn snapshot_loop(store: Store, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    let mut last = store.revision();
    loop {
        tick.tick().await;
        let now = store.revision();
        if now == last {
            continue;
        }
        match store.write_snapshot().await {
            Ok(revision) => {
                tracing::info!(revision, "sealed snapshot written");
                last = revision;
            }
            Err(e) => tracing::warn!(error = %e, "writing a sealed snapshot failed"),
        }
    }
}
