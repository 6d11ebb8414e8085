//! The dialling side of `lattice/sync/1`: a [`PeerConnection`] asks to join a mesh, or opens one
//! sync session per store, each on its own stream.

use iroh::endpoint::Connection;
use lattice_core::proto::{self, peer_message::Message as Msg};
use lattice_core::{AuthorId, StoreId};
use lattice_store::SyncStore;
use tokio::sync::watch;

use crate::endpoint::NetConfig;
use crate::error::NetError;
use crate::framing::{self, FrameReceiver, FrameSender};
use crate::sync::{self, SyncOutcome, SyncProgress};

/// ALPN of the join and sync protocol.
pub(crate) const SYNC_ALPN: &[u8] = b"lattice/sync/1";

/// An open connection to a peer on `lattice/sync/1`.
pub struct PeerConnection {
    conn: Connection,
    peer: AuthorId,
    config: NetConfig,
}

impl PeerConnection {
    pub(crate) fn new(conn: Connection, peer: AuthorId, config: NetConfig) -> Self {
        PeerConnection { conn, peer, config }
    }

    pub(crate) async fn open(&self) -> Result<(FrameSender, FrameReceiver), NetError> {
        let (send, recv) =
            self.conn.open_bi().await.map_err(|e| NetError::Connection { peer: self.peer, reason: e.to_string() })?;
        Ok(framing::split(send, recv, self.peer, self.config.sync.idle_timeout))
    }

    /// Asks to join the peer's mesh; returns its root store id.
    pub async fn join(&self, name: &str, hostname: &str) -> Result<StoreId, NetError> {
        let (mut tx, mut rx) = self.open().await?;
        tx.send(Msg::JoinRequest(proto::JoinRequest { name: name.into(), hostname: hostname.into() })).await?;
        let reply = rx.expect().await?;
        tx.finish().await;
        match reply {
            Msg::JoinResponse(r) => StoreId::from_bytes(&r.root_store_id)
                .map_err(|e| NetError::Protocol { peer: self.peer, reason: format!("bad root store id: {e}") }),
            _ => Err(NetError::Protocol { peer: self.peer, reason: "expected a join response".into() }),
        }
    }

    /// One bidirectional sync session for `store`.
    pub async fn sync<S: SyncStore>(
        &self,
        store: &S,
        progress: Option<watch::Sender<SyncProgress>>,
    ) -> Result<SyncOutcome, NetError> {
        let (tx, rx) = self.open().await?;
        sync::initiate(store, self.peer, tx, rx, &self.config.sync, progress).await
    }

    /// Closes the connection (running sessions end with an error).
    pub fn close(&self) {
        self.conn.close(0u32.into(), b"done");
    }
}
