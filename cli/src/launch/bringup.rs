//! The launch itself: check the image, start the services, run the enclave, verify, register,
//! write the kubeconfig, and keep it all up until told to stop.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use attestation::Verifier;
use chain::{AllowedImage, AnyRegistry, Pcrs, Registry};
use host::NitroCli;
use host::launcher::{EnclaveRun, RunEnclaveRequest};
use tokio_util::sync::CancellationToken;

use super::LaunchArgs;
use super::services::{self, RunningRelay, StateDir, Transport};
use super::upgrade;
use crate::attested::{self, Attested, ServerUrl, TrustArgs};
use crate::dev::{Children, StopSignal, find_binary};
use crate::kubeconfig::{self, Credentials};

/// PCR0..2 of an EIF as `daas image measure` computes them.
pub(super) fn measure(eif: &Path) -> anyhow::Result<Pcrs> {
    let bytes = std::fs::read(eif).with_context(|| format!("reading {}", eif.display()))?;
    let image = image::EifImage::from_bytes(&bytes)
        .with_context(|| format!("{} is not a valid EIF", eif.display()))?;
    let m = image
        .measure()
        .with_context(|| format!("{} has a bad signature section", eif.display()))?;
    Ok(Pcrs {
        pcr0: attestation::Pcr::new(m.pcr0.0),
        pcr1: attestation::Pcr::new(m.pcr1.0),
        pcr2: attestation::Pcr::new(m.pcr2.0),
    })
}

/// The allowed image with exactly these PCRs, or a refusal naming PCR0 and what is allowed.
pub(super) async fn allowed_image(
    registry: &AnyRegistry,
    eif: &Path,
    pcrs: &Pcrs,
) -> anyhow::Result<AllowedImage> {
    let state = registry
        .cluster()
        .await
        .context("reading the registry's allowed images")?;
    match state.images.iter().find(|i| &i.pcrs == pcrs) {
        Some(image) => Ok(image.clone()),
        None => bail!(
            "{} is not an allowed image: its PCR0 {} matches none of the registry's {} allowed \
             image(s){}; nothing was started (allow it first: daas registry allow-image)",
            eif.display(),
            pcrs.pcr0,
            state.images.len(),
            state
                .images
                .iter()
                .map(|i| format!(" v{} {:?} (PCR0 {})", i.version, i.label, i.pcrs.pcr0))
                .collect::<Vec<_>>()
                .join(",")
        ),
    }
}

/// What the running launch holds for one enclave.
#[derive(Debug)]
pub(super) struct LiveEnclave {
    pub(super) run: EnclaveRun,
    pub(super) relay: RunningRelay,
}

/// The launch's fixed context.
pub(super) struct Launch<'a> {
    pub(super) args: &'a LaunchArgs,
    pub(super) registry: Arc<AnyRegistry>,
    pub(super) cli: NitroCli,
    pub(super) daas_host: std::path::PathBuf,
    pub(super) transport: Transport,
    pub(super) server: ServerUrl,
    pub(super) token: String,
}

