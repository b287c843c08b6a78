//! Recording anchors: every interval while the store moves, and once more on shutdown.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chain::{Address, Anchor, AnyRegistry, Registry, SignedAnchor};
use ring::signature::Ed25519KeyPair;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use super::one_line;
use crate::store::Store;

/// Signs the store's chain head with the anchor key and records it on the registry.
#[derive(Debug, Clone)]
pub struct AnchorRecorder {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    registry: Arc<AnyRegistry>,
    key: Ed25519KeyPair,
    store: Store,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    /// The highest revision recorded (or found on the registry), so an unchanged store is not
    /// anchored again.
    last: u64,
    /// The registry cluster anchors are signed for; read from the registry when unknown (after
    /// a degraded start).
    cluster: Option<Address>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .ok()
        .and_then(|d| u64::try_from(d.as_millis()).ok())
        .unwrap_or(0)
}

impl AnchorRecorder {
    /// A recorder for `store` on `registry`, signing for `cluster` with `key` (`None`: ask
    /// the registry at the first anchor). `anchored` is the latest anchored revision known at
    /// boot (0 for none).
    #[must_use]
    pub fn new(
        registry: Arc<AnyRegistry>,
        key: Ed25519KeyPair,
        cluster: Option<Address>,
        store: Store,
        anchored: u64,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                registry,
                key,
                store,
                state: Mutex::new(State {
                    last: anchored,
                    cluster,
                }),
            }),
        }
    }

    /// Records an anchor of the store's current chain head, unless it is not past the last one.
    /// Returns the anchor recorded, if any.
    ///
    /// # Errors
    ///
    /// The registry's refusal (e.g. no live enclave yet, or a newer anchor by another
    /// enclave), or a store read error, as a [`chain::Error`] or a message.
    pub async fn anchor_now(&self) -> Result<Option<Anchor>, AnchorError> {
        let mut state = self.inner.state.lock().await;
        let head = self
            .inner
            .store
            .chain_head()
            .map_err(|e| AnchorError::Store(one_line(&e)))?;
        if head.revision <= state.last {
            return Ok(None);
        }
        let cluster = match state.cluster {
            Some(c) => c,
            None => {
                let id = self.inner.registry.cluster().await?.id;
                state.cluster = Some(id);
                id
            }
        };
        let signed = SignedAnchor::sign(
            &self.inner.key,
            cluster,
            head.revision,
            head.chain_hash,
            now_ms(),
        );
        let recorded = self.inner.registry.record_anchor(signed).await?;
        state.last = recorded.revision;
        tracing::info!(
            revision = recorded.revision,
            chain_hash = %hex::encode(recorded.chain_hash),
            "rollback anchor recorded on the registry"
        );
        Ok(Some(recorded))
    }

    /// Anchors every `interval` until `stop`, logging refusals (the registry may be briefly
    /// unreachable, or this enclave not yet registered as the live one).
    pub async fn run(self, interval: Duration, stop: CancellationToken) {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            if let Err(e) = self.anchor_now().await {
                tracing::warn!(error = %one_line(&e), "recording a rollback anchor failed; retrying at the next interval");
            }
        }
    }
}

/// Why an anchor was not recorded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AnchorError {
    /// The registry refused or could not be reached.
    #[error("the registry did not record the anchor")]
    Registry(#[from] chain::Error),
    /// The store's chain head could not be read.
    #[error("reading the store's chain head failed: {0}")]
    Store(String),
}
