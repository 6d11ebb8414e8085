//! `SyncStore` is implementable by something other than a `StoreHandle`: a store kept in memory
//! (entries only, no values), as a network simulator needs, syncs with real stores through the
//! trait alone.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use common::{Chain, fast_tempdir, open, snapshot, sync_into};
use lattice_core::chain::{ChainTip, NextCheck, check_next};
use lattice_core::{AuthorId, AuthorSyncState, Identity, StoreId, SyncState, VerifiedEntry};
use lattice_store::{
    Committed, EntrySource, GapInfo, IngestError, IngestOutcome, KvStore, ProofBytes, StoreError, SyncStore, Verified,
};
use tokio::sync::broadcast;

/// Each author's chain, in memory. An entry that does not extend its author's chain is reported
/// as a gap and dropped (a sync brings it again); DAG parents are not checked.
#[derive(Clone)]
struct MemoryStore {
    store_id: StoreId,
    chains: Arc<Mutex<BTreeMap<AuthorId, Vec<VerifiedEntry>>>>,
    gaps: broadcast::Sender<GapInfo>,
    commits: broadcast::Sender<Arc<Committed>>,
    proofs: Arc<Mutex<Vec<ProofBytes>>>,
    /// Signs its attestations (of an empty key tree: it holds entries, no values).
    identity: Arc<Identity>,
}

impl MemoryStore {
    fn new(store_id: StoreId) -> Self {
        MemoryStore {
            store_id,
            chains: Arc::default(),
            gaps: broadcast::channel(16).0,
            commits: broadcast::channel(16).0,
            proofs: Arc::default(),
            identity: Arc::new(Identity::generate()),
        }
    }

    fn ingest_one(&self, entry: VerifiedEntry) -> Result<IngestOutcome, IngestError> {
        let mut chains = self.chains.lock().unwrap();
        let author = entry.author();
        let chain = chains.get(&author).map(Vec::as_slice).unwrap_or_default();
        let tip = chain.last().map(|e| ChainTip { seq: e.seq(), hash: e.hash(), hlc: e.hlc() });
        let held = chain.iter().any(|e| e.hash() == entry.hash());
        let check = check_next(self.store_id, tip.as_ref(), &entry, held, |seq| {
            chain.get(seq.checked_sub(1)? as usize).map(|e| e.hash())
        })?;
        match check {
            NextCheck::Duplicate => Ok(IngestOutcome::Duplicate),
            NextCheck::Gap { have_seq, need_seq } => {
                let gap = GapInfo { author, have_seq, need_seq, missing_parent: None };
                let _ = self.gaps.send(gap);
                Ok(IngestOutcome::Orphaned(gap))
            }
            NextCheck::Next => {
                chains.entry(author).or_default().push(entry);
                Ok(IngestOutcome::Applied { released: 0 })
            }
        }
    }
}

/// The entries of a [`MemoryStore`] a peer lacks, copied out when asked for.
struct MemoryEntries {
    entries: std::vec::IntoIter<VerifiedEntry>,
    total: u64,
}

impl Iterator for MemoryEntries {
    type Item = Result<VerifiedEntry, StoreError>;
    fn next(&mut self) -> Option<Self::Item> {
        self.entries.next().map(Ok)
    }
}

impl EntrySource for MemoryEntries {
    fn total(&self) -> u64 {
        self.total
    }
}

impl SyncStore for MemoryStore {
    type Missing = MemoryEntries;

    fn store_id(&self) -> StoreId {
        self.store_id
    }

    async fn verify(&self, entries: Vec<Vec<u8>>) -> Result<Verified, StoreError> {
        Ok(VerifiedEntry::decode_batch(entries))
    }

    async fn ingest_verified(&self, entries: Verified) -> Result<Vec<Result<IngestOutcome, IngestError>>, StoreError> {
        let results: Vec<_> = entries.into_iter().map(|e| self.ingest_one(e?)).collect();
        let remote = results.iter().filter(|r| matches!(r, Ok(IngestOutcome::Applied { .. }))).count();
        if remote > 0 {
            let _ = self.commits.send(Arc::new(Committed { local: Vec::new(), remote, proofs: Vec::new() }));
        }
        Ok(results)
    }

    async fn attestation(&self) -> Result<(lattice_core::Attestation, SyncState), StoreError> {
        let state = self.sync_state().await?;
        let root = lattice_core::merkle::EMPTY;
        let attestation =
            lattice_core::Attestation::sign(&self.identity, self.store_id, root, &state, Default::default());
        Ok((attestation, state))
    }

