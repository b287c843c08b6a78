//! The registry relay: an enclave's registry calls (cluster, latest anchor, record anchor,
//! stake) carried to the real registry, which the host holds (`daas-host registry`, or `daas
//! launch` in-process). The protocol and its trust argument live in [`chain::serve_relay`]:
//! anchors are signed by the enclave, so the host can delay them but not forge them.

use std::sync::Arc;
use std::time::Duration;

use chain::Registry;
use tokio_util::sync::CancellationToken;

use crate::accept::accept_until_shutdown;
use crate::transport::Listener;

/// Connections served at once; more are closed at once.
const MAX_CONNECTIONS: usize = 64;
/// How long one call may take (a Sui transaction included).
const CALL_TIMEOUT: Duration = Duration::from_secs(90);

/// Serves [`chain::serve_relay`] for `registry` on `listener` until `shutdown`, then lets open
/// calls finish.
pub async fn serve_registry_relay<R>(
    registry: Arc<R>,
    listener: Listener,
    shutdown: CancellationToken,
) where
    R: Registry + Send + Sync + 'static,
{
    let admit = |mut stream: crate::Stream, peer, open| {
        if open >= MAX_CONNECTIONS {
            tracing::warn!(
                ?peer,
                "too many registry relay connections; closing the new one"
            );
            return None;
        }
        let registry = Arc::clone(&registry);
        Some(async move {
            match tokio::time::timeout(
                CALL_TIMEOUT,
                chain::serve_relay(registry.as_ref(), &mut stream),
            )
            .await
            {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(?peer, error = %e, "registry relay connection failed"),
                Err(_) => tracing::warn!(?peer, "registry relay call timed out"),
            }
        })
    };
    let on_error = |e: &std::io::Error| tracing::warn!(error = %e, "registry relay: accept failed");
    let mut connections = accept_until_shutdown(&listener, &shutdown, admit, on_error).await;
    while connections.join_next().await.is_some() {}
}
