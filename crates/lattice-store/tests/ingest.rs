//! Ingest: every refusal leaves the store exactly as it was, and usable; duplicates are no-ops.
//! (An equivocating entry is refused too, but proves a fork, which changes the store: see
//! `equivocation.rs`.)

mod common;

use common::{Chain, Snapshot, open, snapshot};
use lattice_core::entry::{MAX_ENTRY_BYTES, MAX_KEY_BYTES, MAX_VALUE_BYTES};
use lattice_core::{ChainError, EntryError, Hash, Hlc, Identity, Op, StoreId, VerifiedEntry, proto};
use lattice_store::{IngestError, IngestOutcome, KvStore, StoreHandle, SyncStore};
use prost::Message;

/// A store holding local writes and three entries of a remote author `r`.
struct Fixture {
    _dir: tempfile::TempDir,
    store: StoreHandle,
    sid: StoreId,
    r: Chain,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let sid = StoreId::new_random();
    let store = open(dir.path(), sid, &Identity::generate());
    store.put(b"local/1".to_vec(), b"l1".to_vec()).await.unwrap();
    store.put(b"local/2".to_vec(), b"l2".to_vec()).await.unwrap();
    let mut r = Chain::new(sid);
    r.put("remote/1", "r1");
    r.put("remote/2", "r2");
    r.put("remote/3", "r3");
    for res in store.ingest_batch(r.bytes()).await.unwrap() {
        assert!(matches!(res.unwrap(), IngestOutcome::Applied { .. }));
    }
    Fixture { _dir: dir, store, sid, r }
}

/// Re-signs a hand-edited `Entry` with `id`, bypassing `EntryBuilder`'s checks.
fn sign_raw(entry: &proto::Entry, id: &Identity) -> Vec<u8> {
    let entry_bytes = entry.encode_to_vec();
    let signature = id.sign(&entry_bytes).to_vec();
    proto::SignedEntry { entry_bytes, signature, author_id: id.author().0.to_vec() }.encode_to_vec()
}

/// The `Entry` message inside an encoded `SignedEntry`.
fn inner(e: &VerifiedEntry) -> proto::Entry {
    let signed = proto::SignedEntry::decode(e.bytes()).unwrap();
    proto::Entry::decode(signed.entry_bytes.as_slice()).unwrap()
}

fn put_op(key: Vec<u8>, value: Vec<u8>) -> proto::Operation {
    proto::Operation { op: Some(proto::operation::Op::Put(proto::Put { key, value })) }
}

/// Ingests `bytes`, expects a refusal, checks nothing observable changed, and returns the error.
async fn refused(f: &Fixture, before: &Snapshot, bytes: Vec<u8>) -> IngestError {
    let err = f.store.ingest(bytes).await.expect_err("entry must be refused");
    assert_eq!(&snapshot(&f.store).await, before, "a refused entry changed the store ({err})");
    err
}

/// After every refusal the store still takes writes and they land.
async fn still_usable(f: &Fixture, before: &Snapshot) {
    let r = f.store.put(b"after".to_vec(), b"ok".to_vec()).await.unwrap();
    assert_eq!(r.seq, before.sync_state.authors[&f.store.author()].seq + 1);
    assert_eq!(f.store.get(b"after").await.unwrap(), Some(b"ok".to_vec()));
    assert_eq!(f.store.status().await.unwrap().entries, before.status.entries + 1);
}

#[tokio::test]
async fn bad_signature_is_refused_and_changes_nothing() {
    let f = fixture().await;
    let before = snapshot(&f.store).await;
    let good = f.r.builder().op(Op::put("x", "y")).sign(&f.r.id).unwrap();
    let mut signed = proto::SignedEntry::decode(good.bytes()).unwrap();
    signed.signature[7] ^= 0x10;
    let err = refused(&f, &before, signed.encode_to_vec()).await;
    assert!(matches!(err, IngestError::Invalid(EntryError::BadSignature)), "{err:?}");
    still_usable(&f, &before).await;
}

