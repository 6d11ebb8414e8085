//! # lattice-store
//!
//! One store on disk, and the actor that owns it. Layout of `stores/{uuid}/`:
//! `logs/{author_hex}.log` (the source of truth), `state.db` (a redb index derived from the
//! logs: heads per key, author tips, where each entry sits) and `orphans.db` (entries waiting
//! for a missing predecessor or DAG parent).
//!
//! - [`actor`]: [`StoreHandle`] (async, cloneable) and the group-commit actor thread; the
//!   [`KvStore`] trait (applications) and the [`SyncStore`] trait (the network layer).
//! - `store`: the synchronous store: open + replay, local writes, ingest, orphans, reads.
//! - `missing`: streaming the entries a peer lacks, merged across authors in HLC order.
//! - [`log`]: the author log record format, append + fsync, torn-tail recovery.
//! - [`tables`]: every redb table and its byte layout.
//! - [`keyfile`]: the node's `identity.key` file.
//!
//! Architecture invariant: this crate knows nothing of the network (no iroh, no axum). The logs
//! are the source of truth; an entry is acknowledged only after its log is fsynced.

mod actor;
pub mod error;
mod handle;
pub mod keyfile;
pub mod log;
mod missing;
mod store;
pub mod tables;
mod traits;
mod types;

pub use actor::WATCH_CAPACITY;
pub use error::{IngestError, StoreError};
pub use handle::StoreHandle;
pub use missing::MissingEntries;
pub use traits::{EntrySource, KvStore, SyncStore, Verified};
pub use types::{Committed, GapInfo, IngestOutcome, KvPairs, StoreConfig, StoreStatus, WatchEvent, WriteReceipt};
