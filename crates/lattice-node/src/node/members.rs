//! The mesh's members as the root store's `/nodes/` records them: invite, remove, this node's
//! own record, and reading them back.

use std::collections::BTreeMap;

use lattice_core::{AuthorId, MemberStatus};
use lattice_store::KvStore;

use super::Node;
use crate::authority::{Cutoff, Cutoffs, Role};
use crate::control::{
    NODES_PREFIX, NodeField, NodeInfo, NodeRecord, node_cutoff_op, node_info_op, node_key, node_role_op,
    node_status_op, parse_node_info, parse_node_records,
};
use crate::error::NodeError;
use crate::time::{now_ms, rfc3339};

impl Node {
    /// Every node the root store knows, with its status and info.
    pub async fn node_records(&self) -> Result<BTreeMap<AuthorId, NodeRecord>, NodeError> {
        self.with_plane(|plane| {
            let mut records = parse_node_records(&plane.items(NODES_PREFIX));
            for (id, record) in &mut records {
                record.role = plane.role(*id);
            }
            records
        })
        .await
    }

    /// A node's status in the root store, if it has one (a value that spells no status counts
    /// as none).
    /// Whether an attestation signed by `signer` speaks for this mesh: this node, or a member
    /// (invited or active) as the effective control plane has it.
    pub async fn vouches_for(&self, signer: AuthorId) -> Result<bool, NodeError> {
        if signer == self.node_id() {
            return Ok(true);
        }
        Ok(self.node_status(signer).await?.is_some_and(MemberStatus::is_member))
    }

    pub(crate) async fn node_status(&self, peer: AuthorId) -> Result<Option<MemberStatus>, NodeError> {
        self.with_plane(|plane| plane.status(peer)).await
    }

    /// Invites a node: `/nodes/{pk}/status = invited` (it may then join), as an admin if `role`
    /// says so. Only an admin may invite.
    pub async fn invite(&self, peer: AuthorId, role: Role) -> Result<(), NodeError> {
        let _guard = self.control.lock().await;
        let plane = self.require_admin("invite nodes").await?;
        if peer == self.node_id() {
            return Err(NodeError::Invalid("a node cannot invite itself".into()));
        }
        if plane.status(peer) == Some(MemberStatus::Active) {
            return Err(NodeError::Exists(format!("node {peer} is already an active member")));
        }
        let root = self.writer(&self.root_store()).await?;
        let mut ops = vec![node_status_op(peer, MemberStatus::Invited)];
        if role == Role::Admin || plane.role(peer) == Role::Admin {
            ops.push(node_role_op(peer, role));
        }
        if plane.value(&node_key(peer, NodeField::Info)).is_none() {
            let info = NodeInfo {
                name: String::new(),
                hostname: String::new(),
                added_at: rfc3339(now_ms()),
                added_by: self.node_id().to_hex(),
                addrs: vec![],
            };
            ops.push(node_info_op(peer, &info)?);
        }
        root.batch(ops).await?;
        Ok(())
    }

    /// Removes a node from the mesh, causally: one entry writes `status = removed` and the
    /// node's cut-off in every store (its last entry as this node holds it). What it wrote up to
    /// there stays valid everywhere; what it writes after is refused. Only an admin may remove.
    pub async fn remove_peer(&self, peer: AuthorId) -> Result<(), NodeError> {
        let _guard = self.control.lock().await;
        let plane = self.require_admin("remove nodes").await?;
        if peer == self.node_id() {
            return Err(NodeError::Invalid("a node cannot remove itself".into()));
        }
        if peer == plane.genesis() {
            return Err(NodeError::Forbidden("the genesis admin cannot be removed".into()));
        }
        match plane.status(peer) {
            None => return Err(NodeError::NotFound(format!("node {peer} is not in this mesh"))),
            // Its cut-off stands: taking one again from today's tips would validate what it
            // wrote after its removal.
            Some(MemberStatus::Removed) => return Err(NodeError::Exists(format!("node {peer} is already removed"))),
            Some(_) => {}
        }
        let mut cutoffs = Cutoffs::new();
        for id in self.active_store_ids().await? {
            let state = lattice_store::SyncStore::sync_state(&self.stores.get(id).await?).await?;
            if let Some(tip) = state.authors.get(&peer) {
                cutoffs.insert(id, Cutoff { seq: tip.seq, hash: tip.hash });
            }
        }
        let ops = vec![node_status_op(peer, MemberStatus::Removed), node_cutoff_op(peer, &cutoffs)];
        self.writer(&self.root_store()).await?.batch(ops).await?;
        Ok(())
    }