#[tokio::test]
async fn author_other_than_signer_is_refused_and_changes_nothing() {
    let f = fixture().await;
    let before = snapshot(&f.store).await;
    let good = f.r.builder().op(Op::put("x", "y")).sign(&f.r.id).unwrap();
    // Claim the entry is by the local node (an author the store already knows).
    let mut signed = proto::SignedEntry::decode(good.bytes()).unwrap();
    signed.author_id = f.store.author().0.to_vec();
    let err = refused(&f, &before, signed.encode_to_vec()).await;
    assert!(matches!(err, IngestError::Invalid(EntryError::BadSignature)), "{err:?}");
    // And a fresh, unknown author.
    let mut signed = proto::SignedEntry::decode(good.bytes()).unwrap();
    signed.author_id = Identity::generate().author().0.to_vec();
    let err = refused(&f, &before, signed.encode_to_vec()).await;
    assert!(matches!(err, IngestError::Invalid(EntryError::BadSignature)), "{err:?}");
    still_usable(&f, &before).await;
}

#[tokio::test]
async fn wrong_store_id_is_refused_even_as_a_would_be_orphan() {
    let f = fixture().await;
    let before = snapshot(&f.store).await;
    let other = StoreId::new_random();
    let e = lattice_core::EntryBuilder::new(other, 4)
        .prev_hash(f.r.last_hash())
        .timestamp(f.r.last_hlc().successor())
        .op(Op::put("x", "y"))
        .sign(&f.r.id)
        .unwrap();
    let err = refused(&f, &before, e.into_bytes()).await;
    assert!(
        matches!(err, IngestError::Chain(ChainError::WrongStore { expected, got }) if expected == f.sid && got == other),
        "{err:?}"
    );
    // Far ahead of the author's tip: would be an orphan if its store were right. Not parked.
    let e = lattice_core::EntryBuilder::new(other, 9)
        .prev_hash(Hash::of(b"x"))
        .timestamp(Hlc::new(5_000, 0))
        .op(Op::put("x", "y"))
        .sign(&Identity::generate())
        .unwrap();
    let err = refused(&f, &before, e.into_bytes()).await;
    assert!(matches!(err, IngestError::Chain(ChainError::WrongStore { .. })), "{err:?}");
    still_usable(&f, &before).await;
}

#[tokio::test]
async fn forged_prev_hash_is_refused_and_changes_nothing() {
    let f = fixture().await;
    let before = snapshot(&f.store).await;
    let forged = Hash::of(b"not the previous entry");
    let e = f.r.builder().prev_hash(forged).op(Op::put("x", "y")).sign(&f.r.id).unwrap();
    let err = refused(&f, &before, e.into_bytes()).await;
    match err {
        IngestError::Chain(ChainError::ForgedPrevHash { author, seq, expected, got }) => {
            assert_eq!((author, seq, expected, got), (f.r.id.author(), 4, f.r.last_hash(), forged));
        }
        other => panic!("expected ForgedPrevHash, got {other:?}"),
    }
    still_usable(&f, &before).await;
}

#[tokio::test]
async fn hlc_not_after_the_predecessor_is_refused_and_changes_nothing() {
    let f = fixture().await;
    let before = snapshot(&f.store).await;
    let prev = f.r.last_hlc();
    for hlc in [prev, Hlc::new(prev.wall_ms - 1, 7), Hlc::ZERO] {
        let e = f.r.builder().timestamp(hlc).op(Op::put("x", "y")).sign(&f.r.id).unwrap();
        let err = refused(&f, &before, e.into_bytes()).await;
        assert!(
            matches!(err, IngestError::Chain(ChainError::HlcNotIncreasing { seq: 4, prev: p, got, .. }) if p == prev && got == hlc),
            "{err:?}"
        );
    }
    still_usable(&f, &before).await;
}

