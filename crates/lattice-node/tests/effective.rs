//! Reads of the root store's reserved keys show the effective control plane (docs/design.md,
//! Control plane): a member's entry that writes reserved keys it has no right to is a valid
//! signed entry, applied to the store's raw state, but `get`, `lookup` and `list` answer with
//! what took effect, not with that raw winner.

use std::sync::Arc;

use lattice_core::{EntryBuilder, Hash, Identity, Op};
use lattice_node::{DataDir, DirLock, Network, Node, Role};
use lattice_store::{IngestOutcome, SyncStore};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_members_forged_reserved_keys_read_as_what_took_effect() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = DataDir::new(tmp.path().join("data")).unwrap();
    dir.create().unwrap();
    let lock = Arc::new(DirLock::try_acquire(&dir).unwrap());
    let node = Arc::new(Node::init(dir, lock, Some("admin".into())).await.unwrap());
    let config = lattice_net::NetConfig { bind: "127.0.0.1:0".parse().unwrap(), ..Default::default() };
    let network = Network::start(node.clone(), config).await.unwrap();
    let root = node.root_store();
    let default = node.resolve(Some("default")).await.unwrap();
    let (admin, member) = (node.node_id().to_hex(), Identity::generate());
    let me = member.author().to_hex();

    // The member's first entry: its own join (takes effect) and forgeries (take none), plus a
    // plain key, which reads as stored.
    let forged = [
        (format!("/nodes/{me}/status"), "active"),
        (format!("/nodes/{admin}/status"), "removed"),
        (format!("/nodes/{me}/role"), "admin"),
        (format!("/stores/{}/deleted_at", default.id), "2026-01-01T00:00:00.000Z"),
        ("/tokens/0123456789abcdef/permissions".to_string(), "rw"),
        ("/free/from-member".to_string(), "plain"),
    ];
    // The network publishes this node's addresses (rewriting its own `status = active`) once it
    // is up; wait for that, or that write could outrank the forgery's raw `removed`.
    let addrs: Vec<String> = network.listen_addrs().iter().map(|a| a.to_string()).collect();
    lattice_testkit::eventually("the node's addresses to be published", lattice_testkit::DEADLINE, || async {
        let records = node.node_records().await.unwrap();
        records.get(&node.node_id()).and_then(|r| r.info.as_ref()).is_some_and(|i| i.addrs == addrs)
    })
    .await;
    // Signed after the invite (in fold order too), so the member's own join takes effect.
    node.invite(member.author(), Role::Member).await.unwrap();
    let invited = node.get_heads(&root, format!("/nodes/{me}/status").as_bytes()).await.unwrap();
    let entry = EntryBuilder::new(root.id, 1)
        .prev_hash(Hash::ZERO)
        .timestamp(invited[0].hlc.successor())
        .ops(forged.iter().map(|(k, v)| Op::put(k.as_str(), *v)))
        .sign(&member)
        .unwrap();
    let handle = node.root_store_handle().await.unwrap();
    // Applied at once, or held until the network has admitted the invited author.
    let outcome = handle.ingest(entry.bytes().to_vec()).await.unwrap();
    assert!(matches!(outcome, IngestOutcome::Applied { .. } | IngestOutcome::Unauthorised), "{outcome:?}");
    let status_key = format!("/nodes/{admin}/status");
    lattice_testkit::eventually("the member's entry to be applied", lattice_testkit::DEADLINE, || async {
        let heads = node.get_heads(&root, status_key.as_bytes()).await.unwrap();
        lattice_core::winner(&heads).is_some_and(|h| h.value == b"removed")
    })
    .await;
    assert_eq!(handle.sync_state().await.unwrap().authors.len(), 2, "the forgery is stored, raw");

    // What took effect: the member's own join; none of the forgeries.
    let get = |key: String| {
        let (node, root) = (node.clone(), root.clone());
        async move { node.get(&root, key.as_bytes()).await.unwrap() }
    };
    assert_eq!(get(format!("/nodes/{me}/status")).await.as_deref(), Some(&b"active"[..]));
    assert_eq!(get(status_key.clone()).await.as_deref(), Some(&b"active"[..]), "the raw winner is the forgery");
    assert_eq!(get(format!("/nodes/{me}/role")).await, None);
    assert_eq!(get(format!("/stores/{}/deleted_at", default.id)).await, None);
    assert_eq!(get("/tokens/0123456789abcdef/permissions".into()).await, None);
    assert_eq!(get("/free/from-member".into()).await.as_deref(), Some(&b"plain"[..]));

    // `get -v`: the effective value, and the raw heads beside it.
    let lookup = node.lookup(&root, status_key.as_bytes()).await.unwrap();
    assert!(lookup.control);
    assert_eq!(lookup.value.as_deref(), Some(&b"active"[..]));
    assert_eq!(lattice_core::winner(&lookup.heads).map(|h| h.value.as_slice()), Some(&b"removed"[..]));
    let plain = node.lookup(&root, b"/free/from-member").await.unwrap();
    assert!(!plain.control);
    assert_eq!(plain.value.as_deref(), Some(&b"plain"[..]));

    // `list`: reserved keys from the plane, the rest from the store, one key order; and pages
    // of any size give the same items.
    let all = node.list(&root, b"", None, 1000).await.unwrap();
    let value = |key: &str| all.iter().find(|(k, _)| k == key.as_bytes()).map(|(_, v)| v.as_slice());
    assert_eq!(value(&status_key), Some(&b"active"[..]));
    assert_eq!(value(&format!("/nodes/{me}/role")), None);
    assert_eq!(value(&format!("/stores/{}/deleted_at", default.id)), None);
    assert!(all.iter().all(|(k, _)| !k.starts_with(b"/tokens/")), "no forged token");
    assert_eq!(value("/free/from-member"), Some(&b"plain"[..]));
    assert!(all.windows(2).all(|w| w[0].0 < w[1].0), "in key order");
    for limit in [1, 2, 3] {
        let (mut paged, mut after) = (Vec::new(), None);
        loop {
            let page = node.list(&root, b"", after, limit).await.unwrap();
            after = page.last().map(|(k, _)| k.clone());
            let done = page.len() < limit;
            paged.extend(page);
            if done {
                break;
            }
        }
        assert_eq!(paged, all, "pages of {limit}");
    }
    let nodes = node.list(&root, b"/nodes/", None, 1000).await.unwrap();
    assert_eq!(nodes, all.iter().filter(|(k, _)| k.starts_with(b"/nodes/")).cloned().collect::<Vec<_>>());

    network.shutdown().await;
    drop(network);
    drop(handle);
    Arc::try_unwrap(node).ok().unwrap().shutdown().await.unwrap();
}
