//! Unit tests of what only the synchronous store can show: a batch's deferred rows read back
//! within it, an index commit that fails after the logs were synced, crashes around a policy
//! change, and tables of older layouts met at open.

use lattice_core::heads::Head;
use lattice_core::{EntryBuilder, Hash, Hlc, Identity, Op, StoreId, VerifiedEntry};

use super::{Store, wall_ms};
use crate::durable;
use crate::error::StoreError;
use crate::tables;
use crate::types::{Authorisation, Cutoff, IngestOutcome, StoreConfig, Transaction, WriteReceipt};

fn remote_entry(
    store: StoreId,
    who: &Identity,
    seq: u64,
    prev: Hash,
    parents: Vec<Hash>,
    ops: Vec<Op>,
) -> VerifiedEntry {
    EntryBuilder::new(store, seq)
        .prev_hash(prev)
        .timestamp(Hlc::new(wall_ms(0), seq as u32))
        .parent_hashes(parents)
        .ops(ops)
        .sign(who)
        .unwrap()
}

/// A batch that holds its index rows back must read its own pending rows: a duplicate is
/// seen as one, a parent received earlier in the batch counts as held, a key touched twice
/// keeps one head, a local write cites the heads received before it; and the rows land at
/// commit, in the same state a batch without deferral gives.
#[test]
fn deferred_index_rows_are_read_back_within_the_batch_and_land_at_commit() {
    let dir = tempfile::tempdir().unwrap();
    let sid = StoreId::new_random();
    let mut store = Store::open(dir.path(), sid, Identity::generate(), StoreConfig::default()).unwrap();
    let remote = Identity::generate();
    let e1 = remote_entry(sid, &remote, 1, Hash::ZERO, vec![], vec![Op::put("k", "1")]);
    let e2 = remote_entry(sid, &remote, 2, e1.hash(), vec![e1.hash()], vec![Op::put("k", "2"), Op::put("j", "x")]);

    let mut tx = store.begin(true).unwrap();
    let receipt = {
        let (mut t, w) = tx.split().unwrap();
        t.defer_index_writes();
        assert_eq!(store.ingest(&mut t, w, e1.clone()).unwrap(), IngestOutcome::Applied { released: 0 });
        assert_eq!(store.ingest(&mut t, w, e1.clone()).unwrap(), IngestOutcome::Duplicate);
        assert_eq!(store.ingest(&mut t, w, e2.clone()).unwrap(), IngestOutcome::Applied { released: 0 });
        assert_eq!(t.heads_in(b"k").unwrap().len(), 1, "e2 superseded e1 on k");
        let receipt = store.local_write(&mut t, w, Transaction::new(vec![Op::put("k", "3")])).unwrap();
        t.flush_deferred().unwrap();
        receipt
    };
    store.commit(tx).unwrap();

    let heads = store.get_heads(b"k").unwrap();
    assert_eq!(heads.len(), 1, "the local write cited e2's head");
    assert_eq!(heads[0].hash, receipt.hash);
    assert_eq!(store.get(b"k").unwrap(), Some(b"3".to_vec()));
    assert_eq!(store.get(b"j").unwrap(), Some(b"x".to_vec()));
    let status = store.status().unwrap();
    assert_eq!((status.entries, status.authors, status.keys, status.conflicts), (3, 2, 2, 0));
    let tips = store.sync_state().unwrap().authors;
    assert_eq!((tips[&remote.author()].seq, tips[&store.identity.author()].seq), (2, 1), "author rows landed");
    // The entries rows are in the table: the same entries again are duplicates.
    let mut tx = store.begin(true).unwrap();
    {
        let (mut t, w) = tx.split().unwrap();
        assert_eq!(store.ingest(&mut t, w, e1).unwrap(), IngestOutcome::Duplicate);
        assert_eq!(store.ingest(&mut t, w, e2).unwrap(), IngestOutcome::Duplicate);
    }
    store.commit(tx).unwrap();
}

fn local_put(store: &mut Store, key: &str, value: &str) -> Result<WriteReceipt, StoreError> {
    let mut tx = store.begin(false)?;
    let receipt = {
        let (mut t, w) = tx.split()?;
        store.local_write(&mut t, w, Transaction::new(vec![Op::put(key, value)]))?
    };
    store.commit(tx)?;
    Ok(receipt)
}