    /// Makes a member an admin (`grant`) or a plain member again. Only an admin may.
    pub async fn set_role(&self, peer: AuthorId, role: Role) -> Result<(), NodeError> {
        let _guard = self.control.lock().await;
        let plane = self.require_admin("change roles").await?;
        if peer == plane.genesis() {
            return Err(NodeError::Forbidden("the genesis admin's role cannot change".into()));
        }
        if !plane.status(peer).is_some_and(MemberStatus::is_member) {
            return Err(NodeError::NotFound(format!("node {peer} is not a member of this mesh")));
        }
        self.writer(&self.root_store()).await?.batch(vec![node_role_op(peer, role)]).await?;
        Ok(())
    }

    /// Writes this node's own record: info (name, hostname, addresses; who added it is kept)
    /// and `status = active`. Done after joining and whenever the listen addresses change.
    /// True if it wrote (false: the record was up to date).
    pub(crate) async fn publish_self(&self, name: Option<String>, addrs: Vec<String>) -> Result<bool, NodeError> {
        let me = self.node_id();
        let root = self.writer(&self.root_store()).await?;
        // The effective record: a raw winner may be a write that took no effect.
        let old =
            self.with_plane(|plane| plane.value(&node_key(me, NodeField::Info)).and_then(parse_node_info)).await?;
        let status = self.node_status(me).await?;
        let info = NodeInfo {
            name: name
                .or_else(|| old.as_ref().map(|o| o.name.clone()).filter(|n| !n.is_empty()))
                .unwrap_or_else(hostname),
            hostname: hostname(),
            added_at: old.as_ref().map(|o| o.added_at.clone()).unwrap_or_else(|| rfc3339(now_ms())),
            added_by: old.as_ref().map(|o| o.added_by.clone()).unwrap_or_else(|| me.to_hex()),
            addrs,
        };
        if old.as_ref() == Some(&info) && status == Some(MemberStatus::Active) {
            return Ok(false);
        }
        root.batch(vec![node_info_op(me, &info)?, node_status_op(me, MemberStatus::Active)]).await?;
        Ok(true)
    }
}

/// This machine's host name, or `"unknown"`.
pub(crate) fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its whole length; gethostname writes at most that much.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "unknown".into();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use lattice_core::{EntryBuilder, Hash, Hlc, Identity, Op};
    use lattice_store::{IngestOutcome, StoreStatus};

    use super::*;
    use crate::{DataDir, DirLock, Network};

    #[test]
    fn hostname_is_not_empty() {
        assert!(!hostname().is_empty());
    }

    /// A store takes entries only from members of the mesh (docs/design.md, Control plane): a
    /// stranger's entry waits until `invite` admits its author, then applies without being sent
    /// again. Here, not in `tests/`, because it feeds the entry through the raw store handle.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_strangers_entries_wait_until_invite_admits_the_author() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = DataDir::new(tmp.path().join("data")).unwrap();
        dir.create().unwrap();
        let lock = Arc::new(DirLock::try_acquire(&dir).unwrap());
        let node = Arc::new(Node::init(dir, lock, Some("test".into())).await.unwrap());
        let config = lattice_net::NetConfig { bind: "127.0.0.1:0".parse().unwrap(), ..Default::default() };
        let network = Network::start(node.clone(), config).await.unwrap();
        let store = node.current_store().await.unwrap().unwrap();
        let handle = node.store_handle(store.id).await.unwrap();

        let stranger = Identity::generate();
        let entry = EntryBuilder::new(store.id, 1)
            .prev_hash(Hash::ZERO)
            .timestamp(Hlc::new(now_ms(), 0))
            .ops(vec![Op::put("from/stranger", "hello")])
            .sign(&stranger)
            .unwrap();
        assert_eq!(handle.ingest(entry.bytes().to_vec()).await.unwrap(), IngestOutcome::Unauthorised);
        assert_eq!(node.get(&store, b"from/stranger").await.unwrap(), None);

        node.invite(stranger.author(), crate::Role::Member).await.unwrap();
        lattice_testkit::eventually(
            "the invited author's held entry to be applied",
            lattice_testkit::DEADLINE,
            || async { node.get(&store, b"from/stranger").await.unwrap().as_deref() == Some(&b"hello"[..]) },
        )
        .await;
        let status: StoreStatus = handle.status().await.unwrap();
        assert_eq!(status.orphans, 0);
        network.shutdown().await;
        drop(network);
        drop(handle);
        Arc::try_unwrap(node).ok().unwrap().shutdown().await.unwrap();
    }
}
