//! The effective control plane as this node holds it: the root store's control-plane entries
//! folded by [`ControlLog`], brought up to date from the root store on every read, so every
//! reader (members, stores, tokens, rights) sees the same plane and none reads a raw key.

use std::collections::{HashMap, HashSet};

use lattice_core::{AuthorId, MemberStatus, StoreId, SyncState};
use lattice_store::{Authorisation, Cutoff, SyncStore};

use super::Node;
use crate::authority::{ControlEntry, ControlLog, ControlPlane};
use crate::error::NodeError;
use crate::meta::MeshBinding;

/// The fold and how far into the root store's logs it has read.
pub(crate) struct Authority {
    log: ControlLog,
    /// The root store's frontier the log has read up to.
    seen: SyncState,
    /// The root store's [`generation`](lattice_store::StoreHandle::generation) when `seen` was
    /// read: while it has not moved, the fold is up to date without asking the store.
    generation: Option<u64>,
}

impl Authority {
    /// An empty fold for the mesh whose genesis admin is `genesis`.
    pub(crate) fn new(genesis: AuthorId, root: lattice_core::StoreId) -> Authority {
        Authority { log: ControlLog::new(genesis, root), seen: SyncState::default(), generation: None }
    }
}

impl Node {
    /// The effective control plane, after reading whatever the root store holds that the fold
    /// has not seen (usually nothing: one frontier comparison). A clone: for callers that keep
    /// it across awaits; readers of a few keys use [`with_plane`](Self::with_plane).
    pub(crate) async fn control_plane(&self) -> Result<ControlPlane, NodeError> {
        self.with_plane(ControlPlane::clone).await
    }

    /// Runs `read` on the effective control plane, brought up to date first, without copying
    /// it: reads of reserved keys (one per `get`, per HTTP token check, per peer connection)
    /// stay as cheap as the keys they read.
    pub(crate) async fn with_plane<R>(&self, read: impl FnOnce(&ControlPlane) -> R) -> Result<R, NodeError> {
        self.catch_up_plane().await?;
        let authority = self.authority.lock().map_err(|_| NodeError::Corrupt("control plane lock".into()))?;
        Ok(read(authority.log.plane()))
    }

    /// Folds whatever the root store holds that the fold has not seen.
    async fn catch_up_plane(&self) -> Result<(), NodeError> {
        let root = self.store_handle(self.root).await?;
        // Loaded before the frontier: a frontier read after it holds every commit up to it.
        let generation = root.generation();
        {
            let authority = self.authority.lock().map_err(|_| NodeError::Corrupt("control plane lock".into()))?;
            if authority.generation == Some(generation) {
                return Ok(());
            }
        }
        let frontier = root.sync_state().await?;
        let seen = {
            let mut authority = self.authority.lock().map_err(|_| NodeError::Corrupt("control plane lock".into()))?;
            if authority.seen == frontier {
                authority.generation = Some(generation);
                return Ok(());
            }
            authority.seen.clone()
        };
        let missing = root.missing_entries(seen).await?;
        // Reading the logs is blocking file I/O.
        let entries = tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            for entry in missing {
                if let Some(control) = ControlEntry::from_entry(&entry?) {
                    out.push(control);
                }
            }
            Ok::<_, lattice_store::StoreError>(out)
        })
        .await
        .map_err(|e| NodeError::Corrupt(format!("reading the root store's logs: {e}")))??;
        let mut authority = self.authority.lock().map_err(|_| NodeError::Corrupt("control plane lock".into()))?;
        authority.log.extend(entries);
        authority.seen = frontier;
        authority.generation = Some(generation);
        Ok(())
    }

    /// Who may write into store `store` under `plane`: its members (invited or active, and the
    /// genesis admin), and every removed node up to its cut-off there (0 where it has none).
    fn authorisation(&self, plane: &ControlPlane, store: StoreId) -> Authorisation {
        let mut members: HashSet<AuthorId> = HashSet::from([plane.genesis()]);
        let mut cutoffs = HashMap::new();
        for node in plane.nodes() {
            match plane.status(node) {
                Some(status) if status.is_member() => {
                    members.insert(node);
                }
                Some(MemberStatus::Removed) => {
                    let cutoff = plane.cutoffs(node).and_then(|c| c.get(&store).copied());
                    let cutoff = cutoff.map_or(Cutoff::at_seq(0), |c| Cutoff { seq: c.seq, hash: c.hash });
                    cutoffs.insert(node, cutoff);
                }
                _ => {}
            }
        }
        Authorisation { members, cutoffs }
    }

    /// Gives every active store (the root store too) the authorisation the control plane says.
    /// The root store goes first and again until the plane stops changing: entries it admits
    /// can change the plane itself (a member's own join, an admin's invite).
    pub(crate) async fn admit_members(&self) -> Result<(), NodeError> {
        const ROUNDS: usize = 8;
        let root = self.store_handle(self.root).await?;
        let mut plane = self.control_plane().await?;
        for _ in 0..ROUNDS {
            let applied = root.set_authorisation(Some(self.authorisation(&plane, self.root))).await?;
            let next = self.control_plane().await?;
            let settled = applied == 0 || next == plane;
            plane = next;
            if settled {
                break;
            }
        }
        for id in self.active_store_ids().await? {
            if id != self.root {
                self.store_handle(id).await?.set_authorisation(Some(self.authorisation(&plane, id))).await?;
            }
        }
        Ok(())
    }

    /// The mesh's binding (genesis admin, root-id nonce), if this data dir records one.
    pub(crate) fn binding(&self) -> Option<MeshBinding> {
        self.binding
    }

    /// The node that founded this mesh (the genesis admin).
    pub fn genesis(&self) -> AuthorId {
        self.binding.map_or(self.node_id(), |b| b.genesis)
    }

    /// Refuses an operation this node's role does not allow: `only an admin may {what}`.
    /// Commands call it before they parse their arguments, so a member is told what is wrong
    /// with the request as a whole, not with its spelling.
    pub async fn require_admin(&self, what: &str) -> Result<ControlPlane, NodeError> {
        let plane = self.control_plane().await?;
        if !plane.is_admin(self.node_id()) {
            return Err(NodeError::Forbidden(format!("only an admin may {what}")));
        }
        Ok(plane)
    }
}
