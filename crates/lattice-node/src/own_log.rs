//! Own-log catch-up: a node never signs a new entry on a tip older than its own chain.
//!
//! A data dir restored from a backup (or whose newest log records were lost) holds an old tip
//! of the node's own chain, while peers may hold the higher seqs. Writing there would sign a
//! second entry at a seq peers already hold: equivocation (DESIGN.md §7.4), which freezes the
//! node's own key in that store. So, per store, [`OwnLogs`] tracks what the node knows of its
//! own log as its peers hold it ([`Frontier`]), and the node's write path asks it first:
//!
//! - The [`Network`](crate::Network) arms every store it puts on the mesh (when the node has
//!   peers): the frontier is *unconfirmed* until a peer's sync state says how much of our log it
//!   holds. The first sync of each store (the mesh runs one as it opens the store) is the
//!   question, and, if we are behind, the catch-up itself: it streams our entries back.
//! - While unconfirmed, a write waits up to [`CONFIRM_WAIT`] from arming; if no peer answered
//!   by then, it proceeds (with a warning): writes never hang on unreachable peers.
//! - While a peer holds more of our log than we do, writes are refused with
//!   [`NodeError::Behind`] and a catch-up sync is requested until we hold it all.
//! - An entry of our own author that arrives from outside (sync or gossip) means we were behind
//!   too: the store is re-checked (or is behind, if the entry could not be applied yet).
//!
//! [`NodeStore`] is the store as the network layer sees it: the store's handle, reporting to
//! [`OwnLogs`] what peers say they hold and which of our own entries they send.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lattice_core::{Attestation, AuthorId, StoreId, SyncState};
use lattice_store::{
    Committed, GapInfo, IngestError, IngestOutcome, MissingEntries, ProofBytes, StoreError, StoreHandle, SyncStore,
    Verified,
};
use tokio::sync::{Notify, broadcast, watch};
use tokio::time::Instant;

use crate::error::NodeError;

/// How long after a store is armed its first write may wait for a peer to confirm the node's
/// own frontier before it proceeds unconfirmed.
pub(crate) const CONFIRM_WAIT: Duration = Duration::from_secs(5);

/// What the node knows of its own log in one store, as its peers hold it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Frontier {
    /// Armed at `since`; no peer has said yet how much of our log it holds.
    Unconfirmed {
        /// When the store was armed (the wait for a confirmation runs from here).
        since: Instant,
    },
    /// A peer held no more of our log than we do.
    Confirmed,
    /// No peer answered within [`CONFIRM_WAIT`]: writes proceed (a node that hears from no
    /// peer cannot know), and a later answer can still find us behind.
    Unverified,
    /// A peer (`None`: one whose entry came by gossip) holds our log up to `theirs`; we hold
    /// it up to `ours`.
    Behind {
        /// Who said so, if known.
        peer: Option<AuthorId>,
        /// Our own tip in the store.
        ours: u64,
        /// The highest seq of ours a peer is known to hold.
        theirs: u64,
    },
}

/// Per store, the node's own frontier as peers hold it; stores not armed are writable.
pub(crate) struct OwnLogs {
    stores: Mutex<HashMap<StoreId, Frontier>>,
    /// Bumped on every change, so waiting writes look again.
    changed: watch::Sender<u64>,
    /// Woken when a store needs a catch-up sync (the network's catch-up task waits on it).
    wanted: Notify,
    wait: Duration,
}

impl Default for OwnLogs {
    fn default() -> Self {
        OwnLogs::new(CONFIRM_WAIT)
    }
}

impl OwnLogs {
    pub(crate) fn new(wait: Duration) -> Self {
        OwnLogs { stores: Mutex::default(), changed: watch::Sender::new(0), wanted: Notify::new(), wait }
    }

    fn update<R>(&self, f: impl FnOnce(&mut HashMap<StoreId, Frontier>) -> R) -> R {
        let mut stores = self.stores.lock().unwrap_or_else(|p| p.into_inner());
        let out = f(&mut stores);
        drop(stores);
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
        out
    }

    /// The frontier of `store` now (an unconfirmed one past its wait reads as unverified).
    #[cfg(test)]
    pub(crate) fn frontier(&self, store: StoreId) -> Option<Frontier> {
        let stores = self.stores.lock().unwrap_or_else(|p| p.into_inner());
        stores.get(&store).map(|f| self.aged(*f, Instant::now()))
    }

