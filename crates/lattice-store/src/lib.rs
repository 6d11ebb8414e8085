//! # lattice-store
//!
//! One store on disk, and the actor that owns it. Layout of `stores/{uuid}/`:
//! `logs/{author_hex}.log` (the source of truth), `state.db` (a redb index derived from the
//! logs: heads per key, author tips, where each entry sits) and `orphans.db` (entries waiting
//! for a missing predecessor or DAG parent).
//!
//! Entry types: [`StoreHandle`] (open a store, then use it as a [`KvStore`] for applications
//! or a [`SyncStore`] for the network layer), [`StoreConfig`], [`Authorisation`] (who may write,
//! as the control plane says: members, and removed authors with their cut-offs), and
//! [`load_identity`] / [`save_identity`] for the node's `identity.key`.
//!
//! - `handle`: [`StoreHandle`], the cloneable async front, and its trait implementations;
//!   received entries are verified there, on blocking threads.
//! - `traits`: [`KvStore`], [`SyncStore`] and [`EntrySource`] (what a sync streams).
//! - `actor`: the thread that owns the store: drains queued commands into one group commit.
//! - `store`: the synchronous store, one file per concern: open, batch plumbing, commit,
//!   replay, local writes, ingest, orphans, apply, reads.
//! - `missing`: streaming the entries a peer lacks, and those newer than a timestamp
//!   ([`History`], a watch resuming), merged across authors in HLC order.
//! - `log`: the author log record format, append + fsync, torn-tail recovery.
//! - `tables`: every redb table and the codec of every row.
//! - `types`: the value types of the API (receipts, outcomes, gaps, status, watch events).
//! - `error`: [`StoreError`] and [`IngestError`].
//! - `keyfile`: the node's `identity.key` file (0600).
//! - [`durable`]: creating files and directories durably (the parent directory fsynced), for
//!   this crate and the node's data dir.
//!
//! Architecture invariant: this crate knows nothing of the network (no iroh, no axum). The logs
//! are the source of truth; an entry is acknowledged only after its log is fsynced.

mod actor;
pub mod durable;
mod error;
mod handle;
mod keyfile;
mod log;
mod missing;
mod store;
mod tables;
mod traits;
mod types;

pub use actor::WATCH_CAPACITY;
pub use error::{IngestError, StoreError};
pub use handle::StoreHandle;
pub use keyfile::{KeyFileError, load_identity, save_identity};
pub use log::LogError;
pub use missing::{Coverage, History, MissingEntries};
pub use traits::{EntrySource, KvStore, SyncStore, Verified};
pub use types::{
    Authorisation, Change, Committed, Condition, Cutoff, GapInfo, IngestOutcome, KeyProof, KvPairs, KvValues,
    ProofBytes, StoreConfig, StoreStatus, Transaction, Value, Version, WatchEvent, WriteReceipt,
};
