//! Crash durability. The test binary re-runs itself as a child process (`child_writer`) that
//! makes acknowledged puts and reports each ack on stdout; the parent SIGKILLs it at a random
//! point, reopens the store and checks that every acknowledged write is there, that the index
//! is consistent, and that rebuilding it from the logs gives the same store.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use common::{log_records, snapshot};
use lattice_core::{Identity, StoreId, VerifiedEntry};
use lattice_store::{KvStore, StoreConfig, StoreHandle, SyncStore};
use rand::{Rng, rngs::StdRng};

const ENV_DIR: &str = "LATTICE_CRASH_CHILD_DIR";
const ENV_STORE: &str = "LATTICE_CRASH_CHILD_STORE";
const ENV_SEED: &str = "LATTICE_CRASH_CHILD_SEED";
const ENV_TRIAL: &str = "LATTICE_CRASH_CHILD_TRIAL";
const ENV_CHECKPOINT_MS: &str = "LATTICE_CRASH_CHILD_CHECKPOINT_MS";
/// Optional: a file of hex-encoded entries (one a line) the child ingests before writing.
const ENV_INGEST: &str = "LATTICE_CRASH_CHILD_INGEST";
/// The child stops by itself after this many puts if nobody kills it.
const CHILD_MAX_PUTS: u64 = 5_000;
/// Concurrent writer tasks in the child.
const CHILD_WRITERS: usize = 4;

fn key(trial: u32, i: u64) -> Vec<u8> {
    format!("t{trial:02}/{i:05}").into_bytes()
}

/// Values of varying length, so records (and torn tails) differ in size.
fn value(trial: u32, i: u64) -> Vec<u8> {
    let mut v = format!("{trial}:{i}:").into_bytes();
    v.resize(v.len() + (i as usize * 37 + trial as usize * 11) % 700, b'x');
    v
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

/// Not a test: the child process of the crash tests. Ignored, so it only runs when a parent
/// starts it with `--ignored --exact child_writer` and the environment below.
#[test]
#[ignore = "child process of the crash tests"]
fn child_writer() {
    let Ok(dir) = std::env::var(ENV_DIR) else {
        eprintln!("child_writer runs only as the child of a crash test");
        return;
    };
    let env = |name: &str| std::env::var(name).unwrap_or_else(|_| panic!("{name} not set"));
    let sid = StoreId::parse(&env(ENV_STORE)).unwrap();
    let id = Identity::from_seed_bytes(&hex::decode(env(ENV_SEED)).unwrap()).unwrap();
    let trial: u32 = env(ENV_TRIAL).parse().unwrap();
    let checkpoint = Duration::from_millis(env(ENV_CHECKPOINT_MS).parse().unwrap());
    let config = StoreConfig { checkpoint_interval: checkpoint, ..Default::default() };
    runtime().block_on(async {
        let s = StoreHandle::open(Path::new(&dir), sid, id, config).unwrap();
        if let Ok(file) = std::env::var(ENV_INGEST) {
            let entries = std::fs::read_to_string(file).unwrap().lines().map(|l| hex::decode(l).unwrap()).collect();
            for res in s.ingest_batch(entries).await.unwrap() {
                res.unwrap();
            }
            println!("ingested");
        }
        // Several writers, so a kill can land in a group commit of several entries.
        let next = Arc::new(AtomicU64::new(0));
        let out = Arc::new(std::sync::Mutex::new(std::io::stdout()));
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..CHILD_WRITERS {
            let (s, next, out) = (s.clone(), next.clone(), out.clone());
            tasks.spawn(async move {
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= CHILD_MAX_PUTS {
                        break;
                    }
                    s.put(key(trial, i), value(trial, i)).await.unwrap();
                    let mut out = out.lock().unwrap();
                    writeln!(out, "acked {i}").unwrap();
                    out.flush().unwrap();
                }
            });
        }
        while let Some(r) = tasks.join_next().await {
            r.unwrap();
        }
    });
}

