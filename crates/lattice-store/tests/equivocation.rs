//! Equivocation (DESIGN.md §7.4): two valid entries by one author at one seq are a proof. The
//! store keeps it durably and from then on refuses that author's entries from the fork seq on,
//! taking out the branch it had applied; a proof from a peer does the same; two stores that
//! receive the two branches in opposite orders end in the same state.

mod common;

use common::{Chain, open, snapshot};
use lattice_core::{ChainError, EntryBuilder, EntryError, Hash, Hlc, Identity, Op, StoreId, VerifiedEntry, proto};
use lattice_store::{IngestError, IngestOutcome, KvStore, StoreError, StoreHandle, SyncStore, WatchEvent};
use lattice_testkit::DEADLINE;
use prost::Message;

/// An entry of `chain`'s author at `seq` (≤ the chain's length) that differs from the one the
/// chain holds there: same predecessor, another op.
fn twin(chain: &Chain, seq: u64, key: &str, value: &str) -> VerifiedEntry {
    let prev = if seq == 1 { Hash::ZERO } else { chain.entries[seq as usize - 2].hash() };
    EntryBuilder::new(chain.store, seq)
        .prev_hash(prev)
        .timestamp(Hlc::new(chain.entries[seq as usize - 1].hlc().wall_ms, 7))
        .op(Op::put(key, value))
        .sign(&chain.id)
        .unwrap()
}

async fn ingest(s: &StoreHandle, e: &VerifiedEntry) -> Result<IngestOutcome, IngestError> {
    s.ingest(e.bytes().to_vec()).await
}

fn is_equivocation(r: Result<IngestOutcome, IngestError>, at: u64) -> bool {
    matches!(r, Err(IngestError::Chain(ChainError::Equivocation { seq, .. })) if seq == at)
}

/// The two entries in the order a proof keeps them (lower hash first).
fn proof_of(a: &VerifiedEntry, b: &VerifiedEntry) -> (Vec<u8>, Vec<u8>) {
    let (a, b) = if a.hash() < b.hash() { (a, b) } else { (b, a) };
    (a.bytes().to_vec(), b.bytes().to_vec())
}

#[tokio::test]
async fn an_equivocation_on_ingest_is_proven_and_refuses_the_author_from_the_fork_seq() {
    let dir = tempfile::tempdir().unwrap();
    let sid = StoreId::new_random();
    let me = Identity::generate();
    let s = open(dir.path(), sid, &me);
    let mut x = Chain::new(sid);
    let x1 = x.put("k", "1");
    let x2 = x.next_with(vec![x1.hash()], vec![Op::put("k", "2")]);
    let x3 = x.put("x/3", "v");
    for e in [&x1, &x2, &x3] {
        ingest(&s, e).await.unwrap();
    }
    let (_, mut events) = s.watch(".").await.unwrap();

    let twin3 = twin(&x, 3, "x/3", "evil");
    assert!(is_equivocation(ingest(&s, &twin3).await, 3));
    let event = tokio::time::timeout(DEADLINE, events.recv()).await.unwrap().unwrap();
    let source = lattice_store::Change { hash: x3.hash(), hlc: x3.hlc(), author: x3.author() };
    assert_eq!(event, WatchEvent::Delete { key: b"x/3".to_vec(), source }, "the branch applied here is taken out");
    let st = s.status().await.unwrap();
    assert_eq!((st.entries, st.refused, st.orphans, st.keys), (2, 1, 0, 1));
    assert_eq!(st.equivocated, vec![(x.id.author(), 3)]);
    assert_eq!(s.proofs().await.unwrap(), vec![proof_of(&x3, &twin3)]);
    assert_eq!(s.get(b"x/3").await.unwrap(), None);
    assert_eq!(s.sync_state().await.unwrap().authors[&x.id.author()].seq, 3, "x3 is still held, and served");
    // Later entries of the author are refused too; a fork further on proves nothing new.
    let x4 = x.put("x/4", "v");
    assert_eq!(ingest(&s, &x4).await.unwrap(), IngestOutcome::Refused);
    assert!(is_equivocation(ingest(&s, &twin(&x, 4, "x/4", "evil")).await, 4));
    assert_eq!(s.status().await.unwrap().equivocated, vec![(x.id.author(), 3)]);

    // An earlier fork replaces the proof: x2 is taken out as well.
    let twin2 = twin(&x, 2, "k", "evil");
    assert!(is_equivocation(ingest(&s, &twin2).await, 2));
    assert_eq!(s.get(b"k").await.unwrap(), Some(b"1".to_vec()));
    let st = s.status().await.unwrap();
    assert_eq!((st.entries, st.refused, st.equivocated.clone()), (1, 3, vec![(x.id.author(), 2)]));
    let proofs = s.proofs().await.unwrap();
    assert_eq!(proofs, vec![proof_of(&x2, &twin2)]);

    // Durable: a reopen keeps the proof and the state. Deleting state.db loses the proof (state.db
    // is where it lives; peers send theirs again), and the proof brings the state back.
    let expected = snapshot(&s).await;
    s.close().await.unwrap();
    let s = open(dir.path(), sid, &me);
    assert_eq!(snapshot(&s).await, expected);
    assert_eq!(s.proofs().await.unwrap(), proofs);
    s.close().await.unwrap();
    std::fs::remove_file(dir.path().join("state.db")).unwrap();
    let s = open(dir.path(), sid, &me);
    assert_eq!(s.status().await.unwrap().refused, 0);
    let (first, second) = proofs[0].clone();
    assert!(s.ingest_proof(first, second).await.unwrap());
    assert_eq!(snapshot(&s).await, expected);
}

