//! The accepting side of `lattice/sync/1` (joins and sync sessions): a thin adapter that asks
//! [`crate::admission::admit`] whether the peer may do what a stream asks, then hands the stream
//! to [`crate::sync`]. The connection itself was admitted at its handshake (`gate`): only
//! members get here. Every task it starts belongs to the router, which
//! `LatticeServer::shutdown` stops before closing the endpoint.

use std::sync::Arc;

use iroh::endpoint::Connection;
use iroh::protocol::{AcceptError, ProtocolHandler};
use lattice_core::AuthorId;
use lattice_core::proto::{self, peer_message::Message as Msg};
use tokio::task::JoinSet;

use crate::admission::{Admission, PROTOCOL_VIOLATION, Purpose};
use crate::context::{NodeContext, PeerEvent};
use crate::error::NetError;
use crate::framing::{self, FrameReceiver, FrameSender};
use crate::gate::{author_of, open_window};
use crate::mesh::Mesh;
use crate::sync;

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
        let mut streams = JoinSet::new();
        mesh.heard_from(peer);
        mesh.ctx().peer_event(PeerEvent::Connected { peer, addr: None });
        let cancel = mesh.cancel_token();
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                next = conn.accept_bi() => match next {
                    Ok((send, recv)) => {
                        let (tx, mut rx) = framing::split(send, recv, peer, mesh.config().sync.idle_timeout);
                        // An active member's request may be of any size (a state of many
                        // authors); only peers not known to be one are held to the first-frame cap.
                        if mesh.known_active(peer) {
                            rx.admit_full_frames();
                        }
                        let (mesh, conn) = (mesh.clone(), conn.clone());
                        streams.spawn(async move { serve_stream(&mesh, &conn, peer, tx, rx).await });
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

/// Serves one stream: a join or a sync of one store. Its first frame is read under the
/// `framing::FIRST_FRAME` cap unless the peer is an active member; a peer whose first frame is
/// too big or undecodable broke the protocol, and loses the whole connection.
async fn serve_stream<C: NodeContext>(
    mesh: &Mesh<C>,
    conn: &Connection,
    peer: AuthorId,
    mut tx: FrameSender,
    mut rx: FrameReceiver,
) {
    let first = match rx.recv().await {
        Ok(Some(m)) => m,
        Ok(None) => return,
        Err(e @ NetError::Protocol { .. }) => {
            tracing::warn!(%peer, error = %e, "bad first frame: closing the connection");
            conn.close(PROTOCOL_VIOLATION.into(), b"protocol violation");
            return;
        }
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
            let (genesis, nonce) =
                ctx.mesh_binding().map_or((Vec::new(), Vec::new()), |(g, n)| (g.as_bytes().to_vec(), n.to_vec()));
            let response = proto::JoinResponse { root_store_id: root.as_bytes().to_vec(), genesis, nonce };
            let _ = tx.send(Msg::JoinResponse(response)).await;
            tx.finish().await;
        }
        Msg::SyncRequest(req) => {
            let store_id = match sync::requested_store(peer, &req) {
                Ok(s) => s,
                Err(e) => return tx.refuse(e.to_string()).await,
            };
            let purpose = Purpose::Sync { root_store: ctx.root_store_id() == Some(store_id) };
            if let Some(reason) = refused(mesh.admit(peer, purpose).await) {
                return tx.refuse(reason).await;
            }
            let Some(store) = ctx.store(store_id).await else {
                return tx.refuse(format!("store {store_id} is not active on this node")).await;
            };
            // The peer may sync: let its entries flow at full speed (see `gate`).
            open_window(conn);
            match sync::respond(&store, peer, req, tx, rx, &mesh.config().sync).await {
                Ok(outcome) => {
                    tracing::debug!(%peer, store = %store_id, ?outcome, "served sync");
                    ctx.peer_event(PeerEvent::Synced { peer, store: store_id, outcome });
                }
                Err(e) => {
                    // A peer that goes away mid-session (it stopped, or went offline) is routine:
                    // it syncs again when it is back. Anything else is worth a warning.
                    if matches!(e, NetError::Connection { .. }) {
                        tracing::info!(%peer, store = %store_id, error = %e, "sync with peer ended: it went away");
                    } else {
                        tracing::warn!(%peer, store = %store_id, error = %e, "sync with peer failed");
                    }
                    ctx.peer_event(PeerEvent::SyncFailed { peer, store: store_id, error: e.to_string() });
                }
            }
        }
        _ => tx.refuse("expected a join or sync request".into()).await,
    }
}
