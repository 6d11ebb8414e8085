//! The dialling side of `lattice/sync/1`: a [`PeerConnection`] asks to join a mesh, or opens one
//! sync session per store, each on its own stream.

use iroh::endpoint::{Connection, ConnectionError, VarInt};
use lattice_core::proto::{self, peer_message::Message as Msg};
use lattice_core::{AuthorId, StoreId};
use lattice_store::SyncStore;
use tokio::sync::watch;

use crate::admission::{EXPELLED, REFUSED};
use crate::endpoint::NetConfig;
use crate::error::NetError;
use crate::framing::{self, FrameReceiver, FrameSender};
use crate::sync::{self, SyncOutcome, SyncProgress};

/// ALPN of the join and sync protocol.
pub(crate) const SYNC_ALPN: &[u8] = b"lattice/sync/1";

/// What a join answered: the mesh's root store id, and the binding it derives from (`None` from
/// a node made before root ids were bound to their genesis admin).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Joined {
    /// The mesh's root store.
    pub root: StoreId,
    /// The genesis admin and the nonce, already checked against `root`.
    pub binding: Option<(AuthorId, [u8; 16])>,
}

/// An open connection to a peer on `lattice/sync/1`.
pub struct PeerConnection {
    conn: Connection,
    peer: AuthorId,
    config: NetConfig,
    /// The peer was an active member when we connected: its first frames (the reply to our
    /// `SyncRequest`, a state of any number of authors) are not held to `framing::FIRST_FRAME`.
    member: bool,
}

impl PeerConnection {
    pub(crate) fn new(conn: Connection, peer: AuthorId, config: NetConfig, member: bool) -> Self {
        PeerConnection { conn, peer, config, member }
    }

    pub(crate) async fn open(&self) -> Result<(FrameSender, FrameReceiver), NetError> {
        let (send, recv) =
            self.conn.open_bi().await.map_err(|e| NetError::Connection { peer: self.peer, reason: e.to_string() })?;
        let (tx, mut rx) = framing::split(send, recv, self.peer, self.config.sync.idle_timeout);
        if self.member {
            rx.admit_full_frames();
        }
        Ok((tx, rx))
    }

    /// The underlying connection (for tests that inspect it).
    #[cfg(feature = "test-utils")]
    pub(crate) fn inner(&self) -> &Connection {
        &self.conn
    }

    /// A peer that refuses us closes the whole connection (at its handshake, or when it expels
    /// us), with the refusal as the close reason: that explains whatever error followed.
    fn explain(&self, error: NetError) -> NetError {
        match self.conn.close_reason() {
            Some(ConnectionError::ApplicationClosed(close))
                if [REFUSED, EXPELLED].map(VarInt::from_u32).contains(&close.error_code) =>
            {
                NetError::Refused { peer: self.peer, message: String::from_utf8_lossy(&close.reason).into_owned() }
            }
            _ => error,
        }
    }

    /// Asks to join the peer's mesh; returns its root store id and, when the mesh sends it, the
    /// binding (genesis admin, nonce) that id derives from — checked here: a root id that does
    /// not derive from what came with it is refused.
    pub async fn join(&self, name: &str, hostname: &str) -> Result<Joined, NetError> {
        let asked = async {
            let (mut tx, mut rx) = self.open().await?;
            tx.send(Msg::JoinRequest(proto::JoinRequest { name: name.into(), hostname: hostname.into() })).await?;
            let reply = rx.expect().await?;
            tx.finish().await;
            Ok(reply)
        };
        let reply = asked.await.map_err(|e| self.explain(e))?;
        let bad = |reason: String| NetError::Protocol { peer: self.peer, reason };
        let Msg::JoinResponse(r) = reply else { return Err(bad("expected a join response".into())) };
        let root = StoreId::from_bytes(&r.root_store_id).map_err(|e| bad(format!("bad root store id: {e}")))?;
        if r.genesis.is_empty() && r.nonce.is_empty() {
            return Ok(Joined { root, binding: None });
        }
        let genesis = AuthorId::from_bytes(&r.genesis).map_err(|e| bad(format!("bad genesis key: {e}")))?;
        let nonce: [u8; 16] =
            r.nonce.as_slice().try_into().map_err(|_| bad(format!("nonce of {} bytes, not 16", r.nonce.len())))?;
        if StoreId::root_of(&genesis, &nonce) != root {
            return Err(bad(format!("root store id {root} does not derive from genesis {genesis}")));
        }
        Ok(Joined { root, binding: Some((genesis, nonce)) })
    }

    /// One bidirectional sync session for `store`.
    pub async fn sync<S: SyncStore>(
        &self,
        store: &S,
        progress: Option<watch::Sender<SyncProgress>>,
    ) -> Result<SyncOutcome, NetError> {
        let session = async {
            let (tx, rx) = self.open().await?;
            sync::initiate(store, self.peer, tx, rx, &self.config.sync, progress).await
        };
        session.await.map_err(|e| self.explain(e))
    }

    /// Closes the connection (running sessions end with an error).
    pub fn close(&self) {
        self.conn.close(0u32.into(), b"done");
    }
}