    fn aged(&self, f: Frontier, now: Instant) -> Frontier {
        match f {
            Frontier::Unconfirmed { since } if now >= since + self.wait => Frontier::Unverified,
            f => f,
        }
    }

    /// Starts checking `store` (unconfirmed until a peer answers), unless it is tracked already.
    pub(crate) fn arm(&self, store: StoreId) {
        self.update(|s| {
            s.entry(store).or_insert(Frontier::Unconfirmed { since: Instant::now() });
        });
    }

    /// Stops checking every store (the network stopped: nobody can answer).
    pub(crate) fn disarm_all(&self) {
        self.update(|s| s.clear());
    }

    /// A peer's sync state said it holds our log in `store` up to `theirs`; we hold `ours`.
    pub(crate) fn peer_said(&self, store: StoreId, peer: AuthorId, ours: u64, theirs: u64) {
        let behind = self.update(|s| {
            let now = s.get(&store).copied();
            let next = match now {
                _ if theirs > ours => {
                    let known = match now {
                        Some(Frontier::Behind { theirs: t, .. }) if t > theirs => t,
                        _ => theirs,
                    };
                    Some(Frontier::Behind { peer: Some(peer), ours, theirs: known })
                }
                Some(Frontier::Behind { peer, theirs, .. }) if theirs > ours => {
                    Some(Frontier::Behind { peer, ours, theirs })
                }
                // Untracked stays untracked: the network did not arm it (no peers then).
                None => None,
                Some(_) => Some(Frontier::Confirmed),
            };
            if let Some(next) = next {
                s.insert(store, next);
            }
            matches!(next, Some(Frontier::Behind { .. }))
        });
        if behind {
            tracing::info!(%store, %peer, ours, theirs, "a peer holds more of this node's own log; catching up");
            self.wanted.notify_one();
        }
    }

    /// Entries of our own author arrived from outside and were taken (applied or parked):
    /// the highest is `seen`; our tip is now `ours`. A peer held entries of ours we lacked, so
    /// we were behind: behind still if some could not be applied, else checked again.
    pub(crate) fn own_arrived(&self, store: StoreId, ours: u64, seen: u64) {
        self.update(|s| {
            let next = match s.get(&store).copied() {
                Some(Frontier::Behind { peer, theirs, .. }) if theirs.max(seen) > ours => {
                    Frontier::Behind { peer, ours, theirs: theirs.max(seen) }
                }
                _ if seen > ours => Frontier::Behind { peer: None, ours, theirs: seen },
                // The catch-up a peer's state asked for has brought everything it holds.
                Some(Frontier::Behind { .. }) => Frontier::Confirmed,
                _ => Frontier::Unconfirmed { since: Instant::now() },
            };
            s.insert(store, next);
        });
        tracing::info!(%store, ours, seen, "entries of this node's own log arrived from a peer; checking its frontier");
        self.wanted.notify_one();
    }

    /// Stores that need a catch-up sync: behind, or unconfirmed within their wait.
    pub(crate) fn pending(&self) -> Vec<StoreId> {
        let now = Instant::now();
        let stores = self.stores.lock().unwrap_or_else(|p| p.into_inner());
        stores
            .iter()
            .filter(|(_, f)| matches!(self.aged(**f, now), Frontier::Behind { .. } | Frontier::Unconfirmed { .. }))
            .map(|(id, _)| *id)
            .collect()
    }

    /// Resolves when some store needs a catch-up sync.
    pub(crate) async fn wanted(&self) {
        self.wanted.notified().await
    }

    /// Whether a local write in `store` (shown as `name`) may go ahead: waits while the
    /// frontier is unconfirmed (at most until its wait ends), refuses while behind.
    pub(crate) async fn ready(&self, store: StoreId, name: &str) -> Result<(), NodeError> {
        let mut changes = self.changed.subscribe();
        loop {
            let Some(frontier) = self.stores.lock().unwrap_or_else(|p| p.into_inner()).get(&store).copied() else {
                return Ok(());
            };
            match frontier {
                Frontier::Confirmed | Frontier::Unverified => return Ok(()),
                Frontier::Behind { peer, ours, theirs } => {
                    self.wanted.notify_one();
                    return Err(NodeError::Behind { store: name.to_string(), peer, ours, theirs });
                }
                Frontier::Unconfirmed { since } => {
                    let deadline = since + self.wait;
                    let changed = tokio::time::timeout_at(deadline, changes.changed()).await;
                    if changed.is_err() || Instant::now() >= deadline {
                        self.expire(store, since, name);
                    }
                }
            }
        }
    }

