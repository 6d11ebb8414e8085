//! The node's control plane end to end on a temp data dir: init, stores, current store,
//! reserved prefixes, archive, reopen.

use std::sync::Arc;

use lattice_node::{DataDir, DirLock, LocalState, Node, NodeError};

async fn fresh() -> (tempfile::TempDir, DataDir, Node) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = DataDir::new(tmp.path().join("data")).unwrap();
    dir.create().unwrap();
    let lock = Arc::new(DirLock::try_acquire(&dir).unwrap());
    let node = Node::init(dir.clone(), lock, Some("test".into())).await.unwrap();
    (tmp, dir, node)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_declares_root_and_default() {
    let (_tmp, dir, node) = fresh().await;
    let current = node.current_store().await.unwrap().unwrap();
    assert_eq!(current.name, "default");
    let root = node.root_store();
    let me = node.node_id().to_hex();
    let status = node.get(&root, format!("/nodes/{me}/status").as_bytes()).await.unwrap();
    assert_eq!(status.as_deref(), Some(&b"active"[..]));
    let info = node.get(&root, format!("/nodes/{me}/info").as_bytes()).await.unwrap().unwrap();
    let info: serde_json::Value = serde_json::from_slice(&info).unwrap();
    for field in ["name", "hostname", "added_at", "added_by"] {
        assert!(info.get(field).is_some(), "{field}");
    }
    assert_eq!(info["name"], "test");
    let name = node.get(&root, format!("/stores/{}/name", current.id).as_bytes()).await.unwrap();
    assert_eq!(name.as_deref(), Some(&b"default"[..]));
    let stores = node.list_stores(false).await.unwrap();
    assert_eq!(stores.len(), 1);
    assert_eq!(stores[0].created_by, me);
    node.shutdown().await.unwrap();
    drop(node);

    let lock = Arc::new(DirLock::try_acquire(&dir).unwrap());
    let again = Node::init(dir.clone(), lock, None).await;
    assert!(matches!(again, Err(NodeError::AlreadyInitialised(_))), "init twice must not overwrite");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stores_create_use_delete_and_reserved_prefixes() {
    let (_tmp, dir, node) = fresh().await;
    let info = node.create_store("photos").await.unwrap();
    assert!(matches!(node.create_store("photos").await, Err(NodeError::Exists(_))));
    assert!(matches!(node.create_store("root").await, Err(NodeError::Invalid(_))));
    let by_uuid = node.resolve(Some(&info.id.to_string())).await.unwrap();
    assert_eq!(by_uuid.name, "photos");
    assert!(matches!(node.resolve(Some("nope")).await, Err(NodeError::NotFound(_))));
    assert!(node.resolve(Some("root")).await.unwrap().is_root());

    let photos = node.use_store("photos").await.unwrap();
    node.put(&photos, b"k".to_vec(), b"v".to_vec()).await.unwrap();
    assert_eq!(node.resolve(None).await.unwrap(), photos);

    let root = node.root_store();
    for key in ["/nodes/x", "/stores/y/name", "/tokens/z"] {
        let err = node.put(&root, key.as_bytes().to_vec(), b"v".to_vec()).await.unwrap_err();
        assert!(matches!(err, NodeError::Reserved { .. }), "{key}");
        assert!(matches!(node.delete(&root, key.as_bytes().to_vec()).await, Err(NodeError::Reserved { .. })));
    }
    node.put(&root, b"/free/key".to_vec(), b"v".to_vec()).await.unwrap();
    assert!(node.put(&photos, b"/nodes/ok-elsewhere".to_vec(), b"v".to_vec()).await.is_ok());

    node.delete_store("photos").await.unwrap();
    assert!(dir.archived_store(info.id).exists());
    assert!(!dir.store(info.id).exists());
    assert!(node.list_stores(false).await.unwrap().iter().all(|s| s.name != "photos"));
    let all = node.list_stores(true).await.unwrap();
    assert!(all.iter().any(|s| s.name == "photos" && s.state == LocalState::Archived));
    assert!(matches!(node.resolve(None).await, Err(NodeError::NotFound(_))), "current store was deleted");
    // The name is free again.
    node.create_store("photos").await.unwrap();
    node.shutdown().await.unwrap();
    drop(node);

    let lock = Arc::new(DirLock::try_acquire(&dir).unwrap());
    let node = Node::open(dir, lock).await.unwrap();
    let names: Vec<String> = node.list_stores(false).await.unwrap().into_iter().map(|s| s.name).collect();
    assert_eq!(names, ["default", "photos"]);
    let status = node.status().await.unwrap();
    assert_eq!(status.stores[0].0.name, "root");
    assert_eq!(status.stores.len(), 3);
    node.shutdown().await.unwrap();
}
