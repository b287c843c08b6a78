//! `daas-enclave`: the trusted control plane process.
//!
//! **Production mode** (no `--dev`), inside a Nitro Enclave: documents come from the hardware
//! NSM (`/dev/nsm`), keys carry the production label, the root secret comes only from AWS KMS
//! through the host's key broker (`--root-secret-source kms`, the default) or from the operator
//! (`operator`: `daas unseal`), never from a file. It listens on vsock (`vsock:ANY:6443`) for
//! the host relay and reaches the host's journal service, key broker and registry relay on the
//! parent's CID (`--parent-cid`, 3 on Nitro). Dev artefacts (a dev root secret or dev
//! attestation root in the data directory, a journal sealed with dev keys) are refused. If KMS
//! refuses, the enclave stays sealed: it serves attestation and health and says why, and the
//! operator may still unseal it. Requests with the admin token (known by its SHA-256,
//! `--admin-token-sha256`) act as `admin`.
//!
//! **Dev mode** (`--dev`) keeps everything under `--data-dir`: the store index and journal, a
//! dev root secret file (or KMS / the operator), the dev PKI, `admin.kubeconfig`, and the
//! simulated NSM's dev root (`attestation/dev-root.crt`, which `daas verify --dev-root` pins).
//!
//! **Rollback anchors** (both modes, with `--registry`): before serving, the journal is checked
//! against the registry's latest anchor ([`enclave::boot::anchor`]); while serving, an anchor is
//! recorded every `--anchor-interval` and at clean shutdown. With the registry unreachable at
//! boot the enclave serves nothing until it can read it, unless started with
//! `--degraded-start-without-registry`.
//!
//! **Nodes** (both modes, with `--registry`): nodes join with stake tickets (`/join/v1/...`);
//! the enclave reads the stakes from the registry, issues node certificates from a CA derived
//! from the root secret, and follows the registry every `--registry-poll-interval` to revoke
//! nodes whose stake stopped admitting them.
//!
//! It prints `sealed <url>` while waiting for a root secret and `ready <url>` once it serves.

mod args;
mod cluster;
mod nodes;
mod production;
mod security;

use std::sync::Arc;
use std::time::Duration;

use ::attestation::{Mode, RootSecret, SimNsm};
use anyhow::{Context, Result, bail};
use clap::Parser;
use enclave::api::nodes::tls_config_with_nodes;
use enclave::api::sealed::{Unsealed, serve_until_unsealed};
use enclave::api::{
    ApiConfig, ApiServer, Attestor, Authenticator, DevPki, Listener, UserInfo, attestation, pki,
    tls_config, tls_config_with_client_cas,
};
use enclave::boot::root_secret_from_kms;
use enclave::registry::admission::AdmissionOptions;
use enclave::registry::{ObjectStore, ResourceTable, kinds};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use tokio_util::sync::CancellationToken;

use crate::args::{Args, Plan, RootSecretSource};
use crate::cluster::{Opened, WhileUnreachable, open_cluster};

/// mimalloc (without transparent huge pages, which would back each thread's first pages with
/// 2 MiB): the request path allocates and frees many small JSON and typed trees per write, and
/// glibc's allocator cost about a third of the enclave's CPU there.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The dev root secret under the data directory (0600).
const ROOT_SECRET_FILE: &str = "root-secret.dev";
/// How long the last anchor at shutdown may take.
const FINAL_ANCHOR_TIMEOUT: Duration = Duration::from_secs(10);

/// Resolves on Ctrl-C, SIGTERM, or the supervising parent's death.
async fn stop_requested(exit_with_parent: Option<u32>) -> Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let parent_gone = protocol::supervision::parent_gone(exit_with_parent)
        .context("watching the parent process")?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
        () = parent_gone => tracing::warn!("parent process is gone: stopping"),
    }
    Ok(())
}

fn log_dev_nsm(nsm: &SimNsm) {
    tracing::info!(
        pcr0 = %nsm.pcrs().get(0).map(ToString::to_string).unwrap_or_default(),
        root_sha256 = %hex::encode(nsm.root().sha256()),
        "dev attestation (simulated NSM)"
    );
}

/// Where the serving TLS identity and the advertised URL come from.
struct Serving {
    listener: Listener,
    tls: Arc<rustls::ServerConfig>,
    pki: DevPki,
    url: String,
    host: String,
    cert: CertificateDer<'static>,
}

