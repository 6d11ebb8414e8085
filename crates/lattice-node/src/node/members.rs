//! The mesh's members as the root store's `/nodes/` records them: invite, remove, this node's
//! own record, and reading them back.

use std::collections::BTreeMap;

use lattice_core::{AuthorId, MemberStatus};
use lattice_store::KvStore;

use super::Node;
use crate::control::{
    NODES_PREFIX, NodeField, NodeInfo, NodeRecord, node_info_op, node_key, node_status_op, parse_node_info,
    parse_node_records, parse_node_status,
};
use crate::error::NodeError;
use crate::time::{now_ms, rfc3339};

impl Node {
    /// Every node the root store knows, with its status and info.
    pub async fn node_records(&self) -> Result<BTreeMap<AuthorId, NodeRecord>, NodeError> {
        Ok(parse_node_records(&self.list_root(NODES_PREFIX).await?))
    }

    /// A node's status in the root store, if it has one (a value that spells no status counts
    /// as none).
    pub(crate) async fn node_status(&self, peer: AuthorId) -> Result<Option<MemberStatus>, NodeError> {
        let root = self.stores.get(self.root).await?;
        let value = root.get(node_key(peer, NodeField::Status).as_bytes()).await?;
        Ok(value.as_deref().and_then(parse_node_status))
    }

    /// Invites a node: `/nodes/{pk}/status = invited` (it may then join).
    pub async fn invite(&self, peer: AuthorId) -> Result<(), NodeError> {
        if peer == self.node_id() {
            return Err(NodeError::Invalid("a node cannot invite itself".into()));
        }
        let _guard = self.control.lock().await;
        if self.node_status(peer).await? == Some(MemberStatus::Active) {
            return Err(NodeError::Exists(format!("node {peer} is already an active member")));
        }
        let root = self.stores.get(self.root).await?;
        let mut ops = vec![node_status_op(peer, MemberStatus::Invited)];
        if root.get(node_key(peer, NodeField::Info).as_bytes()).await?.is_none() {
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

    /// Removes a node from the mesh: `/nodes/{pk}/status = removed`; its connections are refused.
    pub async fn remove_peer(&self, peer: AuthorId) -> Result<(), NodeError> {
        if peer == self.node_id() {
            return Err(NodeError::Invalid("a node cannot remove itself".into()));
        }
        let _guard = self.control.lock().await;
        if self.node_status(peer).await?.is_none() {
            return Err(NodeError::NotFound(format!("node {peer} is not in this mesh")));
        }
        self.stores.get(self.root).await?.batch(vec![node_status_op(peer, MemberStatus::Removed)]).await?;
        Ok(())
    }

    /// Writes this node's own record: info (name, hostname, addresses; who added it is kept)
    /// and `status = active`. Done after joining and whenever the listen addresses change.
    pub(crate) async fn publish_self(&self, name: Option<String>, addrs: Vec<String>) -> Result<(), NodeError> {
        let me = self.node_id();
        let root = self.stores.get(self.root).await?;
        let old = root.get(node_key(me, NodeField::Info).as_bytes()).await?.as_deref().and_then(parse_node_info);
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
            return Ok(());
        }
        root.batch(vec![node_info_op(me, &info)?, node_status_op(me, MemberStatus::Active)]).await?;
        Ok(())
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

        node.invite(stranger.author()).await.unwrap();
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