/// A crash-test store: its directory, id and owner.
struct Subject {
    dir: PathBuf,
    sid: StoreId,
    id: Identity,
}

impl Subject {
    /// A new store in `tmp/store` (the child's input files go next to it).
    fn new(tmp: &tempfile::TempDir) -> Self {
        Subject { dir: tmp.path().join("store"), sid: StoreId::new_random(), id: Identity::generate() }
    }

    fn open(&self) -> StoreHandle {
        StoreHandle::open(&self.dir, self.sid, self.id.clone(), StoreConfig::default()).unwrap()
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("logs").join(format!("{}.log", self.id.author().to_hex()))
    }

    /// Runs the child writer for `trial`, SIGKILLs it once it has reported `kill_after` acks,
    /// and returns the indices of the puts whose acks were seen.
    fn crash_child(&self, trial: u32, checkpoint_ms: u64, kill_after: usize) -> BTreeSet<u64> {
        self.crash_child_with(trial, checkpoint_ms, kill_after, &[])
    }

    /// [`Self::crash_child`], the child first ingesting `ingest` (acks imply it is committed).
    fn crash_child_with(&self, trial: u32, checkpoint_ms: u64, kill_after: usize, ingest: &[Vec<u8>]) -> BTreeSet<u64> {
        let mut command = Command::new(std::env::current_exe().unwrap());
        if !ingest.is_empty() {
            let file = self.dir.with_extension("ingest");
            std::fs::write(&file, ingest.iter().map(hex::encode).collect::<Vec<_>>().join("\n")).unwrap();
            command.env(ENV_INGEST, &file);
        }
        let mut child = command
            .args(["--exact", "child_writer", "--nocapture", "--ignored", "--test-threads=1"])
            .env(ENV_DIR, &self.dir)
            .env(ENV_STORE, self.sid.to_string())
            .env(ENV_SEED, hex::encode(self.id.seed()))
            .env(ENV_TRIAL, trial.to_string())
            .env(ENV_CHECKPOINT_MS, checkpoint_ms.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Lines arrive through a thread, so a stuck child fails the test instead of hanging it.
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut acked = BTreeSet::new();
        let mut failure = None;
        while acked.len() < kill_after {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(i) = line.strip_prefix("acked ") {
                        assert!(acked.insert(i.trim().parse::<u64>().unwrap()), "put {i} acked twice");
                    }
                }
                Err(e) => {
                    failure = Some(format!("child stopped reporting after {} acks: {e:?}", acked.len()));
                    break;
                }
            }
        }
        let _ = child.kill(); // SIGKILL (an error means it already exited)
        child.wait().unwrap();
        if let Some(f) = failure {
            let mut err = String::new();
            child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
            panic!("{f}\nchild stderr:\n{err}");
        }
        acked
    }
}

/// Reopens after a crash and checks: every acknowledged put of every trial so far is there with
/// its value; anything else visible is a put of this trial (acked, or landed without its ack
/// being seen) and joins `expected`; the index agrees with itself; a rebuild from the logs agrees.
async fn verify_after_crash(
    subject: &Subject,
    expected: &mut BTreeMap<Vec<u8>, Vec<u8>>,
    trial: u32,
    acked: &BTreeSet<u64>,
) {
    let s = subject.open();
    let list = s.list(b"", None, usize::MAX).await.unwrap();
    let got: BTreeMap<Vec<u8>, Vec<u8>> = list.iter().cloned().collect();
    for (k, v) in expected.iter() {
        assert_eq!(got.get(k), Some(v), "trial {trial}: acknowledged {} lost or changed", String::from_utf8_lossy(k));
    }
    for &i in acked {
        assert_eq!(got.get(&key(trial, i)), Some(&value(trial, i)), "trial {trial}: acked put {i} lost");
    }
    let prefix = format!("t{trial:02}/");
    for (k, v) in &got {
        if !expected.contains_key(k) {
            let text = String::from_utf8_lossy(k);
            let i: u64 = text.strip_prefix(&prefix).and_then(|i| i.parse().ok()).unwrap_or_else(|| {
                panic!("trial {trial}: unexpected key {text}");
            });
            assert_eq!(*v, value(trial, i), "trial {trial}: put {i} has a wrong value");
        }
    }
    *expected = got;
    let st = s.status().await.unwrap();
    let total = expected.len() as u64;
    assert_eq!((st.keys, st.orphans, st.conflicts), (total, 0, 0), "trial {trial}: {st:?}");
    assert_eq!(st.entries, total, "every put wrote a new key");
    let state = s.sync_state().await.unwrap();
    assert_eq!(state.authors[&subject.id.author()].seq, total);

    let before = snapshot(&s).await;
    s.close().await.unwrap();
    std::fs::remove_file(subject.dir.join("state.db")).unwrap();
    let s = subject.open();
    assert_eq!(snapshot(&s).await, before, "trial {trial}: rebuilding state.db changed the store");
    s.close().await.unwrap();
}