async fn bind(args: &Args, plan: &Plan) -> Result<Serving> {
    let listener = Listener::bind(&plan.listen).await?;
    let url = match (&args.advertise, listener.tcp_addr()) {
        (Some(u), _) => u.clone(),
        (None, Some(a)) => format!("https://{a}"),
        (None, None) if plan.mode == Mode::Production => "https://127.0.0.1:6443".to_owned(),
        (None, None) => bail!("--advertise is required when not listening on TCP"),
    };
    let host = url
        .trim_start_matches("https://")
        .split('/')
        .next()
        .unwrap_or("")
        .to_string();
    let san_host = host
        .rsplit_once(':')
        .map(|(h, _)| h.trim_matches(['[', ']']).to_string())
        .unwrap_or_else(|| host.clone());
    // Production: a fresh TLS key every boot, in enclave memory, bound by attestation.
    // In-cluster clients reach the API as the `default/kubernetes` Service: its ClusterIP and
    // names (as kube-apiserver and k3s put them in the serving certificate).
    let mut sans = vec![
        san_host,
        args.service_cidr.first_ip().to_string(),
        "kubernetes".to_owned(),
        "kubernetes.default".to_owned(),
        "kubernetes.default.svc".to_owned(),
        "kubernetes.default.svc.cluster.local".to_owned(),
    ];
    sans.extend(args.tls_sans.iter().cloned());
    let pki = DevPki::load_or_create(&args.data_dir, &sans)?;
    if plan.mode == Mode::Dev {
        pki::write_private(
            &args.data_dir.join("admin.kubeconfig"),
            pki.admin_kubeconfig(&url).as_bytes(),
        )?;
    }
    let cert = CertificateDer::from_pem_slice(pki.server_cert_pem.as_bytes())
        .context("parsing the server certificate")?
        .into_owned();
    let tls = tls_config(&pki)?;
    Ok(Serving {
        listener,
        tls,
        pki,
        url,
        host,
        cert,
    })
}

/// The attestation side: the hardware NSM in production, the simulator in dev.
enum Nsm {
    Hardware(::attestation::NitroNsm),
    Simulated,
}

/// Documents from the simulated NSM, set up in the background (measuring the binary takes a
/// while); only attestation requests wait for it.
fn dev_attestor(args: &Args, cert: &CertificateDer<'_>) -> Result<Attestor> {
    let dev_root =
        attestation::dev_root(&args.data_dir).context("loading the dev attestation root")?;
    Ok(Attestor::set_up_in_background(
        move || SimNsm::new(dev_root),
        log_dev_nsm,
        cert,
    )?)
}

/// Stack of each runtime thread. The request path (authentication, the authorizer and
/// admission chains, the registry's write path, the controllers' reconciles) nests deep futures;
/// a CronJob create overflowed tokio's default 2 MiB in unoptimised builds.
const RUNTIME_THREAD_STACK_BYTES: usize = 8 * 1024 * 1024;

fn main() -> Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_stack_size(RUNTIME_THREAD_STACK_BYTES)
        .build()
        .context("starting the async runtime")?
        .block_on(run())
}

async fn run() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let plan = args.plan()?;
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating {}", args.data_dir.display()))?;
    let nsm = match plan.mode {
        Mode::Dev => Nsm::Simulated,
        Mode::Production => {
            production::refuse_dev_artefacts(&args.data_dir)?;
            let nsm = ::attestation::NitroNsm::open().context(
                "production mode needs the Nitro Secure Module (/dev/nsm); outside an enclave use --dev",
            )?;
            production::log_nsm(&nsm).await;
            Nsm::Hardware(nsm)
        }
    };
    let serving = bind(&args, &plan).await?;
    let Some((opened, attestor)) = unseal(&args, &plan, nsm, &serving).await? else {
        return Ok(());
    };
    serve(&args, &plan, serving, opened, attestor).await
}

