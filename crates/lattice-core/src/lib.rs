//! # lattice-core
//!
//! The types and rules of Lattice, with no I/O: no files, no sockets, no async runtime, no
//! database. Everything here is a pure function of its inputs, so it is cheap to test and
//! impossible to leave half-done.
//!
//! - [`ids`]: `AuthorId`, `Hash`, `StoreId` — fixed-size identifiers and their text forms.
//! - [`hlc`]: the hybrid logical clock (`tick` for local writes, `merge` for received entries).
//! - [`identity`]: a node's Ed25519 secret key; the file that holds it lives in `lattice-store`.
//! - [`entry`]: `EntryBuilder`, signing, and `VerifiedEntry` (decoded + signature checked).
//! - `batch`: the one signature rule, alone and in batches that fold the terms of each author.
//! - [`chain`]: per-author hash-chain validation (the roadmap's SigChain).
//! - [`op`]: `Op` (put, delete, counter add, set add and remove), `Kind`, and the op limits.
//! - [`heads`]: the per-key head set and the winner rule.
//! - [`merkle`]: the Merkle tree over a store's keys (its hashes), proofs and signed attestations.
//! - [`member`]: `MemberStatus`, a node's standing in a mesh (`invited | active | removed`).
//! - [`sync`]: `SyncState` and the diff that says which entries a peer is missing.
//! - [`proto`]: prost messages generated from `proto/lattice.proto`.
//!
//! Architecture invariant: this crate depends on no runtime, database or network crate
//! (`cargo tree -p lattice-core -e normal` shows no tokio, redb or iroh).

mod batch;
pub mod chain;
pub mod entry;
pub mod heads;
pub mod hlc;
pub mod identity;
pub mod ids;
pub mod member;
pub mod merkle;
pub mod op;
pub mod sync;

/// Messages generated from `proto/lattice.proto`.
#[allow(clippy::all, missing_docs)]
pub mod proto {
    include!(concat!(env!("OUT_DIR"), "/lattice.rs"));
}

pub use chain::{ChainError, ChainTip, NextCheck};
pub use entry::{EntryBuilder, EntryError, Op, VerifiedEntry};
pub use heads::{Head, visible, winner};
pub use hlc::{Clock, Hlc, ParseHlcError};
pub use identity::{Identity, IdentityError};
pub use ids::{AuthorId, Hash, IdError, StoreId};
pub use member::MemberStatus;
pub use merkle::{Attestation, MerklePath, ProofError};
pub use op::Kind;
pub use sync::{AuthorSyncState, MissingRange, SyncState};
