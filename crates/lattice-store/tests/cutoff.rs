//! Removal is causal (DESIGN.md §7.2): a removed author's entries up to its cut-off apply; later
//! ones are refused (stored, counted, served by sync, never applied, never parked); an entry that
//! cites a refused one applies as if that parent were absent; and a store that learns the cut-off
//! after the entries ends in the same state as one that knew it first, through reopens and a
//! rebuild from the logs.

mod common;

use common::{Chain, open, snapshot, sync_into};
use lattice_core::{Identity, Op, StoreId};
use lattice_store::{
    Authorisation, Change, Cutoff, IngestOutcome, KvStore, StoreError, StoreHandle, SyncStore, WatchEvent,
};
use lattice_testkit::DEADLINE;

/// The source of a watch event: `entry`.
fn by(entry: &lattice_core::VerifiedEntry) -> Change {
    Change { hash: entry.hash(), hlc: entry.hlc(), author: entry.author() }
}

/// Members `members`, and `removed` cut off at `cutoff`.
fn policy(members: &[&Chain], removed: &Chain, cutoff: u64) -> Option<Authorisation> {
    Some(Authorisation {
        members: members.iter().map(|c| c.id.author()).collect(),
        cutoffs: [(removed.id.author(), Cutoff::at_seq(cutoff))].into(),
    })
}

async fn ingest(s: &StoreHandle, entry: &lattice_core::VerifiedEntry) -> IngestOutcome {
    s.ingest(entry.bytes().to_vec()).await.unwrap()
}

/// The next watch event, failing the test after the deadline.
async fn next_event(rx: &mut tokio::sync::mpsc::Receiver<WatchEvent>) -> WatchEvent {
    tokio::time::timeout(DEADLINE, rx.recv()).await.expect("a watch event").expect("the watch is open")
}

#[tokio::test]
async fn entries_past_the_cutoff_are_stored_counted_and_served_but_not_applied_nor_parked() {
    let dir = tempfile::tempdir().unwrap();
    let sid = StoreId::new_random();
    let s = open(dir.path(), sid, &Identity::generate());
    let mut x = Chain::new(sid);
    let x1 = x.put("k", "1");
    let x2 = x.next_with(vec![x1.hash()], vec![Op::put("k", "2")]);
    let x3 = x.next_with(vec![x2.hash()], vec![Op::put("k", "3"), Op::put("x3-only", "v")]);
    let x4 = x.put("x4-only", "v");
    let (x5, x6) = (x.put("k", "5"), x.put("k", "6"));
    s.set_authorisation(policy(&[], &x, 2)).await.unwrap();
    let (_, mut events) = s.watch(".").await.unwrap();

    assert_eq!(ingest(&s, &x1).await, IngestOutcome::Applied { released: 0 });
    assert_eq!(ingest(&s, &x2).await, IngestOutcome::Applied { released: 0 });
    assert_eq!(ingest(&s, &x3).await, IngestOutcome::Refused);
    assert_eq!(ingest(&s, &x4).await, IngestOutcome::Refused);
    assert_eq!(ingest(&s, &x3).await, IngestOutcome::Duplicate, "a stored refused entry is held");
    // Ahead of its predecessor: dropped, neither parked nor counted (sync sends it in order).
    assert_eq!(ingest(&s, &x6).await, IngestOutcome::Refused);

    assert_eq!(s.get(b"k").await.unwrap(), Some(b"2".to_vec()));
    assert_eq!(s.get(b"x3-only").await.unwrap(), None);
    assert_eq!(s.get(b"x4-only").await.unwrap(), None);
    assert_eq!(s.get_heads(b"k").await.unwrap().len(), 1);
    let st = s.status().await.unwrap();
    assert_eq!((st.entries, st.refused, st.orphans, st.keys, st.authors), (2, 2, 0, 1, 1));
    assert_eq!(s.sync_state().await.unwrap().authors[&x.id.author()].seq, 4, "sync state shows them");
    // Only the applied entries made events: the next one is a later write's.
    let put = |value: &str, entry| WatchEvent::Put { key: b"k".to_vec(), value: value.into(), source: by(entry) };
    assert_eq!(next_event(&mut events).await, put("1", &x1));
    assert_eq!(next_event(&mut events).await, put("2", &x2));
    let mine = s.put(b"mine".to_vec(), b"m".to_vec()).await.unwrap();
    assert_eq!(next_event(&mut events).await.key(), b"mine");
    // The history a watch replays holds the applied entries only.
    let history = s.history(lattice_core::Hlc::ZERO).await.unwrap();
    let replayed = tokio::task::spawn_blocking(move || history.map(|e| e.unwrap().hash()).collect::<Vec<_>>());
    let mut want = [(x1.hlc(), x1.hash()), (x2.hlc(), x2.hash()), (mine.hlc, mine.hash)];
    want.sort();
    assert_eq!(replayed.await.unwrap(), want.iter().map(|w| w.1).collect::<Vec<_>>(), "no refused entry");

    // Sync serves the refused entries like any: a store that does not know the cut-off applies
    // them; one that does refuses them alike.
    let open_dir = tempfile::tempdir().unwrap();
    let knows_nothing = open(open_dir.path(), sid, &Identity::generate());
    assert_eq!(sync_into(&s, &knows_nothing).await, 5);
    assert_eq!(knows_nothing.get(b"x4-only").await.unwrap(), Some(b"v".to_vec()));
    let same_dir = tempfile::tempdir().unwrap();
    let same = open(same_dir.path(), sid, &Identity::generate());
    let mut cut = policy(&[], &x, 2).unwrap();
    cut.members.insert(s.author());
    same.set_authorisation(Some(cut)).await.unwrap();
    sync_into(&s, &same).await;
    let st = same.status().await.unwrap();
    assert_eq!((st.entries, st.refused, st.orphans), (3, 2, 0));
    // x5 after x4: stored; then x6 too.
    assert_eq!(ingest(&s, &x5).await, IngestOutcome::Refused);
    assert_eq!(ingest(&s, &x6).await, IngestOutcome::Refused);
    assert_eq!(s.status().await.unwrap().refused, 4);
}

