//! Counters and sets converge (issue 17): 3 to 5 replicas increment, decrement, add, remove and
//! delete while partitioned, with lossy, duplicated and shuffled deliveries; after a full
//! exchange every replica shows the same values, and they are what the semantics say, computed
//! from the entries' causal order alone:
//! - a counter is the sum of the deltas no delete of the key observed (with no delete, the sum of
//!   all deltas);
//! - a member is present iff some add of it was observed by no remove of it and no delete of
//!   the key.
//!
//! "Observed" is the op's causal past through DAG parents and its author's chain (and, within one
//! entry, the ops before it). A rebuild of one replica's index from its logs changes nothing.

mod common;

use std::collections::{BTreeSet, HashMap, HashSet};

use common::{all_entries, sync_all};
use lattice_core::{AuthorId, Hash, Identity, Op, StoreId, VerifiedEntry};
use lattice_store::{IngestOutcome, KvStore, StoreConfig, StoreHandle, SyncStore, Value};
use proptest::prelude::*;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng, rngs::StdRng};

const MAX_REPLICAS: usize = 5;
const COUNTERS: [&str; 2] = ["c0", "c1"];
const SETS: [&str; 2] = ["s0", "s1"];
const MEMBERS: u8 = 3;

#[derive(Clone, Debug)]
enum KindOp {
    Incr(usize, i64),
    Sadd(usize, u8),
    Srem(usize, u8),
    /// Deletes a counter (`true`) or a set.
    Delete(bool, usize),
}

impl KindOp {
    fn to_op(&self) -> Op {
        match self {
            KindOp::Incr(k, d) => Op::counter_add(COUNTERS[*k], *d),
            KindOp::Sadd(k, m) => Op::set_add(SETS[*k], vec![b'm', *m]),
            KindOp::Srem(k, m) => Op::set_remove(SETS[*k], vec![b'm', *m]),
            KindOp::Delete(true, k) => Op::delete(COUNTERS[*k]),
            KindOp::Delete(false, k) => Op::delete(SETS[*k]),
        }
    }
}

#[derive(Clone, Debug)]
enum Step {
    /// One op alone, or several as one entry.
    Write { replica: usize, ops: Vec<KindOp> },
    /// Some of `from`'s entries reach `to` (shuffled, some duplicated, some lost), unless a
    /// partition separates them.
    Deliver { from: usize, to: usize, seed: u64 },
    /// The partition ends.
    Heal,
}

fn kind_op() -> impl Strategy<Value = KindOp> {
    prop_oneof![
        4 => (0..COUNTERS.len(), -5i64..=5).prop_map(|(k, d)| KindOp::Incr(k, d)),
        3 => (0..SETS.len(), 0..MEMBERS).prop_map(|(k, m)| KindOp::Sadd(k, m)),
        2 => (0..SETS.len(), 0..MEMBERS).prop_map(|(k, m)| KindOp::Srem(k, m)),
        1 => (any::<bool>(), 0..2usize).prop_map(|(c, k)| KindOp::Delete(c, k)),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        5 => (0..MAX_REPLICAS, prop::collection::vec(kind_op(), 1..3)).prop_map(|(replica, ops)| Step::Write { replica, ops }),
        3 => (0..MAX_REPLICAS, 1..MAX_REPLICAS, any::<u64>()).prop_map(|(from, d, seed)| Step::Deliver { from, to: from + d, seed }),
        1 => Just(Step::Heal),
    ]
}