#[tokio::test]
async fn oversize_key_value_and_entry_are_refused_and_change_nothing() {
    let f = fixture().await;
    let before = snapshot(&f.store).await;
    let template = inner(&f.r.builder().op(Op::put("k", "v")).sign(&f.r.id).unwrap());

    let mut e = template.clone();
    e.ops = vec![put_op(vec![b'k'; MAX_KEY_BYTES + 1], b"v".to_vec())];
    let err = refused(&f, &before, sign_raw(&e, &f.r.id)).await;
    assert!(
        matches!(err, IngestError::Invalid(EntryError::KeyTooLarge { index: 0, len }) if len == MAX_KEY_BYTES + 1),
        "{err:?}"
    );

    let mut e = template.clone();
    e.ops = vec![put_op(b"k".to_vec(), vec![0; MAX_VALUE_BYTES + 1])];
    let err = refused(&f, &before, sign_raw(&e, &f.r.id)).await;
    assert!(
        matches!(err, IngestError::Invalid(EntryError::ValueTooLarge { index: 0, len }) if len == MAX_VALUE_BYTES + 1),
        "{err:?}"
    );

    // Every op within its limits, the whole entry over 4 MiB.
    let mut e = template.clone();
    e.ops = (0..5u8).map(|i| put_op(vec![b'k', i], vec![i; MAX_VALUE_BYTES])).collect();
    let bytes = sign_raw(&e, &f.r.id);
    assert!(bytes.len() > MAX_ENTRY_BYTES);
    let err = refused(&f, &before, bytes).await;
    assert!(matches!(err, IngestError::Invalid(EntryError::EntryTooLarge { .. })), "{err:?}");

    // At the limits exactly, the same hand-built path is accepted: the refusals above were
    // about size, not about the way the entries were built.
    let mut e = template;
    e.ops = vec![put_op(vec![b'k'; MAX_KEY_BYTES], vec![1; MAX_VALUE_BYTES])];
    assert_eq!(f.store.ingest(sign_raw(&e, &f.r.id)).await.unwrap(), IngestOutcome::Applied { released: 0 });
    assert_eq!(f.store.get(&[b'k'; MAX_KEY_BYTES]).await.unwrap().map(|v| v.len()), Some(MAX_VALUE_BYTES));
}

#[tokio::test]
async fn malformed_bytes_are_refused_and_change_nothing() {
    let f = fixture().await;
    let before = snapshot(&f.store).await;
    let valid = f.r.builder().op(Op::put("x", "y")).sign(&f.r.id).unwrap().into_bytes();
    let cases: Vec<Vec<u8>> = vec![
        vec![0xff, 0xff, 0xff],
        vec![],
        valid[..valid.len() / 2].to_vec(),
        b"definitely not protobuf \x00\x01\x02".to_vec(),
        vec![0; 4096],
    ];
    for bytes in cases {
        let err = refused(&f, &before, bytes.clone()).await;
        assert!(matches!(err, IngestError::Invalid(_)), "{bytes:?}: {err:?}");
    }
    // Signed garbage: a signature over bytes that are not an Entry.
    let signed = proto::SignedEntry {
        entry_bytes: vec![0xff; 10],
        signature: f.r.id.sign(&[0xff; 10]).to_vec(),
        author_id: f.r.id.author().0.to_vec(),
    };
    let err = refused(&f, &before, signed.encode_to_vec()).await;
    assert!(matches!(err, IngestError::Invalid(EntryError::Malformed(_))), "{err:?}");
    still_usable(&f, &before).await;
}

#[tokio::test]
async fn duplicates_are_no_ops() {
    let f = fixture().await;
    let before = snapshot(&f.store).await;
    for e in &f.r.entries {
        assert_eq!(f.store.ingest(e.bytes().to_vec()).await.unwrap(), IngestOutcome::Duplicate);
    }
    // Our own entries echoed back by a peer.
    let own = common::all_entries(&f.store).await;
    let own: Vec<Vec<u8>> =
        own.into_iter().filter(|e| e.author() == f.store.author()).map(|e| e.into_bytes()).collect();
    assert_eq!(own.len(), 2);
    // The same entry twice in one batch, and everything at once.
    let mut batch = own.clone();
    batch.extend(own.clone());
    batch.extend(f.r.bytes());
    for res in f.store.ingest_batch(batch).await.unwrap() {
        assert_eq!(res.unwrap(), IngestOutcome::Duplicate);
    }
    assert_eq!(snapshot(&f.store).await, before);
    still_usable(&f, &before).await;
}

