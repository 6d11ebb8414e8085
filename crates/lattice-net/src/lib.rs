//! # lattice-net
//!
//! Lattice over iroh: the join and sync protocol (`lattice/sync/1`), gossip per store, and the
//! scheduler that heals the mesh (gap filling, reconnects, anti-entropy). The endpoint's secret
//! key is the node identity, so node id = author id.
//!
//! Entry types: [`LatticeServer`] (bind, put stores on the mesh, sync, shut down), which the
//! node drives through [`NodeContext`]; [`PeerConnection`] (join, sync) and [`NetConfig`].
//!
//! - `context`: [`NodeContext`] (what the network needs from the node) and [`PeerEvent`].
//! - `admission`: who may connect, join, sync or gossip — one pure function of membership and faults.
//! - `gate`: the endpoint hook that admits each connection at its handshake and can close them all.
//! - `server`: [`LatticeServer`], the facade: binds behind the `gate`, routes ALPNs, runs the `mesh`.
//! - `accept`: the `lattice/sync/1` handler, asking `admission` per stream.
//! - `connection`: [`PeerConnection`], the dialling side of `lattice/sync/1`.
//! - `mesh`: gossip per store and the sync scheduler (gap filling, reconnects, anti-entropy).
//! - `policy`: backoff, peer choice, staleness — pure functions of time and a random draw.
//! - `sync`: one bidirectional sync session for one store (streamed, bounded memory).
//! - `framing`: length-delimited `PeerMessage` frames on a QUIC stream, bounded in size.
//! - `endpoint`: binding (direct addresses by default), [`PeerAddr`] (`NODE_ID@HOST:PORT`).
//! - `faults`: partitions and gossip loss for tests (`fault-injection` feature).
//! - `test_utils`: an in-process node for tests and benchmarks (`test-utils` feature).
//!
//! Architecture invariant: this crate sees stores only through `SyncStore`: it can exchange
//! entries but cannot write values. It knows nothing of the node's data dir, HTTP or the CLI.

mod accept;
mod admission;
mod connection;
mod context;
mod endpoint;
mod error;
mod faults;
mod framing;
mod gate;
mod mesh;
mod policy;
mod server;
mod sync;
#[cfg(feature = "test-utils")]
pub mod test_utils;

pub use connection::{Joined, PeerConnection};
pub use context::{NodeContext, PeerEvent};
pub use endpoint::{Discovery, NetConfig, PeerAddr};
pub use error::NetError;
pub use faults::Faults;
pub use mesh::StoreSync;
pub use policy::{MeshConfig, PeerHealth};
pub use server::LatticeServer;
pub use sync::{SyncConfig, SyncOutcome, SyncProgress};
