//! The store manager: one [`StoreHandle`] (one actor thread) per open store, opened lazily on
//! first use and closed together at shutdown.

use std::collections::HashMap;

use lattice_core::{Identity, StoreId};
use lattice_store::{StoreConfig, StoreHandle};
use tokio::sync::Mutex;

use crate::datadir::DataDir;
use crate::error::NodeError;

/// Opens stores on demand and keeps them open until [`close`](Self::close) or
/// [`close_all`](Self::close_all). Dropping the manager drops its handles; each store actor then
/// stops when its last handle clone is gone, but only `close` checkpoints cleanly.
pub(crate) struct StoreManager {
    dir: DataDir,
    identity: Identity,
    config: StoreConfig,
    // Invariant: at most one handle (one actor) per store id. The mutex is held across an open,
    // so two callers asking for the same closed store cannot open it twice.
    open: Mutex<HashMap<StoreId, StoreHandle>>,
    closed: std::sync::atomic::AtomicBool,
}

impl StoreManager {
    pub(crate) fn new(dir: DataDir, identity: Identity, config: StoreConfig) -> Self {
        StoreManager {
            dir,
            identity,
            config,
            open: Mutex::new(HashMap::new()),
            closed: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// The handle of store `id`, opening `stores/{uuid}` (creating it if new) on first use.
    pub(crate) async fn get(&self, id: StoreId) -> Result<StoreHandle, NodeError> {
        let mut open = self.open.lock().await;
        if self.closed.load(std::sync::atomic::Ordering::Acquire) {
            return Err(NodeError::ShuttingDown);
        }
        if let Some(handle) = open.get(&id) {
            return Ok(handle.clone());
        }
        let path = self.dir.store(id);
        let identity = self.identity.clone();
        let config = self.config.clone();
        tracing::debug!(store = %id, path = %path.display(), "opening store");
        let handle = tokio::task::spawn_blocking(move || StoreHandle::open(&path, id, identity, config))
            .await
            .map_err(|e| NodeError::Corrupt(format!("opening store {id} panicked: {e}")))??;
        open.insert(id, handle.clone());
        Ok(handle)
    }

    /// Closes store `id` if it is open (its actor checkpoints and stops).
    pub(crate) async fn close(&self, id: StoreId) -> Result<(), NodeError> {
        let handle = self.open.lock().await.remove(&id);
        if let Some(handle) = handle {
            handle.close().await?;
        }
        Ok(())
    }

    /// Closes every open store and refuses to open more. Returns the first error, after trying all.
    pub(crate) async fn close_all(&self) -> Result<(), NodeError> {
        let handles: Vec<StoreHandle> = {
            let mut open = self.open.lock().await;
            self.closed.store(true, std::sync::atomic::Ordering::Release);
            open.drain().map(|(_, h)| h).collect()
        };
        let mut first = Ok(());
        for handle in handles {
            let id = handle.store_id();
            if let Err(e) = handle.close().await {
                tracing::warn!(store = %id, error = %e, "closing store failed");
                if first.is_ok() {
                    first = Err(e.into());
                }
            }
        }
        first
    }
}