    /// Marks `store` unverified if it is still unconfirmed since `since`.
    fn expire(&self, store: StoreId, since: Instant, name: &str) {
        let expired = self.update(|s| match s.get_mut(&store) {
            Some(f) if *f == (Frontier::Unconfirmed { since }) => {
                *f = Frontier::Unverified;
                true
            }
            _ => false,
        });
        if expired {
            tracing::warn!(
                store = name,
                secs = self.wait.as_secs(),
                "no peer confirmed this node's own log in the store in time; writing without that check"
            );
        }
    }
}

/// A store as the network layer sees it: its handle, plus what peers say they hold of this
/// node's own log and which of its entries they send, reported to [`OwnLogs`].
#[derive(Clone)]
pub struct NodeStore {
    inner: StoreHandle,
    own: Arc<OwnLogs>,
}

impl NodeStore {
    pub(crate) fn new(inner: StoreHandle, own: Arc<OwnLogs>) -> Self {
        NodeStore { inner, own }
    }

    async fn own_tip(&self) -> Result<u64, StoreError> {
        let me = self.inner.author();
        Ok(self.inner.sync_state().await?.authors.get(&me).map_or(0, |t| t.seq))
    }
}

impl SyncStore for NodeStore {
    type Missing = MissingEntries;

    fn store_id(&self) -> StoreId {
        self.inner.store_id()
    }

    async fn verify(&self, entries: Vec<Vec<u8>>) -> Result<Verified, StoreError> {
        self.inner.verify(entries).await
    }

    async fn ingest_verified(&self, entries: Verified) -> Result<Vec<Result<IngestOutcome, IngestError>>, StoreError> {
        let me = self.inner.author();
        let own: Vec<(usize, u64)> = entries
            .iter()
            .enumerate()
            .filter_map(|(i, e)| e.as_ref().ok().filter(|e| e.author() == me).map(|e| (i, e.seq())))
            .collect();
        let results = self.inner.ingest_verified(entries).await?;
        let seen = own
            .iter()
            .filter(|(i, _)| {
                matches!(results.get(*i), Some(Ok(IngestOutcome::Applied { .. } | IngestOutcome::Orphaned(_))))
            })
            .map(|(_, seq)| *seq)
            .max();
        if let Some(seen) = seen {
            self.own.own_arrived(self.store_id(), self.own_tip().await?, seen);
        }
        Ok(results)
    }

    async fn attestation(&self) -> Result<(Attestation, SyncState), StoreError> {
        self.inner.attestation().await
    }

    async fn sync_state(&self) -> Result<SyncState, StoreError> {
        self.inner.sync_state().await
    }

    async fn peer_state(&self, peer: AuthorId, state: &SyncState) {
        let theirs = state.authors.get(&self.inner.author()).map_or(0, |t| t.seq);
        match self.own_tip().await {
            Ok(ours) => self.own.peer_said(self.store_id(), peer, ours, theirs),
            Err(e) => tracing::warn!(error = %e, "cannot read this node's own tip"),
        }
    }

    async fn missing_entries(&self, remote: SyncState) -> Result<MissingEntries, StoreError> {
        self.inner.missing_entries(remote).await
    }

    fn subscribe_gaps(&self) -> broadcast::Receiver<GapInfo> {
        self.inner.subscribe_gaps()
    }

    fn subscribe_commits(&self) -> broadcast::Receiver<Arc<Committed>> {
        self.inner.subscribe_commits()
    }

    async fn orphan_count(&self) -> Result<u64, StoreError> {
        self.inner.orphan_count().await
    }

    async fn ingest_proof(&self, first: Vec<u8>, second: Vec<u8>) -> Result<bool, IngestError> {
        self.inner.ingest_proof(first, second).await
    }

