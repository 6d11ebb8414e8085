//! The node as the network layer sees it: [`NodeContext`] (what the network asks of the node)
//! and [`PeerEvent`] (what it tells the node about peers).

use std::future::Future;
use std::net::SocketAddr;

use lattice_core::{AuthorId, MemberStatus, StoreId};
use lattice_store::SyncStore;

use crate::sync::SyncOutcome;

/// What happened with a peer, reported to the node for `peers` (last seen, last sync).
#[derive(Clone, Debug)]
pub enum PeerEvent {
    /// A connection with the peer is up (`addr`: the address we dialled, if we dialled).
    Connected {
        /// The peer.
        peer: AuthorId,
        /// The address we dialled; `None` when the peer dialled us.
        addr: Option<SocketAddr>,
    },
    /// We refused something the peer asked for.
    Refused {
        /// The peer.
        peer: AuthorId,
        /// The refusal as sent to the peer.
        reason: String,
    },
    /// A sync session with the peer completed.
    Synced {
        /// The peer.
        peer: AuthorId,
        /// The store synced.
        store: StoreId,
        /// What the session did.
        outcome: SyncOutcome,
    },
    /// A sync session with the peer failed.
    SyncFailed {
        /// The peer.
        peer: AuthorId,
        /// The store of the session.
        store: StoreId,
        /// Why it failed.
        error: String,
    },
}

/// What the network layer needs from the node. The network sees stores only as `SyncStore`.
pub trait NodeContext: Send + Sync + 'static {
    /// The node's stores, as the network may use them.
    type Store: SyncStore;
    /// The mesh's root store id (the answer to a join), if this node has one.
    fn root_store_id(&self) -> Option<StoreId>;
    /// The mesh's genesis admin and the nonce the root store id derives from
    /// (`StoreId::root_of`), sent to joiners so they can check it (default: none to send).
    fn mesh_binding(&self) -> Option<(AuthorId, [u8; 16])> {
        None
    }
    /// The peer's status in the root store (`None`: the mesh does not know it).
    fn peer_status(&self, peer: AuthorId) -> impl Future<Output = Option<MemberStatus>> + Send;
    /// An active local store by id.
    fn store(&self, id: StoreId) -> impl Future<Output = Option<Self::Store>> + Send;
    /// Something happened with a peer (default: nothing to record).
    fn peer_event(&self, _event: PeerEvent) {}
}