/// Issue 13: "B's entry citing X's entry waits forever". It is applied, in either arrival order,
/// as if the refused parent were absent (removing a non-head is a no-op).
#[tokio::test]
async fn an_entry_citing_a_refused_entry_applies_in_either_order() {
    for parent_first in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let sid = StoreId::new_random();
        let s = open(dir.path(), sid, &Identity::generate());
        let (mut x, mut b) = (Chain::new(sid), Chain::new(sid));
        let x1 = x.put("k", "x1");
        let x2 = x.next_with(vec![x1.hash()], vec![Op::put("k", "x2")]);
        // B had applied x2 before it learned of the removal: it cites x2 alone.
        b.wall = 5_000;
        let b1 = b.next_with(vec![x2.hash()], vec![Op::put("k", "b1")]);
        s.set_authorisation(policy(&[&b], &x, 1)).await.unwrap();
        assert_eq!(ingest(&s, &x1).await, IngestOutcome::Applied { released: 0 });
        if parent_first {
            assert_eq!(ingest(&s, &x2).await, IngestOutcome::Refused);
            assert_eq!(ingest(&s, &b1).await, IngestOutcome::Applied { released: 0 });
        } else {
            assert!(matches!(ingest(&s, &b1).await, IngestOutcome::Orphaned(g) if g.missing_parent == Some(x2.hash())));
            assert_eq!(ingest(&s, &x2).await, IngestOutcome::Refused, "and it releases b1");
        }
        let heads: Vec<_> = s.get_heads(b"k").await.unwrap().into_iter().map(|h| h.hash).collect();
        assert_eq!(heads, vec![b1.hash(), x1.hash()], "x1 stays a head: b1 cited only the refused x2");
        assert_eq!(s.get(b"k").await.unwrap(), Some(b"b1".to_vec()));
        let st = s.status().await.unwrap();
        assert_eq!((st.entries, st.refused, st.orphans, st.conflicts), (2, 1, 0, 1));
    }
}

/// The entries of one removed author `x` and one member `m`, some of `m`'s citing `x`'s refused
/// ones (as written by a node that had applied them), on keys whose value the cut-off changes.
struct Scenario {
    x: Chain,
    m: Chain,
    entries: Vec<Vec<u8>>,
}

fn scenario(sid: StoreId) -> Scenario {
    let (mut x, mut m) = (Chain::new(sid), Chain::new(sid));
    let m1 = m.put("b", "m1");
    let x1 = x.put("a", "x1");
    let x2 = x.next_with(vec![x1.hash()], vec![Op::put("a", "x2")]);
    let x3 = x.next_with(vec![x2.hash()], vec![Op::put("a", "x3"), Op::put("x-only", "x3")]);
    let x4 = x.next_with(vec![m1.hash()], vec![Op::put("b", "x4")]);
    m.wall = 2_000;
    let m2 = m.next_with(vec![x3.hash()], vec![Op::put("a", "m2")]);
    let m3 = m.put("c", "m3");
    let entries = [m1, x1, x2, x3, x4, m2, m3].iter().map(|e| e.bytes().to_vec()).collect();
    Scenario { x, m, entries }
}