/// Obtains the root secret and opens the cluster with it; `None` when asked to stop first.
async fn unseal(
    args: &Args,
    plan: &Plan,
    nsm: Nsm,
    serving: &Serving,
) -> Result<Option<(Opened, Attestor)>> {
    let (attestor, kms_failure) = match (plan.source, nsm) {
        (RootSecretSource::File, _) => {
            let root = RootSecret::load_or_create_dev_file(&args.data_dir.join(ROOT_SECRET_FILE))
                .context("loading the dev root secret")?;
            let opened = open_cluster(args, plan, root, WhileUnreachable::Wait)
                .await
                .map_err(cluster::OpenError::into_anyhow)?;
            return Ok(Some((opened, dev_attestor(args, &serving.cert)?)));
        }
        (RootSecretSource::Kms, Nsm::Hardware(nsm)) => {
            let outcome = from_kms(plan, args, &nsm).await;
            (Attestor::new(nsm, &serving.cert)?, outcome)
        }
        (RootSecretSource::Kms, Nsm::Simulated) => {
            let dev_root = attestation::dev_root(&args.data_dir)
                .context("loading the dev attestation root")?;
            let sim = tokio::task::spawn_blocking(move || SimNsm::new(dev_root))
                .await
                .context("setting up the simulated NSM")?
                .context("setting up the simulated NSM")?;
            log_dev_nsm(&sim);
            let outcome = from_kms(plan, args, &sim).await;
            (Attestor::new(sim, &serving.cert)?, outcome)
        }
        (RootSecretSource::Operator, Nsm::Hardware(nsm)) => {
            (Attestor::new(nsm, &serving.cert)?, Err(None))
        }
        (RootSecretSource::Operator, Nsm::Simulated) => {
            (dev_attestor(args, &serving.cert)?, Err(None))
        }
    };
    let why = match kms_failure {
        Ok(root) => {
            let opened = open_cluster(args, plan, root, WhileUnreachable::Wait)
                .await
                .map_err(cluster::OpenError::into_anyhow)?;
            return Ok(Some((opened, attestor)));
        }
        Err(why) => why,
    };
    tracing::info!(listen = %serving.listener.local_addr(), url = %serving.url, "sealed: waiting for the operator's root secret (daas unseal)");
    println!("sealed {}", serving.url);
    let unsealed = serve_until_unsealed(
        &serving.listener,
        Arc::clone(&serving.tls),
        Some(attestor.clone()),
        why,
        move |root| async move {
            match open_cluster(args, plan, root, WhileUnreachable::Refuse).await {
                Ok(opened) => Ok(Unsealed {
                    anchor_key: opened.anchor_key,
                    opened,
                }),
                Err(e) => Err(e.refusal()),
            }
        },
    );
    tokio::select! {
        u = unsealed => Ok(Some((u.opened, attestor))),
        stop = stop_requested(args.exit_with_parent) => {
            stop?;
            tracing::info!("shutting down while sealed");
            Ok(None)
        }
    }
}

/// The root secret from KMS, or (`Err(Some(reason))`) why KMS did not release it: the enclave
/// then stays sealed and says so.
async fn from_kms<N: ::attestation::Nsm>(
    plan: &Plan,
    args: &Args,
    nsm: &N,
) -> Result<RootSecret, Option<String>> {
    let Some(broker) = plan.key_broker.as_ref() else {
        return Err(Some("no key broker is configured".to_owned()));
    };
    tracing::info!(key_broker = %broker, "asking KMS for the root secret");
    match root_secret_from_kms(
        nsm,
        broker,
        Duration::from_secs(args.key_broker_connect_timeout),
    )
    .await
    {
        Ok(root) => {
            tracing::info!("root secret released by KMS to this enclave's attested key");
            Ok(root)
        }
        Err(e) => {
            let reason = format!(
                "KMS did not release the root secret through the key broker at {broker}: {}",
                enclave::boot::anchor::one_line(&e)
            );
            tracing::error!(%reason, "staying sealed: serving attestation only; `daas unseal` can still open the cluster");
            Err(Some(reason))
        }
    }
}

