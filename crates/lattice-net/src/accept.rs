//! The accepting side: the `lattice/sync/1` handler (joins and sync sessions) and the gossip
//! gate. Both are thin adapters: they ask [`crate::admission::admit`] whether the peer may do
//! what it asks, then hand the stream to [`crate::sync`] or the connection to gossip. Every task
//! they start belongs to the router, which `LatticeServer::shutdown` stops before closing the
//! endpoint.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use iroh::endpoint::Connection;
use iroh::protocol::{AcceptError, ProtocolHandler};
use lattice_core::AuthorId;
use lattice_core::proto::{self, peer_message::Message as Msg};
use tokio::task::JoinSet;

use crate::admission::{Admission, Purpose};
use crate::context::{NodeContext, PeerEvent};
use crate::framing::{self, FrameReceiver, FrameSender};
use crate::mesh::Mesh;
use crate::sync;

fn author_of(conn: &Connection) -> AuthorId {
    AuthorId(*conn.remote_id().as_bytes())
}

/// The `lattice/sync/1` protocol handler: one task per stream, each a join or a sync.
pub(crate) struct SyncHandler<C: NodeContext> {
    pub(crate) mesh: Arc<Mesh<C>>,
}

impl<C: NodeContext> std::fmt::Debug for SyncHandler<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SyncHandler")
    }
}

impl<C: NodeContext> ProtocolHandler for SyncHandler<C> {
    async fn accept(&self, conn: Connection) -> Result<(), AcceptError> {
        let peer = author_of(&conn);
        let mesh = &self.mesh;
        if let Admission::Refuse(refusal) = mesh.admit(peer, Purpose::Connect).await {
            conn.close(1u32.into(), refusal.close_reason());
            return Ok(());
        }
        let joined = Arc::new(AtomicBool::new(false));
        let mut streams = JoinSet::new();
        mesh.heard_from(peer);
        mesh.ctx().peer_event(PeerEvent::Connected { peer, addr: None });
        let cancel = mesh.cancel_token();
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                next = conn.accept_bi() => match next {
                    Ok((send, recv)) => {
                        let (tx, rx) = framing::split(send, recv, peer, mesh.config().sync.idle_timeout);
                        let mesh = mesh.clone();
                        let joined = joined.clone();
                        streams.spawn(async move { serve_stream(&mesh, peer, &joined, tx, rx).await });
                    }
                    Err(_) => break,
                },
                Some(_) = streams.join_next(), if !streams.is_empty() => {}
            }
        }
        // Let running sessions end on their own (the connection is gone or we are stopping).
        if cancel.is_cancelled() {
            streams.abort_all();
        }
        while streams.join_next().await.is_some() {}
        Ok(())
    }
}

/// Serves one stream: a join or a sync of one store.
async fn serve_stream<C: NodeContext>(
    mesh: &Mesh<C>,
    peer: AuthorId,
    joined: &AtomicBool,
    mut tx: FrameSender,
    mut rx: FrameReceiver,
) {
    let first = match rx.recv().await {
        Ok(Some(m)) => m,
        Ok(None) => return,
        Err(e) => {
            tracing::debug!(%peer, error = %e, "stream ended before its first message");
            return;
        }
    };
    let ctx = mesh.ctx();
    let refused = |admission: Admission| match admission {
        Admission::Allow => None,
        Admission::Refuse(refusal) => {
            let reason = refusal.message(peer);
            tracing::warn!(%peer, %reason, "refusing peer");
            ctx.peer_event(PeerEvent::Refused { peer, reason: reason.clone() });
            Some(reason)
        }
    };
    match first {
        Msg::JoinRequest(req) => {
            if let Some(reason) = refused(mesh.admit(peer, Purpose::Join).await) {
                return tx.refuse(reason).await;
            }
            let Some(root) = ctx.root_store_id() else {
                return tx.refuse("this node has no mesh to join".into()).await;
            };
            tracing::info!(%peer, name = %req.name, "peer joins the mesh");
            joined.store(true, Ordering::SeqCst);
            let _ = tx.send(Msg::JoinResponse(proto::JoinResponse { root_store_id: root.as_bytes().to_vec() })).await;
            tx.finish().await;
        }
        Msg::SyncRequest(req) => {
            let store_id = match sync::requested_store(peer, &req) {
                Ok(s) => s,
                Err(e) => return tx.refuse(e.to_string()).await,
            };
            let purpose = Purpose::Sync {
                root_store: ctx.root_store_id() == Some(store_id),
                joined_here: joined.load(Ordering::SeqCst),
            };
            if let Some(reason) = refused(mesh.admit(peer, purpose).await) {
                return tx.refuse(reason).await;
            }
            let Some(store) = ctx.store(store_id).await else {
                return tx.refuse(format!("store {store_id} is not active on this node")).await;
            };
            match sync::respond(&store, peer, req, tx, rx, &mesh.config().sync).await {
                Ok(outcome) => {
                    tracing::debug!(%peer, store = %store_id, ?outcome, "served sync");
                    ctx.peer_event(PeerEvent::Synced { peer, store: store_id, outcome });
                }
                Err(e) => {
                    tracing::warn!(%peer, store = %store_id, error = %e, "sync with peer failed");
                    ctx.peer_event(PeerEvent::SyncFailed { peer, store: store_id, error: e.to_string() });
                }
            }
        }
        _ => tx.refuse("expected a join or sync request".into()).await,
    }
}

/// Admits gossip connections only from members (active or invited), then hands them to gossip.
pub(crate) struct GossipGate<C: NodeContext> {
    pub(crate) mesh: Arc<Mesh<C>>,
}

impl<C: NodeContext> std::fmt::Debug for GossipGate<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GossipGate")
    }
}

impl<C: NodeContext> ProtocolHandler for GossipGate<C> {
    async fn accept(&self, conn: Connection) -> Result<(), AcceptError> {
        let peer = author_of(&conn);
        if let Admission::Refuse(refusal) = self.mesh.admit(peer, Purpose::Gossip).await {
            tracing::debug!(%peer, ?refusal, "refusing gossip connection");
            conn.close(1u32.into(), refusal.close_reason());
            return Ok(());
        }
        self.mesh.heard_from(peer);
        self.mesh.accept_gossip(conn).await
    }
}
