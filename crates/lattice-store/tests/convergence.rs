//! Convergence: replicas that end up holding the same entries hold the same state, whatever
//! the order, duplication and loss of deliveries on the way, and whenever each learns that one
//! of them was removed with a cut-off; among them entries of other authors that cite no parents
//! or stale ones, and still every key holds at most one head per author; and a single store
//! behaves like a map (through restarts and index rebuilds).

mod common;

use std::collections::BTreeMap;

use common::{Chain, all_entries, snapshot, sync_all};
use lattice_core::{Hash, Identity, Op, StoreId};
use lattice_store::{Authorisation, Cutoff, IngestOutcome, KvStore, StoreConfig, StoreError, StoreHandle, SyncStore};
use proptest::prelude::*;
use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng, rngs::StdRng};

const REPLICAS: usize = 3;
/// Authors other than the replicas, whose entries are built by hand (as another
/// implementation might): a replica receives them, and they spread by the deliveries.
const FOREIGN: usize = 2;
const KEYS: u8 = 4;

fn key(k: u8) -> Vec<u8> {
    format!("k{k}").into_bytes()
}

#[derive(Clone, Debug)]
enum WriteOp {
    Put(u8, u8),
    Delete(u8),
}

impl WriteOp {
    fn to_op(&self) -> Op {
        match self {
            WriteOp::Put(k, v) => Op::put(key(*k), vec![*v]),
            WriteOp::Delete(k) => Op::delete(key(*k)),
        }
    }
}

#[derive(Clone, Debug)]
enum Step {
    /// One op goes through `put`/`delete`; several through `batch`.
    Write { replica: usize, ops: Vec<WriteOp> },
    /// Some of `from`'s entries reach `to`: shuffled, some duplicated, some dropped.
    Deliver { from: usize, to: usize, seed: u64 },
    /// Foreign author `author` writes `ops` as its next entry, citing `cite`, and `replica`
    /// receives it.
    Foreign { replica: usize, author: usize, ops: Vec<WriteOp>, cite: Cite },
}

/// What a foreign entry cites in `parent_hashes`.
#[derive(Clone, Debug)]
enum Cite {
    /// Nothing, not even its author's own heads.
    Nothing,
    /// Up to three entries the replica holds, picked by the seed: mostly no longer heads.
    Stale(u64),
    /// The current heads of the keys it touches, at the replica (as a local write does).
    Current,
}

fn write_op() -> impl Strategy<Value = WriteOp> {
    prop_oneof![
        3 => (0..KEYS, any::<u8>()).prop_map(|(k, v)| WriteOp::Put(k, v)),
        1 => (0..KEYS).prop_map(WriteOp::Delete),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => (0..REPLICAS, prop::collection::vec(write_op(), 1..4)).prop_map(|(replica, ops)| Step::Write { replica, ops }),
        2 => (0..REPLICAS, 1..REPLICAS, any::<u64>())
            .prop_map(|(from, d, seed)| Step::Deliver { from, to: (from + d) % REPLICAS, seed }),
        2 => (0..REPLICAS, 0..FOREIGN, prop::collection::vec(write_op(), 1..3), cite())
            .prop_map(|(replica, author, ops, cite)| Step::Foreign { replica, author, ops, cite }),
    ]
}

fn cite() -> impl Strategy<Value = Cite> {
    prop_oneof![
        2 => Just(Cite::Nothing),
        2 => any::<u64>().prop_map(Cite::Stale),
        1 => Just(Cite::Current),
    ]
}

