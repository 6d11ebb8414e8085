//! The two faces of a store: [`KvStore`] for applications, [`SyncStore`] for the network layer
//! (which exchanges entries and never writes values).

use std::future::Future;
use std::sync::Arc;

use lattice_core::{Attestation, AuthorId, EntryError, Head, Op, StoreId, SyncState, VerifiedEntry};
use tokio::sync::{broadcast, mpsc};

use crate::error::{IngestError, StoreError};
use crate::types::{
    Committed, GapInfo, IngestOutcome, KvPairs, KvValues, ProofBytes, Transaction, Value, WatchEvent, WriteReceipt,
};

/// Entries after decoding and signature verification, in order, each valid or why not.
pub type Verified = Vec<Result<VerifiedEntry, EntryError>>;

/// What applications may do with a store. The network layer never sees this trait.
pub trait KvStore: Send + Sync {
    /// The visible value as bytes (see [`Value::to_bytes`]: a counter's sum in decimal, a set's
    /// members one per line), or `None` if absent or deleted.
    fn get(&self, key: &[u8]) -> impl Future<Output = Result<Option<Vec<u8>>, StoreError>> + Send;
    /// The visible value, typed by the key's kind, or `None` if absent or deleted.
    fn value(&self, key: &[u8]) -> impl Future<Output = Result<Option<Value>, StoreError>> + Send;
    /// Every head of the key, winner first.
    fn get_heads(&self, key: &[u8]) -> impl Future<Output = Result<Vec<Head>, StoreError>> + Send;
    /// Durable once this returns.
    fn put(&self, key: Vec<u8>, value: Vec<u8>) -> impl Future<Output = Result<WriteReceipt, StoreError>> + Send;
    /// Writes a tombstone; `None` (and nothing written) if the key has no visible value.
    fn delete(&self, key: Vec<u8>) -> impl Future<Output = Result<Option<WriteReceipt>, StoreError>> + Send;
    /// Several operations as one entry, applied atomically.
    fn batch(&self, ops: Vec<Op>) -> impl Future<Output = Result<WriteReceipt, StoreError>> + Send {
        self.transact(Transaction::new(ops))
    }
    /// Operations as one entry, applied atomically, if every condition holds against the
    /// current winners; otherwise [`StoreError::PreconditionFailed`] and nothing is written.
    fn transact(&self, transaction: Transaction) -> impl Future<Output = Result<WriteReceipt, StoreError>> + Send;
    /// Adds `delta` to the counter at `key` (an absent or deleted key becomes a counter).
    /// Refused, writing nothing, if the key holds another kind
    /// ([`StoreError::WrongKind`]) or the sum would leave the i64 range
    /// ([`StoreError::CounterOverflow`]).
    fn incr(&self, key: Vec<u8>, delta: i64) -> impl Future<Output = Result<WriteReceipt, StoreError>> + Send {
        self.batch(vec![Op::CounterAdd { key, delta }])
    }
    /// Adds `members` to the set at `key`, as one entry (an absent or deleted key becomes a set).
    fn sadd(
        &self,
        key: Vec<u8>,
        members: Vec<Vec<u8>>,
    ) -> impl Future<Output = Result<WriteReceipt, StoreError>> + Send {
        self.batch(members.into_iter().map(|member| Op::SetAdd { key: key.clone(), member }).collect())
    }
    /// Removes `members` from the set at `key`, as one entry: the adds of them this node has
    /// seen are cancelled, concurrent ones survive.
    fn srem(
        &self,
        key: Vec<u8>,
        members: Vec<Vec<u8>>,
    ) -> impl Future<Output = Result<WriteReceipt, StoreError>> + Send {
        self.batch(members.into_iter().map(|member| Op::SetRemove { key: key.clone(), member }).collect())
    }
    /// Visible keys with `prefix`, in key order, strictly after `after`, at most `limit`, their
    /// values as bytes (see [`get`](Self::get)).
    fn list(
        &self,
        prefix: &[u8],
        after: Option<Vec<u8>>,
        limit: usize,
    ) -> impl Future<Output = Result<KvPairs, StoreError>> + Send;
    /// Visible keys with `prefix`, in key order, strictly after `after`, at most `limit`, with
    /// their typed values.
    fn list_values(
        &self,
        prefix: &[u8],
        after: Option<Vec<u8>>,
        limit: usize,
    ) -> impl Future<Output = Result<KvValues, StoreError>> + Send;
    /// The visible keys matching `pattern` now (values as bytes), and their changes from now on.
    fn watch(
        &self,
        pattern: &str,
    ) -> impl Future<Output = Result<(KvPairs, mpsc::Receiver<WatchEvent>), StoreError>> + Send;
}

