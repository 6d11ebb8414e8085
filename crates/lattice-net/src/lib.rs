//! # lattice-net
//!
//! Lattice over iroh. The endpoint's secret key is the node identity, so node id = author id.
//!
//! - [`endpoint`]: binding (direct addresses by default), [`PeerAddr`] (`NODE_ID@HOST:PORT`).
//! - [`framing`]: length-delimited `PeerMessage` frames on a QUIC stream, bounded in size.
//! - [`sync`]: one bidirectional sync session for one store (streamed, bounded memory).
//! - [`mesh`]: gossip per store, the sync scheduler (gap filling, reconnects, anti-entropy).
//! - [`policy`]: backoff, peer choice, staleness — pure functions of time and a random draw.
//! - [`faults`]: partitions and gossip loss for tests (`fault-injection` feature).
//! - [`server`]: [`LatticeServer`] (router + `lattice/sync/1` handler), [`NodeContext`] (what
//!   the network needs from the node), [`PeerConnection`] (join, sync).
//!
//! Architecture invariant: this crate sees stores only through `SyncStore`: it can exchange
//! entries but cannot write values.

pub mod endpoint;
pub mod error;
pub mod faults;
pub mod framing;
pub mod mesh;
pub mod policy;
pub mod server;
pub mod sync;

pub use endpoint::{Discovery, NetConfig, PeerAddr};
pub use error::NetError;
pub use faults::Faults;
pub use policy::{MeshConfig, PeerHealth};
pub use server::{LatticeServer, NodeContext, PeerConnection, PeerEvent, SYNC_ALPN};
pub use sync::{SyncConfig, SyncOutcome, SyncProgress};