/// Signs foreign author `chain`'s next entry (its clock at least the replica's wall clock, so it
/// competes with the replicas' writes) and hands it to `to`.
async fn write_foreign(to: &StoreHandle, chain: &mut Chain, skew: i64, ops: &[WriteOp], cite: &Cite) {
    let parents: Vec<Hash> = match cite {
        Cite::Nothing => Vec::new(),
        Cite::Stale(seed) => {
            let held = all_entries(to).await;
            let mut rng = StdRng::seed_from_u64(*seed);
            held.choose_multiple(&mut rng, 3).map(|e| e.hash()).collect()
        }
        Cite::Current => {
            let mut heads = Vec::new();
            for op in ops {
                for h in to.get_heads(op.to_op().key()).await.unwrap() {
                    if !heads.contains(&h.hash) {
                        heads.push(h.hash);
                    }
                }
            }
            heads
        }
    };
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    chain.wall = chain.wall.max(now.saturating_add_signed(skew));
    let entry = chain.next_with(parents, ops.iter().map(WriteOp::to_op).collect());
    // Its predecessor may be at another replica: then it waits there until a delivery brings it.
    let outcome = to.ingest(entry.into_bytes()).await.expect("a valid foreign entry was refused");
    assert!(matches!(outcome, IngestOutcome::Applied { .. } | IngestOutcome::Orphaned(_)), "{outcome:?}");
}

/// DESIGN.md §4: a key holds at most one head per author.
async fn assert_one_head_per_author(s: &StoreHandle) {
    for k in 0..KEYS {
        let heads = s.get_heads(&key(k)).await.unwrap();
        let mut authors: Vec<_> = heads.iter().map(|h| h.author).collect();
        authors.sort();
        authors.dedup();
        assert_eq!(authors.len(), heads.len(), "key {k} holds two heads of one author: {heads:?}");
    }
}

/// Writes `ops`; false if the store refuses it because its node was removed (past its cut-off).
async fn write(s: &StoreHandle, ops: &[WriteOp]) -> bool {
    let written = match ops {
        [WriteOp::Put(k, v)] => s.put(key(*k), vec![*v]).await.map(drop),
        [WriteOp::Delete(k)] => s.delete(key(*k)).await.map(drop),
        _ => s.batch(ops.iter().map(WriteOp::to_op).collect()).await.map(drop),
    };
    match written {
        Ok(()) => true,
        Err(StoreError::Removed { .. }) => false,
        Err(e) => panic!("write failed: {e}"),
    }
}

/// One replica removed with a cut-off, and when each replica learns it: before step
/// `learn_at[i]` (at most `steps.len()`: after the last step; one more: after the full exchange).
#[derive(Clone, Debug)]
struct Removal {
    replica: usize,
    cutoff: u64,
    learn_at: [usize; REPLICAS],
}

fn removal() -> impl Strategy<Value = Option<Removal>> {
    prop::option::of(
        (0..REPLICAS, 0..5u64, [0..42usize, 0..42usize, 0..42usize]).prop_map(|(replica, cutoff, learn_at)| Removal {
            replica,
            cutoff,
            learn_at,
        }),
    )
}

impl Removal {
    /// `ids`: the replicas' identities, then the foreign authors' (members all).
    fn policy(&self, ids: &[Identity]) -> Option<Authorisation> {
        let removed = ids[self.replica].author();
        Some(Authorisation {
            members: ids.iter().map(Identity::author).filter(|a| *a != removed).collect(),
            cutoffs: [(removed, Cutoff::at_seq(self.cutoff))].into(),
        })
    }
}

/// Tells the replicas that learn of `removal` at `at` (a step index, clamped to `last`).
async fn learn(stores: &[StoreHandle], removal: &Option<Removal>, ids: &[Identity], at: usize, last: usize) {
    let Some(r) = removal else { return };
    for (i, s) in stores.iter().enumerate() {
        if r.learn_at[i].min(last) == at {
            s.set_authorisation(r.policy(ids)).await.unwrap();
        }
    }
}

/// Ingests `entries` into `to` in one or more batches; every entry must be accepted
/// (applied, held as an orphan, or a duplicate): they are all valid.
async fn ingest_all(to: &StoreHandle, entries: Vec<Vec<u8>>, rng: &mut StdRng) {
    let mut rest = entries.as_slice();
    while !rest.is_empty() {
        let n = rng.random_range(1..=rest.len());
        let (batch, tail) = rest.split_at(n);
        for res in to.ingest_batch(batch.to_vec()).await.unwrap() {
            let outcome = res.expect("a valid entry was refused");
            assert!(matches!(
                outcome,
                IngestOutcome::Applied { .. }
                    | IngestOutcome::Duplicate
                    | IngestOutcome::Orphaned(_)
                    | IngestOutcome::Refused
            ));
        }
        rest = tail;
    }
}