async fn ingest_all(s: &StoreHandle, entries: &[Vec<u8>]) {
    for r in s.ingest_batch(entries.to_vec()).await.unwrap() {
        r.unwrap();
    }
}

async fn heads(s: &StoreHandle) -> Vec<Vec<lattice_core::Head>> {
    let mut out = Vec::new();
    for k in ["a", "b", "c", "x-only"] {
        out.push(s.get_heads(k.as_bytes()).await.unwrap());
    }
    out
}

#[tokio::test]
async fn learning_the_cutoff_before_or_after_the_entries_gives_identical_state() {
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let sid = StoreId::new_random();
    let Scenario { x, m, entries } = scenario(sid);
    let cut = policy(&[&m], &x, 2);
    let before = open(dir_a.path(), sid, &Identity::generate());
    before.set_authorisation(cut.clone()).await.unwrap();
    ingest_all(&before, &entries).await;
    let after = open(dir_b.path(), sid, &Identity::generate());
    // In reverse: every entry but the first waits for something, then all apply.
    ingest_all(&after, &entries.iter().rev().cloned().collect::<Vec<_>>()).await;
    assert_eq!(after.status().await.unwrap().refused, 0);
    assert_eq!(after.get(b"x-only").await.unwrap(), Some(b"x3".to_vec()));
    let (_, mut events) = after.watch(".").await.unwrap();

    after.set_authorisation(cut.clone()).await.unwrap();
    assert_eq!(heads(&after).await, heads(&before).await);
    assert_eq!(snapshot(&after).await, snapshot(&before).await);
    let st = after.status().await.unwrap();
    assert_eq!((st.entries, st.refused, st.orphans), (5, 2, 0));
    assert_eq!(after.get(b"x-only").await.unwrap(), None);
    // The recomputation tells watchers what changed: b's x4 is gone (m1 is back), and so is the
    // key only x3 wrote.
    let mut changed = Vec::new();
    while changed.len() < 2 {
        let event = next_event(&mut events).await;
        if event.key() != b"a" {
            changed.push(event);
        }
    }
    assert_eq!(
        changed,
        vec![
            // No entry made these: the head visible again, and the one taken out (`Change`).
            WatchEvent::Put { key: b"b".to_vec(), value: b"m1".to_vec(), source: by(&m.entries[0]) },
            WatchEvent::Delete { key: b"x-only".to_vec(), source: by(&x.entries[2]) }
        ]
    );
    // The same policy again costs nothing and changes nothing.
    assert_eq!(after.set_authorisation(cut.clone()).await.unwrap(), 0);
    assert_eq!(snapshot(&after).await, snapshot(&before).await);

    // The policy is persisted: a reopen keeps the state, and so does a rebuild from the logs
    // once the node has set the policy again (state.db held it).
    let expected = snapshot(&before).await;
    let expected_heads = heads(&before).await;
    after.close().await.unwrap();
    let after = open(dir_b.path(), sid, &Identity::generate());
    assert_eq!(snapshot(&after).await, expected, "reopened");
    after.close().await.unwrap();
    std::fs::remove_file(dir_b.path().join("state.db")).unwrap();
    let after = open(dir_b.path(), sid, &Identity::generate());
    after.set_authorisation(cut).await.unwrap();
    assert_eq!(snapshot(&after).await, expected, "rebuilt from the logs");
    assert_eq!(heads(&after).await, expected_heads);

    // Lifting the cut-off applies the refused entries, on both, as on a store that never had one.
    let members = Some(Authorisation { members: [x.id.author(), m.id.author()].into(), ..Default::default() });
    before.set_authorisation(members.clone()).await.unwrap();
    after.set_authorisation(members).await.unwrap();
    let dir_c = tempfile::tempdir().unwrap();
    let never = open(dir_c.path(), sid, &Identity::generate());
    ingest_all(&never, &entries).await;
    assert_eq!(heads(&before).await, heads(&never).await);
    assert_eq!(heads(&after).await, heads(&never).await);
    assert_eq!(before.status().await.unwrap(), never.status().await.unwrap());
    assert_eq!(after.status().await.unwrap(), never.status().await.unwrap());
}