fn test_rng() -> StdRng {
    lattice_testkit::seeded_rng("crash test")
}

#[test]
fn every_acknowledged_put_survives_sigkill_and_a_rebuild_gives_the_same_store() {
    let tmp = tempfile::tempdir().unwrap();
    let subject = Subject::new(&tmp);
    let mut rng = test_rng();
    let mut expected = BTreeMap::new();
    let rt = runtime();
    for trial in 0..20 {
        // Short checkpoints: some crashes land after a durable index commit, some between.
        let checkpoint_ms = [5, 50, 10_000][rng.random_range(0..3)];
        let kill_after = rng.random_range(1..=25);
        let acked = subject.crash_child(trial, checkpoint_ms, kill_after);
        assert_eq!(acked.len(), kill_after);
        rt.block_on(verify_after_crash(&subject, &mut expected, trial, &acked));
    }
    assert!(expected.len() >= 20);
}

#[test]
fn a_crash_after_the_last_checkpoint_replays_the_unindexed_tail() {
    let tmp = tempfile::tempdir().unwrap();
    let subject = Subject::new(&tmp);
    let rt = runtime();
    // A clean close, then a reopen: nothing to replay.
    rt.block_on(async {
        let s = subject.open();
        s.put(b"before".to_vec(), b"clean".to_vec()).await.unwrap();
        s.close().await.unwrap();
        let s = subject.open();
        assert_eq!(s.replayed_on_open(), 0);
        s.close().await.unwrap();
    });
    // The child never checkpoints (one hour): everything it writes is only in the logs.
    let acked = subject.crash_child(0, 3_600_000, 30);
    rt.block_on(async {
        let s = subject.open();
        let replayed = s.replayed_on_open();
        let n = acked.len() as u64;
        assert!(replayed >= n, "replayed {replayed} records, {n} puts were acknowledged");
        let st = s.status().await.unwrap();
        assert_eq!(st.entries, 1 + replayed);
        for &i in &acked {
            assert_eq!(s.get(&key(0, i)).await.unwrap(), Some(value(0, i)));
        }
        s.close().await.unwrap();
        let s = subject.open();
        assert_eq!(s.replayed_on_open(), 0, "the replay was checkpointed");
    });
}