async fn deliver(from: &StoreHandle, to: &StoreHandle, seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut entries = Vec::new();
    for e in all_entries(from).await {
        if rng.random_bool(0.3) {
            continue; // lost
        }
        if rng.random_bool(0.2) {
            entries.push(e.bytes().to_vec()); // duplicated
        }
        entries.push(e.into_bytes());
    }
    entries.shuffle(&mut rng);
    ingest_all(to, entries, &mut rng).await;
}

/// What each replica exposes, compared across replicas.
type Observed = (Vec<Vec<lattice_core::Head>>, Vec<Option<Vec<u8>>>, common::Snapshot);

async fn observe(s: &StoreHandle) -> Observed {
    let mut heads = Vec::new();
    let mut values = Vec::new();
    for k in 0..KEYS {
        heads.push(s.get_heads(&key(k)).await.unwrap());
        values.push(s.get(&key(k)).await.unwrap());
    }
    (heads, values, snapshot(s).await)
}

/// Clock offsets a replica may run with: behind, on time, ahead within the drift bound (60 s)
/// and ahead beyond it.
const SKEWS: [i64; 4] = [-90_000, 0, 30_000, 150_000];

async fn run_replicas(steps: Vec<Step>, skews: [usize; REPLICAS], removal: Option<Removal>, final_seed: u64) {
    let dir = common::fast_tempdir();
    let sid = StoreId::new_random();
    let mut foreign: Vec<Chain> = (0..FOREIGN).map(|_| Chain::new(sid)).collect();
    let ids: Vec<Identity> =
        (0..REPLICAS).map(|_| Identity::generate()).chain(foreign.iter().map(|c| c.id.clone())).collect();
    let config = |i: usize| StoreConfig { clock_offset_ms: SKEWS[skews[i]], ..StoreConfig::default() };
    let open = |i: usize| StoreHandle::open(&dir.path().join(i.to_string()), sid, ids[i].clone(), config(i)).unwrap();
    let mut stores: Vec<StoreHandle> = (0..REPLICAS).map(open).collect();
    let last = steps.len() + 1;
    let mut writes = 0u64;
    for (at, step) in steps.iter().enumerate() {
        learn(&stores, &removal, &ids, at, last).await;
        match step {
            Step::Write { replica, ops } => writes += u64::from(write(&stores[*replica], ops).await),
            Step::Deliver { from, to, seed } => deliver(&stores[*from], &stores[*to], *seed).await,
            Step::Foreign { replica, author, ops, cite } => {
                let skew = SKEWS[skews[*replica]];
                write_foreign(&stores[*replica], &mut foreign[*author], skew, ops, cite).await;
                writes += 1;
            }
        }
        for s in &stores {
            assert_one_head_per_author(s).await;
        }
    }
    learn(&stores, &removal, &ids, steps.len(), last).await;
    let mut rng = StdRng::seed_from_u64(final_seed);
    full_exchange(&stores, &mut rng).await;
    learn(&stores, &removal, &ids, last, last).await;
    // The shuffled exchange may have dropped refused entries that came before their
    // predecessor; a sync (each author in seq order) brings them, as it does in a mesh.
    sync_all(&stores, 64).await;
    let first = observe(&stores[0]).await;
    for s in &stores[1..] {
        assert_eq!(observe(s).await, first, "replicas diverged");
    }
    assert_one_head_per_author(&stores[0]).await;
    // Every write landed everywhere, nothing is left waiting, and the counters match the data.
    for s in &stores {
        let st = s.status().await.unwrap();
        assert_eq!(st.orphans, 0);
        assert!(st.entries <= writes);
        assert_eq!(st.entries + st.refused, s.sync_state().await.unwrap().total_entries());
        if removal.is_none() {
            assert_eq!(st.refused, 0);
        }
        assert_eq!(st.keys, s.list(b"", None, usize::MAX).await.unwrap().len() as u64);
        let mut conflicted = 0;
        for k in 0..KEYS {
            conflicted += u64::from(s.get_heads(&key(k)).await.unwrap().len() > 1);
        }
        assert_eq!(st.conflicts, conflicted);
    }

    // Each replica rebuilds its index from its logs: same state (once the node has set the
    // policy again: it lived in state.db). A write made after the rebuild is valid (its chain
    // continues) and the replicas converge again.
    for (i, s) in stores.iter_mut().enumerate() {
        s.close().await.unwrap();
        std::fs::remove_file(dir.path().join(i.to_string()).join("state.db")).unwrap();
        *s = open(i);
        if let Some(r) = &removal {
            s.set_authorisation(r.policy(&ids)).await.unwrap();
        }
        assert_eq!(observe(s).await, first, "rebuilding replica {i}'s index changed it");
    }
    for (i, s) in stores.iter().enumerate() {
        let k = key(i as u8 % KEYS);
        let heads = s.get_heads(&k).await.unwrap();
        let r = match s.put(k, b"after rebuild".to_vec()).await {
            Ok(r) => r,
            Err(StoreError::Removed { .. }) if removal.as_ref().is_some_and(|r| r.replica == i) => continue,
            Err(e) => panic!("write after the rebuild failed: {e}"),
        };
        if skews.iter().all(|x| *x == skews[0]) {
            // Clocks agree, so no remote clock was clamped: a write after seeing an entry is later.
            assert!(heads.iter().all(|h| h.hlc < r.hlc), "a write after a rebuild is later than what it supersedes");
        }
    }
    full_exchange(&stores, &mut rng).await;
    let again = observe(&stores[0]).await;
    for s in &stores[1..] {
        assert_eq!(observe(s).await, again, "replicas diverged after the rebuild");
    }
    assert_one_head_per_author(&stores[0]).await;
    for s in stores {
        let st = s.status().await.unwrap();
        assert_eq!(st.orphans, 0);
        s.close().await.unwrap();
    }
}