async fn serve(
    args: &Args,
    plan: &Plan,
    serving: Serving,
    opened: Opened,
    attestor: Attestor,
) -> Result<()> {
    let Opened {
        store,
        anchor_key,
        recorder,
        node_ca,
        identity,
    } = opened;
    let attestor = attestor.with_anchor_key(anchor_key);
    tracing::info!(anchor_key = %hex::encode(anchor_key), "anchor key bound in user_data");
    let snapshots = (args.snapshot_interval > 0).then(|| {
        tokio::spawn(cluster::snapshot_loop(
            store.clone(),
            Duration::from_secs(args.snapshot_interval),
        ))
    });
    let stop_anchoring = CancellationToken::new();
    let anchoring = recorder
        .clone()
        .map(|r| tokio::spawn(r.run(args.anchor_interval, stop_anchoring.clone())));
    let base = ObjectStore::new(store.clone(), ResourceTable::new(kinds::builtin()))
        .with_service_cidr(args.service_cidr)
        .with_admission_options(AdmissionOptions {
            not_ready_toleration_seconds: args.default_not_ready_toleration_seconds,
            unreachable_toleration_seconds: args.default_unreachable_toleration_seconds,
        });
    enclave::metrics::registry().register_collector(Box::new(
        enclave::metrics::store::StorageObjects::new(base.clone()),
    ));
    let (authorizer, rbac, admission) = security::chains(&base, plan);
    let objects = base.with_admission(admission);
    cluster::ensure_namespaces(&objects).await?;
    enclave::registry::admission::ensure_system_priority_classes(&objects)
        .await
        .context("creating the built-in priority classes")?;
    // Custom resources defined before a restart are served again.
    objects
        .sync_custom_resources()
        .await
        .context("serving the stored custom resource definitions")?;
    enclave::api::authz::bootstrap::ensure(&objects)
        .await
        .context("creating the default RBAC policy")?;
    // Aggregated roles (admin, edit, view) are complete before the first request.
    enclave::controllers::aggregate_cluster_roles(&objects)
        .await
        .map_err(|e| anyhow::anyhow!("aggregating cluster roles: {e}"))?;
    let tokens = Arc::new(enclave::auth::serviceaccount::ServiceAccountTokens::new(
        identity.service_accounts,
        args.service_account_issuer.clone(),
        args.api_audiences.clone(),
    ));
    let client_ca = Arc::new(
        enclave::auth::client_ca::ClientCa::new(&identity.client_ca)
            .map_err(|e| anyhow::anyhow!("client CA: {e}"))?,
    );
    let mut controller_options = nodes::controller_options(args, &serving.pki, &serving.host);
    controller_options.identity = Some(enclave::controllers::IdentityOptions {
        root_ca_pem: serving.pki.server_cert_pem.clone(),
        tokens: tokens.clone(),
        client_ca: client_ca.clone(),
    });
    let controllers = enclave::controllers::spawn(&objects, &controller_options)?;
    let scheduler = enclave::scheduler::spawn(&objects)?;

    let audit = security::audit(args, plan, &store)?;

    let admin = UserInfo::new("admin", &["system:masters", "system:authenticated"]);
    let mut auth = Authenticator::new().with_service_accounts(tokens.clone());
    if plan.mode == Mode::Dev {
        auth = auth.with_token(serving.pki.admin_token.clone(), admin.clone());
    }
    if let Some(digest) = args.admin_token_sha256 {
        auth = auth.with_token_sha256(digest, admin);
    }
    let admission = match &plan.registry {
        Some(url) => Some(
            nodes::node_admission(
                url,
                &objects,
                &node_ca,
                &serving.cert,
                args.node_cert_lifetime,
            )
            .await?,
        ),
        None => None,
    };
    let tls = match &admission {
        Some(a) => tls_config_with_nodes(&serving.pki, &[client_ca.cert_pem()], a.clone())?,
        None => tls_config_with_client_cas(&serving.pki, &[client_ca.cert_pem()])?,
    };
    let follow_stop = CancellationToken::new();
    let follower = admission
        .clone()
        .map(|a| tokio::spawn(a.follow_registry(args.registry_poll_interval, follow_stop.clone())));
    let config = ApiConfig {
        bookmark_interval: Duration::from_secs(args.bookmark_interval.max(1)),
        server_address: serving.host.clone(),
        attestor: Some(attestor),
        jwks_uri: args.service_account_jwks_uri.clone(),
        nodes: admission,
        autoscaler_sync_period: enclave::controllers::Enabled::new(
            args.controllers.iter().cloned(),
        )
        .is_enabled("horizontal-pod-autoscaler-controller")
        .then_some(args.horizontal_pod_autoscaler_sync_period),
        ..Default::default()
    };
    let security = enclave::api::Security {
        authorizer,
        rbac: Some(rbac),
        tokens: Some(tokens),
        audit,
    };
    let server = ApiServer::new(objects, auth, config, security);
    tracing::info!(listen = %serving.listener.local_addr(), url = %serving.url, "serving");
    println!("ready {}", serving.url);
    let serve_task = tokio::spawn(Arc::clone(&server).serve(serving.listener, tls));
    stop_requested(args.exit_with_parent).await?;
    tracing::info!("shutting down");
    let _ = tokio::time::timeout(Duration::from_secs(5), server.shutdown()).await;
    scheduler.shutdown().await;
    controllers.shutdown().await;
    follow_stop.cancel();
    if let Some(task) = follower {
        let _ = task.await;
    }
    serve_task.abort();
    stop_anchoring.cancel();
    if let Some(task) = anchoring {
        let _ = task.await;
    }
    if let Some(recorder) = recorder {
        match tokio::time::timeout(FINAL_ANCHOR_TIMEOUT, recorder.anchor_now()).await {
            Ok(Ok(Some(a))) => {
                tracing::info!(revision = a.revision, "final rollback anchor recorded")
            }
            Ok(Ok(None)) => tracing::info!("nothing new to anchor at shutdown"),
            Ok(Err(e)) => {
                tracing::warn!(error = %enclave::boot::anchor::one_line(&e), "the final rollback anchor was not recorded")
            }
            Err(_) => tracing::warn!("the final rollback anchor timed out"),
        }
    }
    if let Some(task) = snapshots {
        task.abort();
    }
    Ok(())
}