/// An index commit that fails after the logs were synced: the write is acknowledged (it is
/// durable), the store refuses further work rather than build on an index that lags its
/// logs (a local write would reuse a seq and fork our chain), and a reopen replays the log
/// so every write is there and the chain continues.
#[test]
fn a_failed_index_commit_stops_the_store_and_a_reopen_recovers_the_write() {
    let dir = tempfile::tempdir().unwrap();
    let sid = StoreId::new_random();
    let id = Identity::generate();
    let mut store = Store::open(dir.path(), sid, id.clone(), StoreConfig::default()).unwrap();
    assert_eq!(local_put(&mut store, "a", "1").unwrap().seq, 1);
    store.fail_next_index_commit = true;
    assert_eq!(local_put(&mut store, "b", "2").unwrap().seq, 2, "durable in the log: acknowledged");
    let refused = local_put(&mut store, "c", "3").unwrap_err();
    assert!(matches!(refused, StoreError::Stopped(_)), "{refused}");
    assert!(refused.to_string().contains("reopen"), "{refused}");
    assert!(store.checkpoint().is_err(), "nothing is committed any more");
    drop(store);

    let mut store = Store::open(dir.path(), sid, id, StoreConfig::default()).unwrap();
    assert_eq!(store.replayed, 1, "the write the index missed is replayed from the log");
    assert_eq!(store.get(b"a").unwrap(), Some(b"1".to_vec()));
    assert_eq!(store.get(b"b").unwrap(), Some(b"2".to_vec()));
    assert_eq!(local_put(&mut store, "c", "3").unwrap().seq, 3, "the chain continues, unforked");
    assert_eq!(store.status().unwrap().entries, 3);
}

/// A meta clock row of the wrong length is a corrupt index, like any other bad row; it used to
/// be skipped, and the store then resumed its clock from the wall clock alone.
#[test]
fn a_clock_row_of_the_wrong_length_is_a_corrupt_index() {
    let dir = tempfile::tempdir().unwrap();
    let sid = StoreId::new_random();
    let id = Identity::generate();
    let mut store = Store::open(dir.path(), sid, id.clone(), StoreConfig::default()).unwrap();
    local_put(&mut store, "a", "1").unwrap();
    store.checkpoint().unwrap();
    let tx = store.state.begin_write().unwrap();
    tx.open_table(tables::META).unwrap().insert(tables::META_CLOCK, [7u8; 8].as_slice()).unwrap();
    tx.commit().unwrap();
    drop(store);

    match Store::open(dir.path(), sid, id, StoreConfig::default()) {
        Err(StoreError::CorruptIndex(what)) => assert_eq!(what, "clock"),
        Err(e) => panic!("expected a corrupt index, got {e}"),
        Ok(_) => panic!("a clock row of 8 bytes was accepted"),
    }
}

fn ingest_all(store: &mut Store, entries: &[VerifiedEntry]) -> Vec<IngestOutcome> {
    let mut tx = store.begin(true).unwrap();
    let outcomes = {
        let (mut t, w) = tx.split().unwrap();
        entries.iter().map(|e| store.ingest(&mut t, w, e.clone()).unwrap()).collect()
    };
    store.commit(tx).unwrap();
    outcomes
}

fn set_policy(store: &mut Store, authorisation: Option<Authorisation>) {
    let mut tx = store.begin(true).unwrap();
    {
        let (mut t, w) = tx.split().unwrap();
        store.set_authorisation(&mut t, w, authorisation).unwrap();
    }
    store.commit(tx).unwrap();
}

/// A store, and a remote author `x` with three puts of `k` (each citing the one before) and a
/// cut-off at 1.
struct CutOff {
    dir: tempfile::TempDir,
    sid: StoreId,
    id: Identity,
    entries: Vec<VerifiedEntry>,
    policy: Option<Authorisation>,
}

impl CutOff {
    fn new() -> Self {
        let sid = StoreId::new_random();
        let x = Identity::generate();
        let mut entries: Vec<VerifiedEntry> = Vec::new();
        for seq in 1..=3 {
            let prev = entries.last().map_or(Hash::ZERO, |e| e.hash());
            let parents = entries.last().map(|e| vec![e.hash()]).unwrap_or_default();
            entries.push(remote_entry(sid, &x, seq, prev, parents, vec![Op::put("k", format!("{seq}"))]));
        }
        let policy =
            Some(Authorisation { cutoffs: [(x.author(), Cutoff::at_seq(1))].into(), ..Authorisation::default() });
        CutOff { dir: tempfile::tempdir().unwrap(), sid, id: Identity::generate(), entries, policy }
    }

    fn open(&self) -> Store {
        Store::open(self.dir.path(), self.sid, self.id.clone(), StoreConfig::default()).unwrap()
    }
}