#[tokio::test]
async fn a_proof_from_a_peer_is_checked_then_applied_like_a_detected_one() {
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let sid = StoreId::new_random();
    let mut x = Chain::new(sid);
    for i in 1..=3 {
        x.put(&format!("k{i}"), "v");
    }
    let detected = open(dir_a.path(), sid, &Identity::generate());
    let told = open(dir_b.path(), sid, &Identity::generate());
    for s in [&detected, &told] {
        for r in s.ingest_batch(x.bytes()).await.unwrap() {
            r.unwrap();
        }
    }
    let twin2 = twin(&x, 2, "k2", "evil");
    assert!(is_equivocation(ingest(&detected, &twin2).await, 2));
    let (first, second) = detected.proofs().await.unwrap().pop().unwrap();
    assert!(told.ingest_proof(first.clone(), second.clone()).await.unwrap(), "new");
    assert!(!told.ingest_proof(second.clone(), first.clone()).await.unwrap(), "known, in either order");
    assert_eq!(snapshot(&told).await, snapshot(&detected).await);
    assert_eq!(told.proofs().await.unwrap(), detected.proofs().await.unwrap());
    assert_eq!(told.get(b"k2").await.unwrap(), None);

    // A later fork of the same author proves nothing new.
    let twin3 = twin(&x, 3, "k3", "evil");
    let later = proof_of(&x.entries[2], &twin3);
    assert!(!told.ingest_proof(later.0, later.1).await.unwrap());

    // What is not a proof is refused and changes nothing.
    let before = snapshot(&told).await;
    let e = |i: usize| x.entries[i].bytes().to_vec();
    let other = Chain::new(sid).put("k1", "v").bytes().to_vec();
    let elsewhere = {
        let mut c = Chain::new(StoreId::new_random());
        c.id = x.id.clone();
        c.put("k1", "v").bytes().to_vec()
    };
    let mut forged = proto::SignedEntry::decode(twin3.bytes()).unwrap();
    forged.signature[0] ^= 1;
    let cases: Vec<(Vec<u8>, Vec<u8>, &str)> = vec![
        (e(0), e(1), "different seqs"),
        (e(0), e(0), "one and the same"),
        (e(0), other, "different authors"),
        (e(0), elsewhere, "another store"),
        (e(2), forged.encode_to_vec(), "a bad signature"),
    ];
    for (a, b, what) in cases {
        let err = told.ingest_proof(a, b).await.unwrap_err();
        let expected = match what {
            "another store" => matches!(err, IngestError::Chain(ChainError::WrongStore { .. })),
            "a bad signature" => matches!(err, IngestError::Invalid(EntryError::BadSignature)),
            _ => matches!(err, IngestError::NotAProof(why) if why.contains(what)),
        };
        assert!(expected, "{what}: {err:?}");
    }
    assert_eq!(snapshot(&told).await, before);
}

