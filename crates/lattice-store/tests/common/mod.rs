#![allow(dead_code)]
//! Helpers shared by the store's integration tests.

use std::path::Path;

use lattice_core::{Identity, StoreId, SyncState, VerifiedEntry};
use lattice_store::{StoreConfig, StoreHandle, SyncStore};

pub fn open(dir: &Path, store_id: StoreId, id: &Identity) -> StoreHandle {
    StoreHandle::open(dir, store_id, id.clone(), StoreConfig::default()).unwrap()
}

/// Every entry `from` holds, in the order a sync would send them.
pub async fn all_entries(from: &StoreHandle) -> Vec<VerifiedEntry> {
    let missing = from.missing_entries(SyncState::default()).await.unwrap();
    tokio::task::spawn_blocking(move || missing.map(|e| e.unwrap()).collect()).await.unwrap()
}

/// Sends everything `from` has that `to` lacks, as a sync would.
pub async fn sync_into(from: &StoreHandle, to: &StoreHandle) -> usize {
    let state = to.sync_state().await.unwrap();
    let missing = from.missing_entries(state).await.unwrap();
    let entries: Vec<Vec<u8>> =
        tokio::task::spawn_blocking(move || missing.map(|e| e.unwrap().into_bytes()).collect()).await.unwrap();
    let n = entries.len();
    for r in to.ingest_batch(entries).await.unwrap() {
        r.unwrap();
    }
    n
}