async fn ingest_all(to: &StoreHandle, entries: Vec<Vec<u8>>, rng: &mut StdRng) {
    let mut rest = entries.as_slice();
    while !rest.is_empty() {
        let (batch, tail) = rest.split_at(rng.random_range(1..=rest.len()));
        for res in to.ingest_batch(batch.to_vec()).await.unwrap() {
            let outcome = res.expect("a valid entry was refused");
            assert!(matches!(
                outcome,
                IngestOutcome::Applied { .. } | IngestOutcome::Duplicate | IngestOutcome::Orphaned(_)
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
            continue;
        }
        if rng.random_bool(0.2) {
            entries.push(e.bytes().to_vec());
        }
        entries.push(e.into_bytes());
    }
    entries.shuffle(&mut rng);
    ingest_all(to, entries, &mut rng).await;
}

/// Shuffled deliveries of everything, then syncs until nothing is missing anywhere.
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
    sync_all(stores, 16).await;
}

/// The causal past of every entry (itself excluded): its parents, its author's previous entry,
/// and theirs.
fn causal_pasts(entries: &[VerifiedEntry]) -> HashMap<Hash, HashSet<Hash>> {
    let by_chain: HashMap<(AuthorId, u64), Hash> = entries.iter().map(|e| ((e.author(), e.seq()), e.hash())).collect();
    let by_hash: HashMap<Hash, &VerifiedEntry> = entries.iter().map(|e| (e.hash(), e)).collect();
    let mut pasts: HashMap<Hash, HashSet<Hash>> = HashMap::new();
    // In seq order per author and parents first: HLC order is causal order for local writes.
    let mut order: Vec<&VerifiedEntry> = entries.iter().collect();
    order.sort_by_key(|e| (e.hlc(), e.author()));
    for e in order {
        let mut past = HashSet::new();
        let previous = by_chain.get(&(e.author(), e.seq().wrapping_sub(1)));
        for p in e.parents().iter().chain(previous) {
            assert!(by_hash.contains_key(p), "a parent is missing after the exchange");
            past.insert(*p);
            past.extend(pasts[p].iter().copied());
        }
        pasts.insert(e.hash(), past);
    }
    pasts
}

/// What the semantics say each key shows: counters' sums and sets' members.
fn model(entries: &[VerifiedEntry]) -> (Vec<i64>, Vec<BTreeSet<Vec<u8>>>) {
    let pasts = causal_pasts(entries);
    let ops: Vec<(&VerifiedEntry, usize, &Op)> =
        entries.iter().flat_map(|e| e.ops().iter().enumerate().map(move |(i, op)| (e, i, op))).collect();
    // Whether the op at (entry `seen`, index `j`) is in the past of the op at (`by`, `i`).
    let observed = |seen: &VerifiedEntry, j: usize, by: &VerifiedEntry, i: usize| {
        pasts[&by.hash()].contains(&seen.hash()) || (seen.hash() == by.hash() && j < i)
    };
    let deletes_of = |key: &[u8]| -> Vec<(&VerifiedEntry, usize)> {
        ops.iter()
            .filter(|(_, _, op)| matches!(op, Op::Delete { key: k } if k == key))
            .map(|(e, i, _)| (*e, *i))
            .collect()
    };
    let sums = COUNTERS
        .iter()
        .map(|key| {
            let deletes = deletes_of(key.as_bytes());
            ops.iter()
                .filter_map(|(e, j, op)| match op {
                    Op::CounterAdd { key: k, delta } if k == key.as_bytes() => {
                        let cleared = deletes.iter().any(|(d, i)| observed(e, *j, d, *i));
                        (!cleared).then_some(*delta)
                    }
                    _ => None,
                })
                .sum()
        })
        .collect();
    let sets = SETS
        .iter()
        .map(|key| {
            let deletes = deletes_of(key.as_bytes());
            let mut present = BTreeSet::new();
            for (e, j, op) in &ops {
                let Op::SetAdd { key: k, member } = op else { continue };
                if k != key.as_bytes() {
                    continue;
                }
                let removed = ops.iter().any(|(r, i, rop)| {
                    matches!(rop, Op::SetRemove { key: rk, member: rm } if rk == k && rm == member)
                        && observed(e, *j, r, *i)
                }) || deletes.iter().any(|(d, i)| observed(e, *j, d, *i));
                if !removed {
                    present.insert(member.clone());
                }
            }
            present
        })
        .collect();
    (sums, sets)
}

type Observed = (Vec<lattice_store::KvValues>, Vec<Vec<lattice_core::Head>>);

async fn observe(s: &StoreHandle) -> Observed {
    let mut heads = Vec::new();
    for key in COUNTERS.iter().chain(&SETS) {
        heads.push(s.get_heads(key.as_bytes()).await.unwrap());
    }
    (vec![s.list_values(b"", None, usize::MAX).await.unwrap()], heads)
}

async fn run(replicas: usize, steps: Vec<Step>, groups: [bool; MAX_REPLICAS], final_seed: u64) {
    let dir = common::fast_tempdir();
    let sid = StoreId::new_random();
    let ids: Vec<Identity> = (0..replicas).map(|_| Identity::generate()).collect();
    let open = |i: usize| {
        StoreHandle::open(&dir.path().join(i.to_string()), sid, ids[i].clone(), StoreConfig::default()).unwrap()
    };
    let mut stores: Vec<StoreHandle> = (0..replicas).map(open).collect();
    let mut partitioned = true;
    for step in steps {
        match step {
            Step::Write { replica, ops } => {
                let s = &stores[replica % replicas];
                let ops: Vec<Op> = ops.iter().map(KindOp::to_op).collect();
                match ops.as_slice() {
                    [Op::Delete { key }] => drop(s.delete(key.clone()).await.unwrap()),
                    _ => drop(s.batch(ops).await.unwrap()),
                }
            }
            Step::Deliver { from, to, seed } => {
                let (from, to) = (from % replicas, to % replicas);
                if from != to && (!partitioned || groups[from] == groups[to]) {
                    deliver(&stores[from], &stores[to], seed).await;
                }
            }
            Step::Heal => partitioned = false,
        }
    }
    let mut rng = StdRng::seed_from_u64(final_seed);
    full_exchange(&stores, &mut rng).await;
    let first = observe(&stores[0]).await;
    for s in &stores[1..] {
        assert_eq!(observe(s).await, first, "replicas diverged");
    }
    let entries = all_entries(&stores[0]).await;
    let (sums, sets) = model(&entries);
    for (key, sum) in COUNTERS.iter().zip(&sums) {
        match stores[0].value(key.as_bytes()).await.unwrap() {
            None => assert_eq!(*sum, 0, "{key} is not visible but its deltas sum to {sum}"),
            Some(value) => assert_eq!(value, Value::Counter(*sum), "{key}"),
        }
    }
    for (key, members) in SETS.iter().zip(&sets) {
        match stores[0].value(key.as_bytes()).await.unwrap() {
            None => assert!(members.is_empty(), "{key} is not visible but holds {members:?}"),
            Some(value) => assert_eq!(value, Value::Set(members.iter().cloned().collect()), "{key}"),
        }
    }
    // The index rebuilt from the logs shows the same.
    let s = stores.swap_remove(0);
    s.close().await.unwrap();
    std::fs::remove_file(dir.path().join("0").join("state.db")).unwrap();
    let rebuilt = open(0);
    assert_eq!(observe(&rebuilt).await, first, "rebuilding the index changed it");
    rebuilt.close().await.unwrap();
    for s in stores {
        s.close().await.unwrap();
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

// 32 cases by default; `PROPTEST_CASES=n` runs more, `LATTICE_TEST_SEED=s` replays a run.
proptest! {
    #![proptest_config(lattice_testkit::proptest_config("counter and set convergence", 32))]

    #[test]
    fn counters_and_sets_converge_to_what_the_causal_order_says(
        replicas in 3..=MAX_REPLICAS,
        steps in prop::collection::vec(step(), 1..50),
        groups in any::<[bool; MAX_REPLICAS]>(),
        final_seed in any::<u64>(),
    ) {
        runtime().block_on(run(replicas, steps, groups, final_seed));
    }
}