    async fn sync_state(&self) -> Result<SyncState, StoreError> {
        let chains = self.chains.lock().unwrap();
        let authors = chains
            .iter()
            .filter_map(|(author, chain)| {
                chain.last().map(|last| (*author, AuthorSyncState { seq: last.seq(), hash: last.hash() }))
            })
            .collect();
        Ok(SyncState { authors })
    }

    async fn missing_entries(&self, remote: SyncState) -> Result<MemoryEntries, StoreError> {
        let ours = self.sync_state().await?;
        let chains = self.chains.lock().unwrap();
        let mut entries = Vec::new();
        for range in ours.missing_for(&remote) {
            let chain = &chains[&range.author];
            entries.extend_from_slice(&chain[range.after_seq as usize..range.to_seq as usize]);
        }
        entries.sort_by_key(|e| (e.hlc(), e.author()));
        Ok(MemoryEntries { total: entries.len() as u64, entries: entries.into_iter() })
    }

    fn subscribe_gaps(&self) -> broadcast::Receiver<GapInfo> {
        self.gaps.subscribe()
    }

    fn subscribe_commits(&self) -> broadcast::Receiver<Arc<Committed>> {
        self.commits.subscribe()
    }

    async fn orphan_count(&self) -> Result<u64, StoreError> {
        Ok(0)
    }

    /// A simulator relays proofs: kept once each, checked only for their signatures.
    async fn ingest_proof(&self, first: Vec<u8>, second: Vec<u8>) -> Result<bool, IngestError> {
        VerifiedEntry::decode(first.clone())?;
        VerifiedEntry::decode(second.clone())?;
        let mut proofs = self.proofs.lock().unwrap();
        let new = !proofs.contains(&(first.clone(), second.clone()));
        if new {
            proofs.push((first, second));
        }
        Ok(new)
    }

    async fn proofs(&self) -> Result<Vec<ProofBytes>, StoreError> {
        Ok(self.proofs.lock().unwrap().clone())
    }
}

#[tokio::test]
async fn an_in_memory_sync_store_syncs_with_store_handles_through_the_trait_alone() {
    let (dir_a, dir_b) = (fast_tempdir(), fast_tempdir());
    let sid = StoreId::new_random();
    let a = open(dir_a.path(), sid, &Identity::generate());
    for i in 0..20 {
        a.put(format!("k{i}").into_bytes(), b"v".to_vec()).await.unwrap();
    }
    let mut remote = Chain::new(sid);
    for i in 0..5 {
        remote.put(&format!("r{i}"), "w");
    }
    for result in a.ingest_batch(remote.bytes()).await.unwrap() {
        result.unwrap();
    }

    let memory = MemoryStore::new(sid);
    assert_eq!(sync_into(&a, &memory).await, 25);
    assert_eq!(memory.sync_state().await.unwrap(), a.sync_state().await.unwrap());
    assert_eq!(sync_into(&a, &memory).await, 0, "nothing is missing any more");
    assert_eq!(memory.missing_entries(SyncState::default()).await.unwrap().total(), 25);

    let b = open(dir_b.path(), sid, &Identity::generate());
    assert_eq!(sync_into(&memory, &b).await, 25);
    assert_eq!(snapshot(&b).await, snapshot(&a).await, "b got every entry of a through the memory store");

    // Only what the other side lacks is sent, in both directions.
    a.put(b"late".to_vec(), b"1".to_vec()).await.unwrap();
    assert_eq!(sync_into(&a, &memory).await, 1);
    assert_eq!(sync_into(&memory, &b).await, 1);
    assert_eq!(b.get(b"late").await.unwrap(), Some(b"1".to_vec()));
    a.close().await.unwrap();
    b.close().await.unwrap();
}

#[tokio::test]
async fn an_in_memory_sync_store_reports_a_gap_for_an_entry_ahead_of_its_chain() {
    let sid = StoreId::new_random();
    let mut chain = Chain::new(sid);
    chain.put("a", "1");
    chain.put("b", "2");
    let memory = MemoryStore::new(sid);
    let mut gaps = memory.subscribe_gaps();
    let second = chain.bytes().pop().unwrap();
    let outcome = memory.ingest_batch(vec![second]).await.unwrap().pop().unwrap().unwrap();
    let gap = GapInfo { author: chain.id.author(), have_seq: 0, need_seq: 1, missing_parent: None };
    assert_eq!(outcome, IngestOutcome::Orphaned(gap));
    assert_eq!(gaps.try_recv().unwrap(), gap);
    let outcomes = memory.ingest_batch(chain.bytes()).await.unwrap();
    assert!(matches!(outcomes[..], [Ok(IngestOutcome::Applied { .. }), Ok(IngestOutcome::Applied { .. })]));
}