    async fn proofs(&self) -> Result<Vec<ProofBytes>, StoreError> {
        self.inner.proofs().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> StoreId {
        StoreId::from_bytes(&[7; 16]).unwrap()
    }

    const PEER: AuthorId = AuthorId([9; 32]);

    fn behind(own: &OwnLogs) -> Option<(u64, u64)> {
        match own.frontier(store()) {
            Some(Frontier::Behind { ours, theirs, .. }) => Some((ours, theirs)),
            _ => None,
        }
    }

    #[tokio::test]
    async fn a_peer_holding_more_makes_the_store_behind_until_its_entries_arrive() {
        let own = OwnLogs::default();
        own.arm(store());
        own.peer_said(store(), PEER, 3, 5);
        assert_eq!(behind(&own), Some((3, 5)));
        let err = own.ready(store(), "s").await.unwrap_err();
        assert!(matches!(err, NodeError::Behind { peer: Some(PEER), ours: 3, theirs: 5, .. }), "{err}");
        assert_eq!(own.pending(), vec![store()]);
        // A peer that holds less does not lift it; our entries coming back do, once all are in.
        own.peer_said(store(), AuthorId([1; 32]), 3, 2);
        assert_eq!(behind(&own), Some((3, 5)));
        own.own_arrived(store(), 4, 4);
        assert_eq!(behind(&own), Some((4, 5)));
        own.own_arrived(store(), 5, 5);
        assert_eq!(own.frontier(store()), Some(Frontier::Confirmed));
        own.ready(store(), "s").await.unwrap();
        assert!(own.pending().is_empty());
    }

    #[tokio::test]
    async fn an_own_entry_from_outside_makes_a_confirmed_store_check_again() {
        let own = OwnLogs::default();
        own.arm(store());
        own.peer_said(store(), PEER, 3, 3);
        assert_eq!(own.frontier(store()), Some(Frontier::Confirmed));
        // Gossip brought seq 6 while we hold 3: parked as an orphan, so we are behind.
        own.own_arrived(store(), 3, 6);
        assert!(matches!(own.frontier(store()), Some(Frontier::Behind { peer: None, ours: 3, theirs: 6 })));
        own.own_arrived(store(), 6, 6);
        assert_eq!(own.frontier(store()), Some(Frontier::Confirmed));
        // Applied at once (seq 7 on our 6): there may be more, so unconfirmed until a peer says.
        own.own_arrived(store(), 7, 7);
        assert!(matches!(own.frontier(store()), Some(Frontier::Unconfirmed { .. })));
        own.peer_said(store(), PEER, 7, 7);
        assert_eq!(own.frontier(store()), Some(Frontier::Confirmed));
    }

    #[tokio::test]
    async fn untracked_stores_are_writable_and_an_unanswered_wait_is_bounded() {
        let own = OwnLogs::new(Duration::from_millis(50));
        own.ready(store(), "s").await.unwrap();
        // A peer that holds as much as we do leaves an unarmed store alone.
        own.peer_said(store(), PEER, 2, 2);
        assert_eq!(own.frontier(store()), None);
        own.arm(store());
        // Nobody answers: the write proceeds once the wait is over.
        own.ready(store(), "s").await.unwrap();
        assert_eq!(own.frontier(store()), Some(Frontier::Unverified));
        assert!(own.pending().is_empty());
        // A later answer can still find us behind.
        own.peer_said(store(), PEER, 2, 4);
        assert_eq!(behind(&own), Some((2, 4)));
        own.disarm_all();
        own.ready(store(), "s").await.unwrap();
    }

    #[tokio::test]
    async fn a_waiting_write_goes_ahead_as_soon_as_a_peer_confirms() {
        let own = Arc::new(OwnLogs::new(Duration::from_secs(600)));
        own.arm(store());
        let waiting = tokio::spawn({
            let own = own.clone();
            async move { own.ready(store(), "s").await }
        });
        // Confirm only once the write is waiting, so the wake-up is what lets it through.
        lattice_testkit::eventually("the write to wait", lattice_testkit::DEADLINE, || {
            let waiting = own.changed.receiver_count() == 1;
            async move { waiting }
        })
        .await;
        assert!(!waiting.is_finished());
        own.peer_said(store(), PEER, 1, 0);
        waiting.await.unwrap().unwrap();
    }
}