/// What the network layer may do with a store: exchange entries, never write values.
pub trait SyncStore: Send + Sync + Clone + 'static {
    /// What [`missing_entries`](Self::missing_entries) streams: for a
    /// [`StoreHandle`](crate::StoreHandle), [`MissingEntries`](crate::MissingEntries), read
    /// straight from the logs.
    type Missing: EntrySource;
    /// The store this is.
    fn store_id(&self) -> StoreId;
    /// Verifies (signatures checked as one batch, off the actor thread) and ingests entries.
    /// One result per entry, in order.
    fn ingest_batch(
        &self,
        entries: Vec<Vec<u8>>,
    ) -> impl Future<Output = Result<Vec<Result<IngestOutcome, IngestError>>, StoreError>> + Send {
        async move { self.ingest_verified(self.verify(entries).await?).await }
    }
    /// The first half of [`ingest_batch`](Self::ingest_batch): decode and verify signatures
    /// (in parallel chunks, off the actor thread). A pipeline verifies batch k+1 while batch k
    /// is applied.
    fn verify(&self, entries: Vec<Vec<u8>>) -> impl Future<Output = Result<Verified, StoreError>> + Send;
    /// The second half: apply verified entries in one group commit. One result per entry.
    fn ingest_verified(
        &self,
        entries: Verified,
    ) -> impl Future<Output = Result<Vec<Result<IngestOutcome, IngestError>>, StoreError>> + Send;
    /// This node's signed attestation of the store's Merkle root, with the frontier it was
    /// taken at (read together).
    fn attestation(&self) -> impl Future<Output = Result<(Attestation, SyncState), StoreError>> + Send;
    /// Per author, the last entry held.
    fn sync_state(&self) -> impl Future<Output = Result<SyncState, StoreError>> + Send;
    /// What `peer` said it holds of this store, as a sync session opened (both sides of a
    /// session report it). A store ignores it (the default); the node watches it to learn
    /// whether a peer holds more of the node's own log than the node does.
    fn peer_state(&self, peer: AuthorId, state: &SyncState) -> impl Future<Output = ()> + Send {
        let _ = (peer, state);
        std::future::ready(())
    }
    /// The entries `remote` lacks, streamed (iterate on a blocking thread).
    fn missing_entries(&self, remote: SyncState) -> impl Future<Output = Result<Self::Missing, StoreError>> + Send;
    /// Gap events: an entry arrived whose predecessor or parent is missing.
    fn subscribe_gaps(&self) -> broadcast::Receiver<GapInfo>;
    /// Entries applied by each group commit (the local ones are what gossip broadcasts).
    fn subscribe_commits(&self) -> broadcast::Receiver<Arc<Committed>>;
    /// Entries waiting in the orphan buffer.
    fn orphan_count(&self) -> impl Future<Output = Result<u64, StoreError>> + Send;
    /// An equivocation proof from a peer: two SignedEntry bytes that must verify, be by one
    /// author, for this store, at one seq, and differ. From then on that author's entries from
    /// that seq on are refused here, as on every node that holds the proof (DESIGN.md §7.4); the
    /// store recomputes its state if it had applied some. Returns whether the proof was new
    /// (false if a fork of that author at that seq or earlier was known).
    fn ingest_proof(&self, first: Vec<u8>, second: Vec<u8>) -> impl Future<Output = Result<bool, IngestError>> + Send;
    /// The equivocation proofs held (at most one per author: its earliest fork), each as the
    /// two SignedEntry bytes, for peers (sync and gossip send them).
    fn proofs(&self) -> impl Future<Output = Result<Vec<ProofBytes>, StoreError>> + Send;
}

/// The entries a peer lacks, as a blocking iterator (run it on a blocking thread): each author's
/// in seq order, merged across authors in HLC order. How many it yields is known before the
/// first is read, because a sync announces it to the peer first.
pub trait EntrySource: Iterator<Item = Result<VerifiedEntry, StoreError>> + Send + 'static {
    /// How many entries it yields in all.
    fn total(&self) -> u64;
}