#[tokio::test]
async fn orphans_of_an_author_cut_off_later_are_stored_as_refused_not_kept_waiting() {
    let dir = tempfile::tempdir().unwrap();
    let sid = StoreId::new_random();
    let s = open(dir.path(), sid, &Identity::generate());
    let (mut x, mut m) = (Chain::new(sid), Chain::new(sid));
    let unseen = m.put("m", "never sent");
    let x1 = x.put("k", "1");
    let x2 = x.next_with(vec![unseen.hash()], vec![Op::put("k", "2")]);
    let x3 = x.put("k", "3");
    assert_eq!(ingest(&s, &x1).await, IngestOutcome::Applied { released: 0 });
    assert!(matches!(ingest(&s, &x2).await, IngestOutcome::Orphaned(_)), "waits for its parent");
    assert!(matches!(ingest(&s, &x3).await, IngestOutcome::Orphaned(_)), "waits for x2");
    assert_eq!(s.status().await.unwrap().orphans, 2);

    s.set_authorisation(policy(&[&m], &x, 1)).await.unwrap();
    let st = s.status().await.unwrap();
    assert_eq!((st.entries, st.refused, st.orphans), (1, 2, 0));
    assert_eq!(s.get(b"k").await.unwrap(), Some(b"1".to_vec()));
}

#[tokio::test]
async fn a_removed_node_is_told_its_local_writes_would_be_refused() {
    let dir = tempfile::tempdir().unwrap();
    let sid = StoreId::new_random();
    let me = Identity::generate();
    let s = open(dir.path(), sid, &me);
    s.put(b"k".to_vec(), b"1".to_vec()).await.unwrap();
    let cutoffs = [(me.author(), Cutoff::at_seq(1))].into();
    let removed = Authorisation { members: Default::default(), cutoffs };
    s.set_authorisation(Some(removed)).await.unwrap();
    let err = s.put(b"k".to_vec(), b"2".to_vec()).await.unwrap_err();
    assert!(matches!(err, StoreError::Removed { cutoff: 1 }), "{err}");
    assert!(err.to_string().contains("removed"), "{err}");
    assert_eq!(s.get(b"k").await.unwrap(), Some(b"1".to_vec()));
    // An author missing from both sets of the policy is not admitted: it waits as before.
    let stranger = Chain::new(sid).put("s", "1");
    assert_eq!(ingest(&s, &stranger).await, IngestOutcome::Unauthorised);
}

/// A fork of `chain` after its first `keep` entries: the same author, other entries from there.
fn fork(chain: &Chain, keep: usize) -> Chain {
    Chain { id: chain.id.clone(), store: chain.store, entries: chain.entries[..keep].to_vec(), wall: chain.wall + 500 }
}

/// Members `members`, and `removed` cut off at its entry `at` (seq and hash).
fn cut_at(members: &[&Chain], removed: &Chain, at: &lattice_core::VerifiedEntry) -> Option<Authorisation> {
    let mut policy = policy(members, removed, at.seq())?;
    policy.cutoffs.insert(removed.id.author(), Cutoff { seq: at.seq(), hash: at.hash() });
    Some(policy)
}

/// Issue 13 (DESIGN.md §7.2): the cut-off is a hash, not only a seq. An entry at the cut-off's
/// seq with another hash forks from the chain the cut-off names: refused, like what follows it;
/// the chain that ends at the cut-off applies.
#[tokio::test]
async fn an_entry_at_the_cutoff_seq_with_another_hash_is_refused() {
    let sid = StoreId::new_random();
    let mut x = Chain::new(sid);
    let x1 = x.put("k", "1");
    let x2 = x.next_with(vec![x1.hash()], vec![Op::put("k", "2")]);
    let x3 = x.next_with(vec![x2.hash()], vec![Op::put("k", "3")]);
    let mut other = fork(&x, 1);
    let y2 = other.next_with(vec![x1.hash()], vec![Op::put("k", "forked"), Op::put("fork-only", "y")]);
    let y3 = other.put("fork-only", "y3");

    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path(), sid, &Identity::generate());
    s.set_authorisation(cut_at(&[], &x, &x2)).await.unwrap();
    assert_eq!(ingest(&s, &x1).await, IngestOutcome::Applied { released: 0 });
    assert_eq!(ingest(&s, &y2).await, IngestOutcome::Refused, "seq 2 is the cut-off's, not its hash");
    assert_eq!(ingest(&s, &y3).await, IngestOutcome::Refused);
    assert_eq!(s.get(b"k").await.unwrap(), Some(b"1".to_vec()));
    assert_eq!(s.get(b"fork-only").await.unwrap(), None);
    let st = s.status().await.unwrap();
    assert_eq!((st.entries, st.refused, st.orphans), (1, 2, 0));

    // The chain that ends at the cut-off applies in full; what follows it does not.
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path(), sid, &Identity::generate());
    s.set_authorisation(cut_at(&[], &x, &x2)).await.unwrap();
    assert_eq!(ingest(&s, &x1).await, IngestOutcome::Applied { released: 0 });
    assert_eq!(ingest(&s, &x2).await, IngestOutcome::Applied { released: 0 });
    assert_eq!(ingest(&s, &x3).await, IngestOutcome::Refused);
    assert_eq!(s.get(b"k").await.unwrap(), Some(b"2".to_vec()));
}