/// Two stores receive both branches of a fork, in opposite orders, with a member's entries that
/// cite either branch's first entry: they end with the same heads, counters and proof.
#[tokio::test]
async fn both_branch_orders_give_identical_state() {
    let (dir_1, dir_2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let sid = StoreId::new_random();
    let mut x = Chain::new(sid);
    let x1 = x.put("k", "x1");
    let x2 = x.put("other", "x2");
    let mut branch_b = Chain { id: x.id.clone(), store: sid, entries: x.entries.clone(), wall: x.wall + 50 };
    let a3 = x.next_with(vec![x1.hash()], vec![Op::put("k", "a3")]);
    let a4 = x.put("a-only", "a4");
    let b3 = branch_b.next_with(vec![x1.hash()], vec![Op::put("k", "b3")]);
    let b4 = branch_b.put("b-only", "b4");
    let mut m = Chain::new(sid);
    m.wall = 10_000;
    let m1 = m.next_with(vec![a3.hash()], vec![Op::put("k", "m1")]);
    let m2 = m.next_with(vec![b3.hash()], vec![Op::put("k", "m2"), Op::put("m", "2")]);

    let one = open(dir_1.path(), sid, &Identity::generate());
    let two = open(dir_2.path(), sid, &Identity::generate());
    for e in [&x1, &x2, &a3, &a4, &m1, &m2] {
        ingest(&one, e).await.unwrap();
    }
    assert!(is_equivocation(ingest(&one, &b3).await, 3));
    assert!(is_equivocation(ingest(&one, &b4).await, 4));
    for e in [&x1, &x2, &b3, &b4, &m2, &m1] {
        ingest(&two, e).await.unwrap();
    }
    assert!(is_equivocation(ingest(&two, &a3).await, 3));
    assert!(is_equivocation(ingest(&two, &a4).await, 4));

    for key in ["k", "other", "a-only", "b-only", "m"] {
        let key = key.as_bytes();
        assert_eq!(one.get_heads(key).await.unwrap(), two.get_heads(key).await.unwrap(), "{key:?}");
    }
    let heads: Vec<Hash> = one.get_heads(b"k").await.unwrap().into_iter().map(|h| h.hash).collect();
    // Neither branch is part of the state; m2 replaces m's earlier head m1 (one head per author).
    assert_eq!(heads, vec![m2.hash(), x1.hash()], "neither branch is part of the state");
    let (s1, s2) = (one.status().await.unwrap(), two.status().await.unwrap());
    assert_eq!(s1, s2);
    assert_eq!((s1.entries, s1.refused, s1.orphans), (4, 2, 0));
    assert_eq!(s1.equivocated, vec![(x.id.author(), 3)]);
    assert_eq!(one.proofs().await.unwrap(), two.proofs().await.unwrap());
}

/// A node restored from an old backup re-signs seqs it had already used: once a peer's copy of
/// the lost entry reaches it, its own key is proven forked, and local writes fail clearly rather
/// than being refused everywhere in silence.
#[tokio::test]
async fn local_writes_fail_clearly_once_our_own_key_is_proven_forked() {
    let dir = tempfile::tempdir().unwrap();
    let sid = StoreId::new_random();
    let me = Identity::generate();
    let s = open(dir.path(), sid, &me);
    let first = s.put(b"k".to_vec(), b"1".to_vec()).await.unwrap();
    s.put(b"k".to_vec(), b"2".to_vec()).await.unwrap();
    let lost = EntryBuilder::new(sid, 2)
        .prev_hash(first.hash)
        .timestamp(first.hlc.successor())
        .parent_hashes(vec![first.hash])
        .op(Op::put("k", "written before the backup was restored"))
        .sign(&me)
        .unwrap();
    assert!(is_equivocation(ingest(&s, &lost).await, 2));
    assert_eq!(s.status().await.unwrap().equivocated, vec![(me.author(), 2)]);
    let err = s.put(b"k".to_vec(), b"3".to_vec()).await.unwrap_err();
    assert!(matches!(err, StoreError::Equivocated { fork_seq: 2 }), "{err}");
    assert!(err.to_string().contains("backup"), "{err}");
    assert_eq!(s.get(b"k").await.unwrap(), Some(b"1".to_vec()));
}

/// The next commit event that carries proofs (bounded wait).
async fn next_proofs(
    commits: &mut tokio::sync::broadcast::Receiver<std::sync::Arc<lattice_store::Committed>>,
) -> Vec<(Vec<u8>, Vec<u8>)> {
    loop {
        let committed = tokio::time::timeout(DEADLINE, commits.recv()).await.unwrap().unwrap();
        if !committed.proofs.is_empty() {
            return committed.proofs.clone();
        }
    }
}

/// A proof new to a store, found on ingest or taken from a peer, is in the commit event that
/// made it (what gossip passes on, DESIGN.md §7.4); one the store held already never is, so
/// relaying proofs cannot echo.
#[tokio::test]
async fn commit_events_carry_each_new_proof_once() {
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let sid = StoreId::new_random();
    let mut x = Chain::new(sid);
    x.put("k1", "v");
    let detected = open(dir_a.path(), sid, &Identity::generate());
    let told = open(dir_b.path(), sid, &Identity::generate());
    let (mut detected_commits, mut told_commits) = (detected.subscribe_commits(), told.subscribe_commits());
    ingest(&detected, &x.entries[0]).await.unwrap();
    let twin1 = twin(&x, 1, "k1", "evil");
    assert!(is_equivocation(ingest(&detected, &twin1).await, 1));
    let proof = proof_of(&x.entries[0], &twin1);
    assert_eq!(next_proofs(&mut detected_commits).await, vec![proof.clone()], "found on ingest");

    assert!(told.ingest_proof(proof.1.clone(), proof.0.clone()).await.unwrap());
    assert_eq!(next_proofs(&mut told_commits).await, vec![proof.clone()], "taken from a peer");
    // Known now: offered again (or its branch ingested again), it makes no event with a proof.
    assert!(!told.ingest_proof(proof.0.clone(), proof.1.clone()).await.unwrap());
    assert!(is_equivocation(ingest(&detected, &twin1).await, 1), "still a fork, but a known one");
    let marker = Chain::new(sid).put("marker", "v");
    for s in [&detected, &told] {
        ingest(s, &marker).await.unwrap();
    }
    for commits in [&mut detected_commits, &mut told_commits] {
        loop {
            let committed = tokio::time::timeout(DEADLINE, commits.recv()).await.unwrap().unwrap();
            assert!(committed.proofs.is_empty(), "a known proof was announced again");
            if committed.remote > 0 {
                break;
            }
        }
    }
}
