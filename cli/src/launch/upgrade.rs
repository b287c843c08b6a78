//! Upgrades: the running `daas launch` listens on `STATE_DIR/launch.sock`; `daas launch
//! --upgrade --eif NEW` sends it `{"upgrade": "/abs/NEW.eif"}` and prints the lines it answers
//! with (the last is `ok ...` or `error ...`).
//!
//! The handover: the new image must be allowed; it is started beside the old enclave and
//! verified through a private relay on 127.0.0.1; then it is registered as the live enclave,
//! the public relay moves to it and the old enclave is terminated. Its writes already stopped
//! when the new enclave opened the journal (session fencing).

use std::path::PathBuf;

use anyhow::{Context as _, bail};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

use super::LaunchArgs;
use super::bringup::{Launch, LiveEnclave, allowed_image, measure};
use super::services::{RunningRelay, StateDir};
use crate::attested::ServerUrl;
use crate::dev::{Children, StopSignal};

/// The one request the control socket takes.
#[derive(Debug, Serialize, Deserialize)]
struct Request {
    upgrade: PathBuf,
}

/// Longest request line.
const MAX_REQUEST: usize = 8192;

/// `daas launch --upgrade`: asks the running launch to hand over to `args.eif`.
pub(super) async fn request(args: &LaunchArgs) -> anyhow::Result<()> {
    let control = StateDir::new(&args.state_dir).control;
    let eif = std::fs::canonicalize(&args.eif)
        .with_context(|| format!("resolving {}", args.eif.display()))?;
    let mut stream = UnixStream::connect(&control).await.with_context(|| {
        format!(
            "no running `daas launch` on {} (its control socket {} does not answer)",
            args.state_dir.display(),
            control.display()
        )
    })?;
    let mut line = serde_json::to_vec(&Request { upgrade: eif })?;
    line.push(b'\n');
    stream.write_all(&line).await?;
    let mut lines = BufReader::new(stream).lines();
    let mut last = String::new();
    while let Some(l) = lines.next_line().await? {
        println!("{l}");
        last = l;
    }
    if last.starts_with("ok") {
        Ok(())
    } else {
        bail!("the upgrade did not complete: {last}")
    }
}

/// Serves the control socket until a stop signal; performs upgrades asked for on it.
pub(super) async fn serve_until_stopped(
    launch: &Launch<'_>,
    state: &StateDir,
    services: &Children,
    stop: &mut StopSignal,
    live: &mut Option<LiveEnclave>,
) -> anyhow::Result<()> {
    let _ = std::fs::remove_file(&state.control);
    let listener = UnixListener::bind(&state.control)
        .with_context(|| format!("binding the control socket {}", state.control.display()))?;
    loop {
        let stream = tokio::select! {
            s = stop.recv() => return s,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    eprintln!("daas launch: control socket accept failed: {e}");
                    continue;
                }
            },
        };
        let (read, mut write) = stream.into_split();
        let mut reader = BufReader::new(read).take(MAX_REQUEST as u64);
        let mut text = String::new();
        let outcome = match reader.read_line(&mut text).await {
            Ok(_) => match serde_json::from_str::<Request>(&text) {
                Ok(req) => upgrade(launch, services, live, &req.upgrade, &mut write).await,
                Err(e) => Err(anyhow::anyhow!("bad control request: {e}")),
            },
            Err(e) => Err(e.into()),
        };
        let last = match outcome {
            Ok(id) => format!("ok: the cluster is served by enclave {id}\n"),
            Err(e) => format!("error: {e:#}\n"),
        };
        eprint!("daas launch: upgrade {last}");
        let _ = write.write_all(last.as_bytes()).await;
    }
}

async fn say(out: &mut tokio::net::unix::OwnedWriteHalf, line: String) {
    eprintln!("daas launch: {line}");
    let _ = out.write_all(format!("{line}\n").as_bytes()).await;
}

/// Hands the cluster over to `eif`; returns the new enclave's ID.
async fn upgrade(
    launch: &Launch<'_>,
    services: &Children,
    live: &mut Option<LiveEnclave>,
    eif: &std::path::Path,
    out: &mut tokio::net::unix::OwnedWriteHalf,
) -> anyhow::Result<String> {
    let pcrs = measure(eif)?;
    let image = allowed_image(&launch.registry, eif, &pcrs).await?;
    say(
        out,
        format!(
            "{} is allowed image v{} {:?}; starting it",
            eif.display(),
            image.version,
            image.label
        ),
    )
    .await;
    let private: host::Endpoint = "127.0.0.1:0".parse()?;
    let new = launch.start_enclave(eif, &private).await?;
    let port = match &new.relay.local {
        host::Endpoint::Tcp(addr) => addr.port(),
        other => bail!("the private relay is not on TCP: {other}"),
    };
    let server: ServerUrl = format!("https://127.0.0.1:{port}")
        .parse()
        .map_err(|e: String| anyhow::anyhow!(e))?;
    say(
        out,
        format!(
            "enclave {} (CID {}) started; verifying it",
            new.run.enclave_id, new.run.enclave_cid
        ),
    )
    .await;
    let attested = match launch.wait_verified(&server, &pcrs, services).await {
        Ok(a) => a,
        Err(e) => {
            launch.stop_enclave(new).await;
            return Err(e.context("the new enclave did not verify; the old one keeps serving"));
        }
    };
    if let Err(e) = launch.register(&attested).await {
        launch.stop_enclave(new).await;
        return Err(e);
    }
    say(
        out,
        "registered the new enclave; moving the public relay to it".to_owned(),
    )
    .await;
    let LiveEnclave { run, relay } = new;
    relay.stop().await;
    let old = live.take();
    let public = host::Endpoint::Tcp(launch.args.listen);
    if let Some(old) = old {
        // The public address is free once the old relay has drained.
        let old_run = old.run.clone();
        old.relay.stop().await;
        let relay = RunningRelay::start(&public, &launch.transport, run.enclave_cid).await?;
        *live = Some(LiveEnclave {
            run: run.clone(),
            relay,
        });
        match launch.cli.terminate_enclave(&old_run.enclave_id).await {
            Ok(_) => {
                say(
                    out,
                    format!("old enclave {} terminated", old_run.enclave_id),
                )
                .await
            }
            Err(e) => {
                say(
                    out,
                    format!(
                        "terminating the old enclave {} failed: {e}",
                        old_run.enclave_id
                    ),
                )
                .await
            }
        }
    } else {
        let relay = RunningRelay::start(&public, &launch.transport, run.enclave_cid).await?;
        *live = Some(LiveEnclave {
            run: run.clone(),
            relay,
        });
    }
    Ok(run.enclave_id)
}
