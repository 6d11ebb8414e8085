//! The store manager: one [`StoreHandle`] (one actor thread) per open store, opened lazily on
//! first use and closed together at shutdown.
//!
//! Each store has its own slot, so opening one store (which replays its logs, possibly for a
//! long time) holds up only the lookups of that store: every other lookup, e.g. each incoming
//! connection's, goes ahead.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use lattice_core::{Identity, StoreId};
use lattice_store::{StoreConfig, StoreHandle};

use crate::datadir::DataDir;
use crate::error::NodeError;

/// One store's place in the manager.
enum Slot {
    /// Not open (yet, or its open failed): the next lookup opens it.
    Empty,
    /// Open: lookups share this handle.
    Open(StoreHandle),
    /// Closed and out of the map: a lookup that waited on it looks in the map again.
    Gone,
}

type Cell = Arc<tokio::sync::Mutex<Slot>>;

/// Runs inside an open, before the store is opened (tests hold an open there).
#[cfg(test)]
type OpenHook = Arc<dyn Fn(StoreId) + Send + Sync>;

/// Opens stores on demand and keeps them open until [`close`](Self::close) or
/// [`close_all`](Self::close_all). Dropping the manager drops its handles; each store actor then
/// stops when its last handle clone is gone, but only `close` checkpoints cleanly.
pub(crate) struct StoreManager {
    dir: DataDir,
    identity: Identity,
    config: StoreConfig,
    // Invariant: at most one handle (one actor) per store id. A store's slot lock is held across
    // its open and its close, and a slot leaves the map only once its store is closed, so two
    // callers asking for the same store cannot open it twice. The map's own lock is never held
    // across an await.
    open: std::sync::Mutex<HashMap<StoreId, Cell>>,
    closed: AtomicBool,
    #[cfg(test)]
    before_open: std::sync::Mutex<Option<OpenHook>>,
}

