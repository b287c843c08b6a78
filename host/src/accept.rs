//! The accept loop every host service shares: the relay, the outbound proxies, the journal service and the key
//! broker differ only in whom they admit and what a connection does.

use std::future::Future;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::transport::{Listener, PeerAddr, Stream};

/// Pause after a failed accept (out of descriptors and the like), so a listener that stays readable is not spun on.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Accepts on `listener` until `shutdown` fires and returns the connections still open, for the caller to drain
/// or cut.
///
/// `admit` gets each new connection and the number already open; it returns the connection's task, or `None`
/// to close it at once (over a limit). Finished tasks are reaped as the loop goes. `on_error` sees each failed
/// accept (log it, count it) before the loop backs off.
pub(crate) async fn accept_until_shutdown<A, F>(
    listener: &Listener,
    shutdown: &CancellationToken,
    mut admit: A,
    on_error: impl Fn(&std::io::Error),
) -> JoinSet<()>
where
    A: FnMut(Stream, PeerAddr, usize) -> Option<F>,
    F: Future<Output = ()> + Send + 'static,
{
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    if let Some(task) = admit(stream, peer, connections.len()) {
                        connections.spawn(task);
                    }
                }
                Err(e) => {
                    on_error(&e);
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
        }
    }
    connections
}