/// A crash after a policy change committed but before the index was recomputed: the open
/// recomputes it (the `recompute` meta row says so), as if the policy had been known first.
#[test]
fn a_crash_between_a_policy_change_and_its_recomputation_is_finished_at_open() {
    let c = CutOff::new();
    let mut store = c.open();
    ingest_all(&mut store, &c.entries);
    set_policy(&mut store, c.policy.clone());
    assert!(store.needs_settling(), "the recomputation is left to the actor, after the commit");
    assert_eq!(store.get(b"k").unwrap(), Some(b"3".to_vec()), "not recomputed yet");
    drop(store);

    let mut store = c.open();
    assert_eq!(store.get(b"k").unwrap(), Some(b"1".to_vec()));
    let status = store.status().unwrap();
    assert_eq!((status.entries, status.refused), (1, 2));
    drop(store);
    assert_eq!(c.open().replayed, 0, "the rebuild cleared the recompute row");
}

/// Entries refused under a persisted policy whose index commit was lost are replayed from the
/// logs under the same policy: still refused.
#[test]
fn the_replay_of_unindexed_tails_refuses_what_the_policy_refuses() {
    let c = CutOff::new();
    let mut store = c.open();
    set_policy(&mut store, c.policy.clone());
    store.fail_next_index_commit = true;
    let outcomes = ingest_all(&mut store, &c.entries);
    assert_eq!(outcomes[1..], [IngestOutcome::Refused, IngestOutcome::Refused]);
    drop(store);

    let mut store = c.open();
    assert_eq!(store.replayed, 3);
    assert_eq!(store.get(b"k").unwrap(), Some(b"1".to_vec()));
    let status = store.status().unwrap();
    assert_eq!((status.entries, status.refused, status.orphans), (1, 2, 0));
}

/// DESIGN.md §3: new directories and files are made durable (their parent directory fsynced)
/// before a write in them is acknowledged: the store's directories and databases at open, and
/// a new author's log (ours or a peer's) before the commit of its first entry returns; an
/// existing log costs no directory fsync.
#[test]
fn new_dirs_databases_and_logs_are_made_durable_before_the_write_returns() {
    let dir = tempfile::tempdir().unwrap();
    let store_dir = dir.path().join("stores").join("one");
    let logs = store_dir.join("logs");
    let sid = StoreId::new_random();
    let id = Identity::generate();
    durable::take_synced_dirs();
    let mut store = Store::open(&store_dir, sid, id.clone(), StoreConfig::default()).unwrap();
    let synced = durable::take_synced_dirs();
    assert_eq!(synced[..3], [dir.path().to_path_buf(), dir.path().join("stores"), store_dir.clone()], "{synced:?}");
    assert_eq!(synced.iter().filter(|d| **d == store_dir).count(), 3, "logs/, state.db, orphans.db: {synced:?}");
    assert!(!synced.contains(&logs), "no log yet");

    let remote = Identity::generate();
    let e1 = remote_entry(sid, &remote, 1, Hash::ZERO, vec![], vec![Op::put("k", "1")]);
    let e2 = remote_entry(sid, &remote, 2, e1.hash(), vec![e1.hash()], vec![Op::put("k", "2")]);
    for (entry, new_log) in [(e1, true), (e2, false)] {
        let mut tx = store.begin(true).unwrap();
        {
            let (mut t, w) = tx.split().unwrap();
            assert_eq!(store.ingest(&mut t, w, entry).unwrap(), IngestOutcome::Applied { released: 0 });
        }
        store.commit(tx).unwrap();
        let expected = if new_log { vec![logs.clone()] } else { vec![] };
        assert_eq!(durable::take_synced_dirs(), expected);
    }
    local_put(&mut store, "mine", "1").unwrap();
    assert_eq!(durable::take_synced_dirs(), vec![logs.clone()], "our own first entry creates our log");
    local_put(&mut store, "mine", "2").unwrap();
    assert_eq!(durable::take_synced_dirs(), Vec::<std::path::PathBuf>::new());
    drop(store);
    // A reopen creates nothing.
    Store::open(&store_dir, sid, id, StoreConfig::default()).unwrap();
    assert_eq!(durable::take_synced_dirs(), Vec::<std::path::PathBuf>::new());
}

fn table_names(db: &redb::Database) -> Vec<String> {
    use redb::{MultimapTableHandle, ReadableDatabase, TableHandle};
    let tx = db.begin_read().unwrap();
    let mut names: Vec<String> = tx.list_tables().unwrap().map(|t| t.name().to_string()).collect();
    names.extend(tx.list_multimap_tables().unwrap().map(|t| t.name().to_string()));
    names
}