impl Launch<'_> {
    /// What a freshly started enclave of the image measured `pcrs` must prove: those PCRs
    /// (the image was found allowed before it was started) under the pinned root. Not the
    /// registry's live-enclave record: the enclave registers as live only once verified, so
    /// it is not (or another one still is) the live one yet.
    fn trust(&self, pcrs: &Pcrs) -> TrustArgs {
        TrustArgs {
            root: None,
            dev_root: None,
            registry: None,
            expect_pcr: vec![(0, pcrs.pcr0), (1, pcrs.pcr1), (2, pcrs.pcr2)],
            max_age_secs: 300,
            dangerous_qemu_emulator: self.args.dangerous_qemu_emulator,
        }
    }

    /// Runs `eif` with nitro-cli and relays `listen` to it.
    pub(super) async fn start_enclave(
        &self,
        eif: &Path,
        listen: &host::Endpoint,
    ) -> anyhow::Result<LiveEnclave> {
        let request = RunEnclaveRequest {
            eif: eif.to_owned(),
            cpus: self.args.cpus,
            memory_mib: self.args.memory,
            cid: self.args.cid,
            name: None,
            debug_mode: self.args.debug_mode,
        };
        let run = self
            .cli
            .run_enclave(&request)
            .await
            .with_context(|| format!("nitro-cli run-enclave {}", eif.display()))?;
        eprintln!(
            "daas launch: enclave {} running with CID {}",
            run.enclave_id, run.enclave_cid
        );
        let relay = match RunningRelay::start(listen, &self.transport, run.enclave_cid).await {
            Ok(relay) => relay,
            Err(e) => {
                let _ = self.cli.terminate_enclave(&run.enclave_id).await;
                return Err(e);
            }
        };
        Ok(LiveEnclave { run, relay })
    }

    /// Waits until the enclave answers at `server` and verifies, and is unsealed (its
    /// documents carry the anchor key); reports a sealed enclave and why, once.
    pub(super) async fn wait_verified(
        &self,
        server: &ServerUrl,
        pcrs: &Pcrs,
        services: &Children,
    ) -> anyhow::Result<Attested> {
        let deadline = Instant::now() + self.args.wait;
        let trust = self.trust(pcrs);
        let mut last = String::new();
        let mut said_sealed = false;
        for attempt in 0u64.. {
            if let Some(name) = services.failed() {
                bail!("the {name} service could not be started (see its error above)");
            }
            match attested::attest(server, &trust).await {
                Ok(a) if a.report.anchor_key().is_some() => return Ok(a),
                Ok(a) => {
                    if !said_sealed {
                        said_sealed = true;
                        let why = match attested::fetch::get_from_attested(
                            server,
                            &a.certificate,
                            "/readyz",
                        )
                        .await
                        {
                            Ok((_, body)) => String::from_utf8_lossy(&body).into_owned(),
                            Err(e) => format!("{e:#}"),
                        };
                        eprintln!(
                            "daas launch: the enclave verified but is SEALED: {why}\n\
                             daas launch: unseal it with `daas unseal --server {server}` (waiting)"
                        );
                    }
                }
                Err(report) if report.has_document() => {
                    print!("{report}");
                    bail!(
                        "the enclave's attestation did not verify: {}",
                        report.error.as_deref().unwrap_or("unknown failure")
                    );
                }
                Err(report) => last = report.error.clone().unwrap_or_default(),
            }
            if Instant::now() > deadline {
                bail!(
                    "the enclave was not verified and unsealed at {server} within {:?}: {last}",
                    self.args.wait
                );
            }
            if attempt % 30 == 0 && !last.is_empty() {
                eprintln!("daas launch: waiting for the enclave at {server} ({last})");
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        bail!("unreachable: the wait loop ended")
    }

    /// Registers the verified enclave as the live one and writes the kubeconfig.
    pub(super) async fn register(&self, attested: &Attested) -> anyhow::Result<()> {
        let live = self
            .registry
            .register_enclave(&attested.document)
            .await
            .context("registering the enclave on the registry")?;
        eprintln!(
            "daas launch: registered the live enclave (image v{}, anchor key {})",
            live.image_version,
            hex::encode(live.anchor_key)
        );
        // The enclave's certificate names localhost (it does not know the public name); the
        // kubeconfig pins that very certificate and checks the name it carries.
        let text = kubeconfig::render_with_server_name(
            "k3s-daas",
            &self.server,
            &attested.certificate,
            &Credentials::Token(self.token.clone()),
            Some("localhost"),
        );
        let path = self.args.kubeconfig_path();
        kubeconfig::write_private(&path, &text).context("writing the kubeconfig")?;
        println!("kubeconfig: {}", path.display());
        Ok(())
    }

    /// Terminates an enclave and stops its relay.
    pub(super) async fn stop_enclave(&self, live: LiveEnclave) {
        live.relay.stop().await;
        match self.cli.terminate_enclave(&live.run.enclave_id).await {
            Ok(t) => eprintln!(
                "daas launch: enclave {} terminated ({})",
                t.enclave_id, t.terminated
            ),
            Err(e) => eprintln!(
                "daas launch: terminating enclave {} failed: {e}",
                live.run.enclave_id
            ),
        }
    }
}

/// Runs the whole launch (see the [module docs](super)).
pub(super) async fn launch(args: &LaunchArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.state_dir)
        .with_context(|| format!("creating {}", args.state_dir.display()))?;
    let token = args.admin_token()?;
    let verifier = args
        .dangerous_qemu_emulator
        .then(Verifier::dangerous_qemu_emulator);
    let options = args.target.open_options(verifier)?;
    let registry = Arc::new(
        AnyRegistry::open(args.target.url(), &options)
            .await
            .with_context(|| format!("opening the registry {}", args.target.url()))?,
    );
    let pcrs = measure(&args.eif)?;
    let image = allowed_image(&registry, &args.eif, &pcrs).await?;
    eprintln!(
        "daas launch: {} is allowed image v{} {:?}",
        args.eif.display(),
        image.version,
        image.label
    );
    let server: ServerUrl = args
        .server_url()
        .parse()
        .map_err(|e: String| anyhow::anyhow!(e))?;
    let launch = Launch {
        args,
        registry,
        cli: NitroCli::new(&args.nitro_cli),
        daas_host: find_binary("daas-host")?,
        transport: Transport::of(args),
        server,
        token,
    };
    let state = StateDir::new(&args.state_dir);
    let mut stop = StopSignal::install()?;
    let services = Children::start(services::host_services(
        args,
        &launch.daas_host,
        &state,
        &launch.transport,
    )?);
    let shutdown = CancellationToken::new();
    let outcome = async {
        let relay_task = services::registry_relay(
            Arc::clone(&launch.registry),
            &launch.transport,
            shutdown.clone(),
        )
        .await?;
        let public: host::Endpoint = host::Endpoint::Tcp(args.listen);
        let live = launch.start_enclave(&args.eif, &public).await?;
        let mut live = Some(live);
        let verified = tokio::select! {
            v = launch.wait_verified(&launch.server, &pcrs, &services) => v,
            s = stop.recv() => match s {
                Ok(()) => Err(anyhow::anyhow!("interrupted before the enclave was up")),
                Err(e) => Err(e),
            },
        };
        let attested = match verified {
            Ok(a) => a,
            Err(e) => return Ok::<_, anyhow::Error>((Err(e), live, relay_task)),
        };
        if let Err(e) = launch.register(&attested).await {
            return Ok((Err(e), live, relay_task));
        }
        println!("ready {}", launch.server);
        let result =
            upgrade::serve_until_stopped(&launch, &state, &services, &mut stop, &mut live).await;
        Ok((result, live, relay_task))
    }
    .await;
    eprintln!("daas launch: stopping");
    let result = match outcome {
        Ok((result, live, relay_task)) => {
            if let Some(live) = live {
                launch.stop_enclave(live).await;
            }
            shutdown.cancel();
            let _ = relay_task.await;
            result
        }
        Err(e) => Err(e),
    };
    shutdown.cancel();
    services.stop().await;
    result
}