impl StoreManager {
    pub(crate) fn new(dir: DataDir, identity: Identity, config: StoreConfig) -> Self {
        StoreManager {
            dir,
            identity,
            config,
            open: std::sync::Mutex::new(HashMap::new()),
            closed: AtomicBool::new(false),
            #[cfg(test)]
            before_open: std::sync::Mutex::new(None),
        }
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<StoreId, Cell>> {
        // Nothing panics while holding it, so a poisoned map is still consistent.
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The handle of store `id`, opening `stores/{uuid}` (creating it if new) on first use.
    pub(crate) async fn get(&self, id: StoreId) -> Result<StoreHandle, NodeError> {
        loop {
            let cell = {
                let mut map = self.map();
                if self.closed.load(Ordering::Acquire) {
                    return Err(NodeError::ShuttingDown);
                }
                map.entry(id).or_insert_with(|| Arc::new(tokio::sync::Mutex::new(Slot::Empty))).clone()
            };
            let mut slot = cell.lock().await;
            match &*slot {
                Slot::Open(handle) => return Ok(handle.clone()),
                // Closed while we waited: a later slot (if any) is in the map.
                Slot::Gone => continue,
                Slot::Empty => {}
            }
            // `close_all` may have drained the map after we took this slot.
            if self.closed.load(Ordering::Acquire) {
                return Err(NodeError::ShuttingDown);
            }
            let handle = self.open_store(id).await?;
            *slot = Slot::Open(handle.clone());
            return Ok(handle);
        }
    }

    async fn open_store(&self, id: StoreId) -> Result<StoreHandle, NodeError> {
        let path = self.dir.store(id);
        let identity = self.identity.clone();
        let config = self.config.clone();
        #[cfg(test)]
        let hook = self.before_open.lock().unwrap_or_else(|p| p.into_inner()).clone();
        tracing::debug!(store = %id, path = %path.display(), "opening store");
        tokio::task::spawn_blocking(move || {
            #[cfg(test)]
            if let Some(hook) = hook {
                hook(id);
            }
            StoreHandle::open(&path, id, identity, config)
        })
        .await
        .map_err(|e| NodeError::Corrupt(format!("opening store {id} panicked: {e}")))?
        .map_err(NodeError::from)
    }

    /// Closes store `id` if it is open (its actor checkpoints and stops).
    pub(crate) async fn close(&self, id: StoreId) -> Result<(), NodeError> {
        let Some(cell) = self.map().get(&id).cloned() else { return Ok(()) };
        let mut slot = cell.lock().await;
        let result = close_slot(&mut slot).await;
        let mut map = self.map();
        if map.get(&id).is_some_and(|c| Arc::ptr_eq(c, &cell)) {
            map.remove(&id);
        }
        result
    }

    /// Closes every open store and refuses to open more. Returns the first error, after trying all.
    pub(crate) async fn close_all(&self) -> Result<(), NodeError> {
        let cells: Vec<(StoreId, Cell)> = {
            let mut map = self.map();
            self.closed.store(true, Ordering::Release);
            map.drain().collect()
        };
        let mut first = Ok(());
        for (id, cell) in cells {
            // Waits for an open in progress, then closes what it opened.
            let mut slot = cell.lock().await;
            if let Err(e) = close_slot(&mut slot).await {
                tracing::warn!(store = %id, error = %e, "closing store failed");
                if first.is_ok() {
                    first = Err(e);
                }
            }
        }
        first
    }
}

/// Marks the slot gone and closes its store, if it was open.
async fn close_slot(slot: &mut Slot) -> Result<(), NodeError> {
    match std::mem::replace(slot, Slot::Gone) {
        Slot::Open(handle) => Ok(handle.close().await?),
        Slot::Empty | Slot::Gone => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;
    use std::sync::mpsc;

    use lattice_testkit::DEADLINE;

    use super::*;

    /// A manager whose open of `held` stops (on its blocking thread) until `release` is sent;
    /// `entered` tells when it has stopped there. Counts the opens of `held`.
    struct Held {
        manager: Arc<StoreManager>,
        entered: mpsc::Receiver<()>,
        release: mpsc::Sender<()>,
        opens: Arc<AtomicUsize>,
        _tmp: tempfile::TempDir,
    }

    fn holding(held: StoreId) -> Held {
        let tmp = tempfile::tempdir().unwrap();
        let dir = DataDir::new(tmp.path()).unwrap();
        let manager = Arc::new(StoreManager::new(dir, Identity::generate(), StoreConfig::default()));
        let (entered_tx, entered) = mpsc::channel();
        let (release, release_rx) = mpsc::channel::<()>();
        let release_rx = std::sync::Mutex::new(release_rx);
        let opens = Arc::new(AtomicUsize::new(0));
        let counted = opens.clone();
        let hook: OpenHook = Arc::new(move |id| {
            if id == held {
                counted.fetch_add(1, Ordering::SeqCst);
                let _ = entered_tx.send(());
                let _ = release_rx.lock().unwrap().recv_timeout(DEADLINE);
            }
        });
        *manager.before_open.lock().unwrap() = Some(hook);
        Held { manager, entered, release, opens, _tmp: tmp }
    }

    async fn wait_entered(rx: mpsc::Receiver<()>) -> mpsc::Receiver<()> {
        tokio::task::spawn_blocking(move || {
            rx.recv_timeout(DEADLINE).expect("the held open never started");
            rx
        })
        .await
        .unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_lookup_does_not_wait_for_another_stores_open() {
        let (a, b) = (StoreId::new_random(), StoreId::new_random());
        let Held { manager, entered, release, opens, _tmp } = holding(b);
        let opening_b = tokio::spawn({
            let m = manager.clone();
            async move { m.get(b).await.map(|h| h.store_id()) }
        });
        let _entered = wait_entered(entered).await;
        // B's open is stopped in the middle: A opens anyway, and an open A is found again.
        let got_a = tokio::time::timeout(DEADLINE, manager.get(a)).await.expect("A's lookup waited for B's open");
        assert_eq!(got_a.unwrap().store_id(), a);
        assert_eq!(tokio::time::timeout(DEADLINE, manager.get(a)).await.unwrap().unwrap().store_id(), a);
        // A second lookup of B waits for the open in progress and shares its handle.
        let second_b = tokio::spawn({
            let m = manager.clone();
            async move { m.get(b).await.map(|h| h.store_id()) }
        });
        assert!(!opening_b.is_finished(), "B's open is still held");
        release.send(()).unwrap();
        assert_eq!(opening_b.await.unwrap().unwrap(), b);
        assert_eq!(second_b.await.unwrap().unwrap(), b);
        assert_eq!(opens.load(Ordering::SeqCst), 1, "B was opened once");
        manager.close_all().await.unwrap();
        assert!(matches!(manager.get(a).await, Err(NodeError::ShuttingDown)));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn close_all_waits_for_an_open_in_progress_and_closes_it() {
        let b = StoreId::new_random();
        let Held { manager, entered, release, opens, _tmp } = holding(b);
        let opening_b = tokio::spawn({
            let m = manager.clone();
            async move { m.get(b).await }
        });
        let _entered = wait_entered(entered).await;
        let closing = tokio::spawn({
            let m = manager.clone();
            async move { m.close_all().await }
        });
        release.send(()).unwrap();
        closing.await.unwrap().unwrap();
        // The store B's lookup opened was closed by close_all: its actor refuses work.
        let handle = opening_b.await.unwrap().unwrap();
        assert!(lattice_store::KvStore::get(&handle, b"k").await.is_err());
        assert_eq!(opens.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn close_then_get_reopens_once() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = DataDir::new(tmp.path()).unwrap();
        let manager = StoreManager::new(dir, Identity::generate(), StoreConfig::default());
        let id = StoreId::new_random();
        let first = manager.get(id).await.unwrap();
        manager.close(id).await.unwrap();
        assert!(lattice_store::KvStore::get(&first, b"k").await.is_err(), "closed");
        let again = manager.get(id).await.unwrap();
        assert!(lattice_store::KvStore::get(&again, b"k").await.unwrap().is_none());
        manager.close_all().await.unwrap();
    }
}
