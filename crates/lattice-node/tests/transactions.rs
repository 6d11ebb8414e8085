//! A transaction written on one node reaches another as one entry (docs/design.md, Entries):
//! a watcher there sees either none of its keys or, from its first event on, all of them.

mod common;

use std::collections::BTreeSet;

use common::mesh;
use lattice_core::Op;
use lattice_store::{Transaction, WatchEvent};
use lattice_testkit::DEADLINE;

const BATCHES: usize = 10;
const KEYS: usize = 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_written_on_a_appears_on_b_atomically() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, _a_dir, b, _b_dir) = mesh(tmp.path()).await;
    let store = a.node.current_store().await.unwrap().unwrap();
    let on_b = b.node.resolve(Some(&store.id.to_string())).await.unwrap();
    let (_, mut events) = b.node.watch(&on_b, "^batch").await.unwrap();

    let writer = {
        let (node, store) = (a.node.clone(), store.clone());
        tokio::spawn(async move {
            for i in 0..BATCHES {
                let ops = (0..KEYS).map(|k| Op::put(format!("batch{i}/{k:02}"), format!("{i}"))).collect();
                node.transact(&store, Transaction::new(ops)).await.unwrap();
            }
        })
    };
    let mut seen = BTreeSet::new();
    while seen.len() < BATCHES {
        let event = tokio::time::timeout(DEADLINE, events.recv()).await.expect("B's watch fell silent").unwrap();
        let WatchEvent::Put { key, .. } = event else { panic!("unexpected {event:?}") };
        let batch = String::from_utf8(key).unwrap().split('/').next().unwrap().to_string();
        if seen.insert(batch.clone()) {
            // The first event of a batch on B: every key of it is readable there already.
            let prefix = format!("{batch}/");
            let keys = b.node.list(&on_b, prefix.as_bytes(), None, 1000).await.unwrap();
            assert_eq!(keys.len(), KEYS, "{batch} is half applied on B");
        }
    }
    writer.await.unwrap();
    a.stop().await;
    b.stop().await;
}