#[tokio::test]
async fn one_refused_entry_does_not_condemn_its_batch_neighbours() {
    let f = fixture().await;
    let mut r = f.r;
    let e4 = r.put("remote/4", "r4");
    let mut bad = proto::SignedEntry::decode(r.builder().op(Op::put("x", "y")).sign(&r.id).unwrap().bytes()).unwrap();
    bad.signature[0] ^= 1;
    let forged = r.builder().prev_hash(Hash::of(b"f")).op(Op::put("z", "z")).sign(&r.id).unwrap();
    let e5 = r.put("remote/5", "r5");
    let batch = vec![e4.bytes().to_vec(), bad.encode_to_vec(), vec![1, 2, 3], forged.into_bytes(), e5.into_bytes()];
    let results = f.store.ingest_batch(batch).await.unwrap();
    assert_eq!(results.len(), 5);
    assert_eq!(results[0].as_ref().unwrap(), &IngestOutcome::Applied { released: 0 });
    assert!(matches!(results[1], Err(IngestError::Invalid(EntryError::BadSignature))));
    assert!(matches!(results[2], Err(IngestError::Invalid(EntryError::Malformed(_)))));
    assert!(matches!(results[3], Err(IngestError::Chain(ChainError::ForgedPrevHash { seq: 5, .. }))));
    assert_eq!(results[4].as_ref().unwrap(), &IngestOutcome::Applied { released: 0 });
    assert_eq!(f.store.get(b"remote/5").await.unwrap(), Some(b"r5".to_vec()));
    assert_eq!(f.store.get(b"z").await.unwrap(), None);
    assert_eq!(f.store.sync_state().await.unwrap().authors[&r.id.author()].seq, 5);
}

#[tokio::test]
async fn refusals_survive_a_restart_unchanged() {
    // Refused entries never reach a log: after a restart (and a rebuild from the logs) the
    // store is what it was before them.
    let dir = tempfile::tempdir().unwrap();
    let sid = StoreId::new_random();
    let id = Identity::generate();
    let s = open(dir.path(), sid, &id);
    let mut r = Chain::new(sid);
    r.put("a", "1");
    s.ingest(r.entries[0].bytes().to_vec()).await.unwrap();
    let before = snapshot(&s).await;
    let forged = r.builder().prev_hash(Hash::of(b"f")).op(Op::put("b", "2")).sign(&r.id).unwrap();
    assert!(s.ingest(forged.into_bytes()).await.is_err());
    let stale = r.builder().timestamp(Hlc::ZERO).op(Op::put("b", "2")).sign(&r.id).unwrap();
    assert!(s.ingest(stale.into_bytes()).await.is_err());
    s.close().await.unwrap();
    let s = open(dir.path(), sid, &id);
    assert_eq!(snapshot(&s).await, before);
    s.close().await.unwrap();
    std::fs::remove_file(dir.path().join("state.db")).unwrap();
    let s = open(dir.path(), sid, &id);
    assert_eq!(snapshot(&s).await, before);
}

#[test]
fn sign_raw_matches_entry_builder() {
    // The hand-built path used above produces exactly what EntryBuilder produces.
    let id = Identity::generate();
    let e = lattice_core::EntryBuilder::new(StoreId::new_random(), 1)
        .timestamp(Hlc::new(3, 0))
        .op(Op::put("k", "v"))
        .sign(&id)
        .unwrap();
    assert_eq!(sign_raw(&inner(&e), &id), e.bytes());
    assert_eq!(VerifiedEntry::decode(sign_raw(&inner(&e), &id)).unwrap(), e);
}