/// A store that applied the fork before it learned the cut-off's hash recomputes, and ends as a
/// store that knew it first; a cut-off that moves to another hash at the same seq (the limit
/// unchanged) moves the state with it, through a rebuild from the logs too.
#[tokio::test]
async fn learning_the_cutoff_hash_after_the_fork_applied_recomputes_it() {
    let sid = StoreId::new_random();
    let mut x = Chain::new(sid);
    let x1 = x.put("k", "1");
    let x2 = x.next_with(vec![x1.hash()], vec![Op::put("k", "2")]);
    let mut other = fork(&x, 1);
    let y2 = other.next_with(vec![x1.hash()], vec![Op::put("k", "forked"), Op::put("fork-only", "y")]);

    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path(), sid, &Identity::generate());
    assert_eq!(ingest(&s, &x1).await, IngestOutcome::Applied { released: 0 });
    assert_eq!(ingest(&s, &y2).await, IngestOutcome::Applied { released: 0 });
    s.set_authorisation(cut_at(&[], &other, &y2)).await.unwrap();
    assert_eq!(s.get(b"k").await.unwrap(), Some(b"forked".to_vec()), "y2 is the cut-off: it applies");
    let (_, mut events) = s.watch(".").await.unwrap();

    // The remover held x2 at seq 2: y2 forks from the cut-off.
    s.set_authorisation(cut_at(&[], &x, &x2)).await.unwrap();
    assert_eq!(s.get(b"k").await.unwrap(), Some(b"1".to_vec()));
    assert_eq!(s.get(b"fork-only").await.unwrap(), None);
    let st = s.status().await.unwrap();
    assert_eq!((st.entries, st.refused), (1, 1));
    let mut changed = vec![next_event(&mut events).await, next_event(&mut events).await];
    changed.sort_by(|a, b| a.key().cmp(b.key()));
    assert_eq!(
        changed,
        vec![
            WatchEvent::Delete { key: b"fork-only".to_vec(), source: by(&y2) },
            WatchEvent::Put { key: b"k".to_vec(), value: b"1".to_vec(), source: by(&x1) }
        ]
    );
    let knew_first_dir = tempfile::tempdir().unwrap();
    let knew_first = open(knew_first_dir.path(), sid, &Identity::generate());
    knew_first.set_authorisation(cut_at(&[], &x, &x2)).await.unwrap();
    ingest(&knew_first, &x1).await;
    assert_eq!(ingest(&knew_first, &y2).await, IngestOutcome::Refused);
    assert_eq!(snapshot(&s).await, snapshot(&knew_first).await);

    // Rebuilt from the logs under the same policy: the same state.
    s.close().await.unwrap();
    std::fs::remove_file(dir.path().join("state.db")).unwrap();
    let s = open(dir.path(), sid, &Identity::generate());
    s.set_authorisation(cut_at(&[], &x, &x2)).await.unwrap();
    assert_eq!(snapshot(&s).await, snapshot(&knew_first).await);
    // A cut-off whose hash is not known binds by seq alone: y2 applies again.
    s.set_authorisation(policy(&[], &x, 2)).await.unwrap();
    assert_eq!(s.get(b"k").await.unwrap(), Some(b"forked".to_vec()));
}

/// A node cut off at a seq it does not hold (it lost its last entries, a restored backup) is
/// refused a write there: the entry it would write forks from the one the cut-off names.
#[tokio::test]
async fn our_own_write_at_the_cutoff_seq_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let sid = StoreId::new_random();
    let me = Identity::generate();
    let s = open(dir.path(), sid, &me);
    s.put(b"k".to_vec(), b"1".to_vec()).await.unwrap();
    let lost = Cutoff { seq: 2, hash: lattice_core::Hash::of(b"the entry 2 we lost") };
    let removed = Authorisation { members: Default::default(), cutoffs: [(me.author(), lost)].into() };
    s.set_authorisation(Some(removed)).await.unwrap();
    let err = s.put(b"k".to_vec(), b"2".to_vec()).await.unwrap_err();
    assert!(matches!(err, StoreError::Removed { cutoff: 2 }), "{err}");
    assert_eq!(s.get(b"k").await.unwrap(), Some(b"1".to_vec()));
}