/// Every replica receives every entry of every other, in a random order.
async fn full_exchange(stores: &[StoreHandle], rng: &mut StdRng) {
    let mut everything = Vec::new();
    for s in stores {
        everything.push(all_entries(s).await.into_iter().map(|e| e.into_bytes()).collect::<Vec<_>>());
    }
    for (i, to) in stores.iter().enumerate() {
        let mut entries: Vec<Vec<u8>> =
            everything.iter().enumerate().filter(|(j, _)| *j != i).flat_map(|(_, e)| e.clone()).collect();
        entries.shuffle(rng);
        ingest_all(to, entries, rng).await;
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

// 32 cases by default (fast); `PROPTEST_CASES=n` runs more, `LATTICE_TEST_SEED=s` replays a run.
proptest! {
    #![proptest_config(lattice_testkit::proptest_config("store convergence", 32))]

    #[test]
    fn three_skewed_replicas_converge_after_lossy_shuffled_deliveries_and_a_full_exchange(
        steps in prop::collection::vec(step(), 1..40),
        skews in [0..SKEWS.len(), 0..SKEWS.len(), 0..SKEWS.len()],
        removal in removal(),
        final_seed in any::<u64>(),
    ) {
        runtime().block_on(run_replicas(steps, skews, removal, final_seed));
    }
}

// ---------- a single store against a map ----------

const MODEL_KEYS: [&str; 6] = ["a", "a/1", "a/2", "ab", "b", "b/1"];

#[derive(Clone, Debug)]
enum ModelStep {
    Put(usize, u8),
    Delete(usize),
    Batch(Vec<(usize, Option<u8>)>),
    Reopen,
    List { prefix: usize, after: Option<usize>, limit: usize },
}

fn model_step() -> impl Strategy<Value = ModelStep> {
    let k = 0..MODEL_KEYS.len();
    prop_oneof![
        4 => (k.clone(), any::<u8>()).prop_map(|(k, v)| ModelStep::Put(k, v)),
        2 => k.clone().prop_map(ModelStep::Delete),
        2 => prop::collection::vec((k.clone(), prop::option::of(any::<u8>())), 1..5).prop_map(ModelStep::Batch),
        1 => Just(ModelStep::Reopen),
        2 => (0..3usize, prop::option::of(k), 1..4usize)
            .prop_map(|(prefix, after, limit)| ModelStep::List { prefix, after, limit }),
    ]
}

type Model = BTreeMap<Vec<u8>, Vec<u8>>;

fn model_list(m: &Model, prefix: &[u8], after: Option<&[u8]>, limit: usize) -> Vec<(Vec<u8>, Vec<u8>)> {
    m.iter()
        .filter(|(k, _)| k.starts_with(prefix) && after.is_none_or(|a| k.as_slice() > a))
        .take(limit)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

async fn check_against(s: &StoreHandle, m: &Model) {
    for k in MODEL_KEYS {
        assert_eq!(s.get(k.as_bytes()).await.unwrap().as_ref(), m.get(k.as_bytes()), "get {k}");
    }
    assert_eq!(s.list(b"", None, usize::MAX).await.unwrap(), model_list(m, b"", None, usize::MAX));
    assert_eq!(s.status().await.unwrap().keys, m.len() as u64);
}

async fn run_model(steps: Vec<ModelStep>) {
    let dir = common::fast_tempdir();
    let sid = StoreId::new_random();
    let id = Identity::generate();
    let open = || StoreHandle::open(dir.path(), sid, id.clone(), StoreConfig::default()).unwrap();
    let mut s = open();
    let mut m = Model::new();
    let mut written = 0u64;
    for step in steps {
        match step {
            ModelStep::Put(k, v) => {
                s.put(MODEL_KEYS[k].into(), vec![v]).await.unwrap();
                m.insert(MODEL_KEYS[k].into(), vec![v]);
                written += 1;
            }
            ModelStep::Delete(k) => {
                let r = s.delete(MODEL_KEYS[k].into()).await.unwrap();
                let was = m.remove(MODEL_KEYS[k].as_bytes());
                assert_eq!(r.is_some(), was.is_some(), "delete writes iff the key was visible");
                written += u64::from(r.is_some());
            }
            ModelStep::Batch(ops) => {
                let mut batch = Vec::new();
                for (k, v) in ops {
                    match v {
                        Some(v) => {
                            batch.push(Op::put(MODEL_KEYS[k], vec![v]));
                            m.insert(MODEL_KEYS[k].into(), vec![v]);
                        }
                        None => {
                            batch.push(Op::delete(MODEL_KEYS[k]));
                            m.remove(MODEL_KEYS[k].as_bytes());
                        }
                    }
                }
                s.batch(batch).await.unwrap();
                written += 1;
            }
            ModelStep::Reopen => {
                s.close().await.unwrap();
                s = open();
            }
            ModelStep::List { prefix, after, limit } => {
                let prefix = ["", "a", "a/"][prefix].as_bytes();
                let after = after.map(|a| MODEL_KEYS[a].as_bytes().to_vec());
                let got = s.list(prefix, after.clone(), limit).await.unwrap();
                assert_eq!(got, model_list(&m, prefix, after.as_deref(), limit), "list {prefix:?} after {after:?}");
            }
        }
        check_against(&s, &m).await;
        let st = s.status().await.unwrap();
        assert_eq!((st.entries, st.conflicts, st.orphans), (written, 0, 0));
    }
    let before = snapshot(&s).await;
    s.close().await.unwrap();
    std::fs::remove_file(dir.path().join("state.db")).unwrap();
    let s = open();
    assert_eq!(snapshot(&s).await, before, "rebuilding state.db from the logs changed the store");
    check_against(&s, &m).await;
    s.close().await.unwrap();
}

proptest! {
    #![proptest_config(lattice_testkit::proptest_config("store convergence with deletes", 32))]

    #[test]
    fn a_single_store_matches_a_map_through_reopens_and_a_rebuild(steps in prop::collection::vec(model_step(), 1..40)) {
        runtime().block_on(run_model(steps));
    }
}