#[test]
fn a_log_torn_inside_its_last_record_reopens_with_the_earlier_entries_intact() {
    let tmp = tempfile::tempdir().unwrap();
    let subject = Subject::new(&tmp);
    let mut rng = test_rng();
    let rt = runtime();
    let mut expected = BTreeMap::new();
    for trial in 0..6 {
        let checkpoint_ms = [5, 10_000][trial as usize % 2];
        let acked = subject.crash_child(trial, checkpoint_ms, rng.random_range(2..=15));
        let path = subject.log_path();
        let records = log_records(&path);
        let (last_offset, last_payload) = records.last().unwrap().clone();
        let len = std::fs::metadata(&path).unwrap().len();
        let cut = rng.random_range(last_offset + 1..len);
        std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(cut).unwrap();
        let lost = VerifiedEntry::from_trusted_log(last_payload).unwrap();
        let lost_key = lost.ops()[0].key().to_vec();
        assert!(!expected.contains_key(&lost_key), "the torn record is from this trial");

        rt.block_on(async {
            let s = subject.open();
            let got: BTreeMap<Vec<u8>, Vec<u8>> = s.list(b"", None, usize::MAX).await.unwrap().into_iter().collect();
            assert!(!got.contains_key(&lost_key), "trial {trial}: the torn entry is gone");
            for (k, v) in &expected {
                assert_eq!(got.get(k), Some(v), "trial {trial}: earlier entry lost");
            }
            let this_trial = got.keys().filter(|k| k.starts_with(format!("t{trial:02}/").as_bytes())).count() as u64;
            assert_eq!(
                this_trial,
                lost.seq() - 1 - expected.len() as u64,
                "trial {trial}: every record before the torn one"
            );
            for &i in &acked {
                if key(trial, i) != lost_key {
                    assert_eq!(got.get(&key(trial, i)), Some(&value(trial, i)), "trial {trial}: acked put {i} lost");
                }
            }
            let st = s.status().await.unwrap();
            assert_eq!((st.entries, st.keys, st.orphans), (lost.seq() - 1, lost.seq() - 1, 0));
            assert_eq!(s.sync_state().await.unwrap().authors[&subject.id.author()].seq, lost.seq() - 1);
            assert_eq!(std::fs::metadata(&path).unwrap().len(), last_offset, "the torn tail was cut");
            expected = got;
            // The store takes writes again, and its chain continues at the lost seq.
            let probe = format!("t{trial:02}/probe").into_bytes();
            let r = s.put(probe.clone(), b"after the tear".to_vec()).await.unwrap();
            assert_eq!(r.seq, lost.seq());
            expected.insert(probe, b"after the tear".to_vec());
            let before = snapshot(&s).await;
            s.close().await.unwrap();
            std::fs::remove_file(subject.dir.join("state.db")).unwrap();
            let s = subject.open();
            assert_eq!(snapshot(&s).await, before);
            s.close().await.unwrap();
        });
    }
}

#[test]
fn orphans_released_after_the_last_checkpoint_are_not_left_behind_by_a_crash() {
    // Orphans parked and checkpointed; then a child ingests their predecessor (releasing them,
    // all in the logs, index not checkpointed) and is killed. The replay applies them from the
    // logs; orphans.db, rolled back to the checkpoint, must not keep them as orphans.
    let tmp = tempfile::tempdir().unwrap();
    let subject = Subject::new(&tmp);
    let rt = runtime();
    let mut r = common::Chain::new(subject.sid);
    let (e1, e2, e3) = (r.put("r1", "1"), r.put("r2", "2"), r.put("r3", "3"));
    rt.block_on(async {
        let s = subject.open();
        s.ingest_batch(vec![e3.bytes().to_vec(), e2.bytes().to_vec()]).await.unwrap();
        assert_eq!(s.status().await.unwrap().orphans, 2);
        s.close().await.unwrap();
    });
    subject.crash_child_with(0, 3_600_000, 3, &[e1.bytes().to_vec()]);
    rt.block_on(async {
        let s = subject.open();
        assert!(s.replayed_on_open() >= 3 + 3, "the release was not checkpointed: it is replayed");
        assert_eq!(s.sync_state().await.unwrap().authors[&r.id.author()].seq, 3);
        assert_eq!(s.get(b"r3").await.unwrap(), Some(b"3".to_vec()));
        let st = s.status().await.unwrap();
        assert_eq!(st.orphans, 0, "applied entries are still counted as orphans: {st:?}");
        let before = snapshot(&s).await;
        s.close().await.unwrap();
        let s = subject.open();
        assert_eq!(snapshot(&s).await, before);
        // Re-sending them is a no-op.
        for e in [&e2, &e3] {
            assert_eq!(s.ingest(e.bytes().to_vec()).await.unwrap(), lattice_store::IngestOutcome::Duplicate);
        }
        assert_eq!(snapshot(&s).await, before);
    });
}