/// A state.db whose heads were indexed before a key held at most one head per author
/// (`kv_v1`): the open drops them and rebuilds the index from the logs under the current rule.
#[test]
fn heads_indexed_under_the_old_rule_are_rebuilt_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let sid = StoreId::new_random();
    let id = Identity::generate();
    let remote = Identity::generate();
    let mut store = Store::open(dir.path(), sid, id.clone(), StoreConfig::default()).unwrap();
    let e1 = remote_entry(sid, &remote, 1, Hash::ZERO, vec![], vec![Op::put("k", "1")]);
    let e2 = remote_entry(sid, &remote, 2, e1.hash(), vec![], vec![Op::put("k", "2")]);
    ingest_all(&mut store, &[e1.clone(), e2.clone()]);
    local_put(&mut store, "j", "x").unwrap();
    store.checkpoint().unwrap();
    let want = store.get_heads(b"k").unwrap();
    assert_eq!(want.iter().map(|h| h.hash).collect::<Vec<_>>(), vec![e2.hash()], "e2 replaced e1");
    // As an older version left it: both of the author's heads, in `kv_v1`.
    let e1_head = Head {
        value: b"1".to_vec(),
        hlc: e1.hlc(),
        author: remote.author(),
        hash: e1.hash(),
        tombstone: false,
        kind: lattice_core::Kind::Register,
    };
    let old = vec![want[0].clone(), e1_head];
    let tx = store.state.begin_write().unwrap();
    tx.delete_table(tables::KV).unwrap();
    tx.open_table(tables::LEGACY_KV).unwrap().insert(b"k".as_slice(), tables::encode_heads(&old).as_slice()).unwrap();
    tx.commit().unwrap();
    drop(store);

    let mut store = Store::open(dir.path(), sid, id, StoreConfig::default()).unwrap();
    assert_eq!(store.replayed, 3, "rebuilt from the logs");
    assert_eq!(store.get_heads(b"k").unwrap(), want);
    assert_eq!(store.get(b"j").unwrap(), Some(b"x".to_vec()));
    assert_eq!(store.status().unwrap().conflicts, 0);
    assert!(!table_names(&store.state).contains(&"kv_v1".to_string()));
}

/// An orphans.db of the older layout (`orphans_v1` and its wait indexes, no byte totals) still
/// opens: its tables are dropped (sync brings their entries again), the current ones kept.
#[test]
fn an_orphan_buffer_of_the_older_layout_is_dropped_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let sid = StoreId::new_random();
    let id = Identity::generate();
    let remote = Identity::generate();
    let mut store = Store::open(dir.path(), sid, id.clone(), StoreConfig::default()).unwrap();
    let e1 = remote_entry(sid, &remote, 1, Hash::ZERO, vec![], vec![Op::put("k", "1")]);
    let e2 = remote_entry(sid, &remote, 2, e1.hash(), vec![], vec![Op::put("k", "2")]);
    assert!(matches!(ingest_all(&mut store, std::slice::from_ref(&e2))[0], IngestOutcome::Orphaned(_)));
    store.checkpoint().unwrap();
    let tx = store.orphans.begin_write().unwrap();
    {
        let mut old = tx.open_table(tables::LEGACY_ORPHANS).unwrap();
        old.insert([7; 32], [0u8; 57].as_slice()).unwrap();
        let waits: redb::MultimapTableDefinition<([u8; 32], u64), [u8; 32]> =
            redb::MultimapTableDefinition::new(tables::LEGACY_ORPHAN_WAITS[0]);
        tx.open_multimap_table(waits).unwrap().insert(([1; 32], 1), [7; 32]).unwrap();
        let waits: redb::MultimapTableDefinition<[u8; 32], [u8; 32]> =
            redb::MultimapTableDefinition::new(tables::LEGACY_ORPHAN_WAITS[1]);
        tx.open_multimap_table(waits).unwrap().insert([2; 32], [7; 32]).unwrap();
    }
    tx.commit().unwrap();
    drop(store);

    let mut store = Store::open(dir.path(), sid, id, StoreConfig::default()).unwrap();
    let names = table_names(&store.orphans);
    for legacy in ["orphans_v1", "wait_predecessor_v1", "wait_parent_v1"] {
        assert!(!names.contains(&legacy.to_string()), "{legacy} left in {names:?}");
    }
    assert_eq!(store.status().unwrap().orphans, 1, "the current buffer is kept");
    assert_eq!(ingest_all(&mut store, &[e1]), [IngestOutcome::Applied { released: 1 }]);
    assert_eq!(store.get(b"k").unwrap(), Some(b"2".to_vec()));
}
