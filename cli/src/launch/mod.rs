//! `daas launch`: bring up a production cluster on a Nitro parent instance.
//!
//! In order, and refusing at the first step that fails:
//! 1. measure the EIF and check PCR0..2 against the registry's allowed images (nothing is
//!    started for an image the registry does not allow);
//! 2. start the host services: the journal service, the key broker (with KMS settings), the
//!    outbound proxy (allowlist: the KMS endpoint and the Sui fullnode), and the registry relay
//!    (in this process, holding the registry and its keystore);
//! 3. `nitro-cli run-enclave` (no `--debug-mode` unless asked), then the public relay to the
//!    enclave's CID;
//! 4. wait for the enclave and verify it as `daas verify` does (AWS root, fresh nonce, PCRs
//!    the registry allows, TLS key binding); a sealed enclave (operator mode, or KMS refused)
//!    is reported and waited for until `daas unseal` opens it;
//! 5. register it as the live enclave from its attestation document, and write a kubeconfig
//!    pinned to its attested certificate with the admin token;
//! 6. keep everything running until Ctrl-C or SIGTERM, then terminate the enclave and stop the
//!    services.
//!
//! `daas launch --upgrade --eif NEW` asks the running `daas launch` (its control socket in the
//! state directory) to bring up `NEW` beside the old enclave, verify and register it, move the
//! relay to it and terminate the old one; the journal's session fencing stops the old
//! enclave's writes as soon as the new one connects.
//!
//! `--vhost-user-vsock-dir DIR` replaces vsock with the host-side Unix sockets of QEMU's
//! `nitro-enclave` machine (vhost-device-vsock): the services listen on `DIR/host.vsock_PORT`
//! and the enclave with CID N is reached through `DIR/vm{N}.vsock` (used with a `nitro-cli`
//! stand-in that boots the EIF under QEMU, and `--dangerous-qemu-emulator`).
//!
//! State directory layout: `journal/` (sealed journal), `keybroker/` (the KMS-wrapped root
//! secret), `launch.sock` (control socket), `kubeconfig` (unless `--kubeconfig`).

mod bringup;
mod services;
mod upgrade;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Args;

use crate::registry::Target;

/// Arguments of `daas launch`.
#[derive(Debug, Args)]
pub(crate) struct LaunchArgs {
    /// The enclave image.
    #[arg(long, value_name = "EIF")]
    pub(crate) eif: PathBuf,
    #[command(flatten)]
    pub(crate) target: Target,
    /// Where the host keeps the cluster's sealed journal, the KMS-wrapped root secret and the
    /// control socket.
    #[arg(long, value_name = "DIR")]
    pub(crate) state_dir: PathBuf,
    /// Bring up `--eif` in place of the enclave the running `daas launch` on this state
    /// directory serves, and hand the cluster over to it.
    #[arg(long)]
    pub(crate) upgrade: bool,
    /// vCPUs for the enclave.
    #[arg(long, default_value_t = 2)]
    pub(crate) cpus: u32,
    /// Enclave memory, MiB.
    #[arg(long, default_value_t = 4096)]
    pub(crate) memory: u64,
    /// The enclave's vsock CID [default: chosen by nitro-cli].
    #[arg(long)]
    pub(crate) cid: Option<u32>,
    /// Start the enclave in debug mode (console readable from the parent; PCRs are zero, so no
    /// production verifier, KMS policy or registry will accept it).
    #[arg(long)]
    pub(crate) debug_mode: bool,
    /// The nitro-cli program.
    #[arg(long, default_value = "nitro-cli")]
    pub(crate) nitro_cli: PathBuf,
    /// Public address of the API server (the relay's TCP listener).
    #[arg(long, default_value = "0.0.0.0:6443", value_name = "HOST:PORT")]
    pub(crate) listen: std::net::SocketAddr,
    /// The URL clients use, `https://HOST:PORT` [default: from --listen, 127.0.0.1 for 0.0.0.0].
    #[arg(long, value_name = "URL")]
    pub(crate) server: Option<String>,
    /// Where to write the kubeconfig [default: STATE_DIR/kubeconfig].
    #[arg(long, value_name = "PATH")]
    pub(crate) kubeconfig: Option<PathBuf>,
    /// The admin bearer token whose SHA-256 the image carries (`daas image build
    /// --admin-token-file`), written into the kubeconfig.
    #[arg(long, value_name = "PATH")]
    pub(crate) admin_token_file: PathBuf,
    /// The KMS key (id, ARN or alias) that wraps the root secret; without it no key broker
    /// runs and the enclave waits for `daas unseal`.
    #[arg(long)]
    pub(crate) kms_key_id: Option<String>,
    /// AWS region of the KMS key.
    #[arg(long, env = "AWS_REGION")]
    pub(crate) region: Option<String>,
    /// The KMS endpoint URL [default: https://kms.REGION.amazonaws.com].
    #[allow(rustdoc::bare_urls)]
    #[arg(long)]
    pub(crate) kms_endpoint: Option<String>,
    /// The Sui fullnode the enclave may reach through the outbound proxy (`HOST:PORT`).
    #[arg(long, value_name = "HOST:PORT")]
    pub(crate) sui_fullnode: Option<String>,
    /// The audit webhook server the enclave may reach (`HOST:PORT`), on the outbound route of
    /// vsock port 8010; the enclave image's `--audit-webhook-config-file` names the server
    /// and its CA, and TLS runs end to end through the route.
    #[arg(long, value_name = "HOST:PORT")]
    pub(crate) audit_webhook: Option<String>,
    /// An admission webhook server the enclave may call (`HOST:PORT`, repeatable): the host's
    /// CONNECT proxy on vsock port 8011 lets the enclave reach exactly these, TLS end to end.
    #[arg(long, value_name = "HOST:PORT")]
    pub(crate) admission_webhook: Vec<String>,
    /// Accept the unsigned documents of QEMU's nitro-enclave emulator when verifying and
    /// registering the enclave. Tests of images under the emulator only.
    #[arg(long)]
    pub(crate) dangerous_qemu_emulator: bool,
    /// Reach the enclave through vhost-device-vsock sockets in DIR instead of vsock (QEMU).
    #[arg(long, value_name = "DIR")]
    pub(crate) vhost_user_vsock_dir: Option<PathBuf>,
    /// How long to wait for the enclave to answer and be unsealed.
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    pub(crate) wait: Duration,
}

impl LaunchArgs {
    /// The URL clients use.
    fn server_url(&self) -> String {
        if let Some(s) = &self.server {
            return s.clone();
        }
        let host = if self.listen.ip().is_unspecified() {
            "127.0.0.1".to_owned()
        } else {
            self.listen.ip().to_string()
        };
        format!("https://{host}:{}", self.listen.port())
    }

    fn kubeconfig_path(&self) -> PathBuf {
        self.kubeconfig
            .clone()
            .unwrap_or_else(|| self.state_dir.join("kubeconfig"))
    }

    /// The admin token, checked to be one line of printable text.
    fn admin_token(&self) -> anyhow::Result<String> {
        let text = std::fs::read_to_string(&self.admin_token_file)
            .with_context(|| format!("reading {}", self.admin_token_file.display()))?;
        let token = text.trim().to_owned();
        if token.is_empty() || token.contains(char::is_whitespace) {
            bail!(
                "{} must hold the admin token on one line",
                self.admin_token_file.display()
            );
        }
        Ok(token)
    }
}

/// Runs `daas launch`.
pub(crate) fn run(args: &LaunchArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    if args.upgrade {
        return runtime.block_on(upgrade::request(args));
    }
    runtime.block_on(bringup::launch(args))
}
