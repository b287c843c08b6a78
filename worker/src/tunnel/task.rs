//! The tunnel as a task of the node [`Agent`](crate::Agent): it dials the API endpoint the
//! node joined through, with the join's credentials ([`ApiAccess`](crate::client::ApiAccess):
//! the attested key pinned, the node certificate, so the enclave sees `system:node:NAME`).

use std::sync::Arc;

use rustls_pki_types::ServerName;
use tokio::sync::watch;

use super::{Backoff, ContainerStreams, TunnelConfig, TunnelState};
use crate::agent::{AgentContext, AgentError, AgentTask};

/// The agent task keeping the node tunnel up, serving `streams`; `state` reports where it is
/// (pass a sender whose receiver nobody reads if that is of no interest).
///
/// `agent.with_task("tunnel", worker::tunnel::agent_task(streams, state))`.
pub fn agent_task(
    streams: Arc<dyn ContainerStreams>,
    state: watch::Sender<TunnelState>,
) -> AgentTask {
    Box::new(move |ctx: AgentContext, stop| {
        Box::pin(async move {
            let server = ctx.access.server().clone();
            let server_name =
                ServerName::try_from(server.host.clone()).map_err(|e| AgentError::Task {
                    task: "tunnel",
                    reason: format!("the API server name {:?}: {e}", server.host),
                })?;
            let address = if server.host.contains(':') {
                format!("[{}]:{}", server.host, server.port)
            } else {
                format!("{}:{}", server.host, server.port)
            };
            let config = TunnelConfig {
                address,
                server_name,
                backoff: Backoff::default(),
            };
            super::run(config, Arc::new(ctx.access), streams, state, stop).await;
            Ok(())
        })
    })
}
