//! Rebuilding the index from the logs at open: many interleaved logs (read and decoded ahead on
//! a second thread, in chunks) reproduce the store exactly, and a bad record anywhere in the
//! range being replayed fails the open with an error naming the log and the record's offset,
//! without cutting anything from the log.

mod common;

use std::path::{Path, PathBuf};

use common::{Chain, append_log_record, fast_tempdir, log_records, open, snapshot};
use lattice_core::{AuthorSyncState, Identity, StoreId, SyncState};
use lattice_store::{EntrySource, KvStore, StoreConfig, StoreHandle, SyncStore};

fn log_of(dir: &Path, id: &Identity) -> PathBuf {
    dir.join("logs").join(format!("{}.log", id.author().to_hex()))
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).unwrap().len()
}

#[tokio::test]
async fn a_rebuild_of_many_interleaved_logs_reproduces_the_store() {
    let dir = fast_tempdir();
    let sid = StoreId::new_random();
    let id = Identity::generate();
    let s = open(dir.path(), sid, &id);
    // Six remote authors whose clocks interleave, writing their own keys and a few shared ones
    // (so heads and conflicts are rebuilt too): far more entries than one decoded chunk.
    let mut chains: Vec<Chain> = (0..6)
        .map(|c| {
            let mut chain = Chain::new(sid);
            chain.wall += c;
            chain
        })
        .collect();
    for round in 0..5 {
        let mut batch = Vec::new();
        for (c, chain) in chains.iter_mut().enumerate() {
            for i in 0..80 {
                let key = if i % 5 == 0 { format!("shared/{}", i % 7) } else { format!("c{c}/{round}/{i}") };
                batch.push(chain.put(&key, &format!("{c}-{round}-{i}")).bytes().to_vec());
            }
        }
        for r in s.ingest_batch(batch).await.unwrap() {
            r.unwrap();
        }
        s.put(format!("local/{round}").into_bytes(), b"v".to_vec()).await.unwrap();
    }
    let total = 6 * 5 * 80 + 5;
    let before = snapshot(&s).await;
    assert_eq!(before.status.entries, total);
    let mut heads = Vec::new();
    for k in 0..7 {
        heads.push(s.get_heads(format!("shared/{k}").as_bytes()).await.unwrap());
    }
    s.close().await.unwrap();

    std::fs::remove_file(dir.path().join("state.db")).unwrap();
    let s = open(dir.path(), sid, &id);
    assert_eq!(s.replayed_on_open(), total);
    assert_eq!(snapshot(&s).await, before);
    for (k, want) in heads.iter().enumerate() {
        assert_eq!(&s.get_heads(format!("shared/{k}").as_bytes()).await.unwrap(), want, "heads of shared/{k}");
    }
    // Every entry is indexed again: a peer holding part of each remote chain is sent the rest
    // (the resume point is looked up by hash).
    let mut peer = SyncState::default();
    for (c, chain) in chains.iter().enumerate() {
        let e = &chain.entries[100 + c * 37];
        peer.authors.insert(e.author(), AuthorSyncState { seq: e.seq(), hash: e.hash() });
    }
    let missing = s.missing_entries(peer).await.unwrap();
    let want: u64 = chains.iter().enumerate().map(|(c, chain)| chain.seq() - (101 + c * 37) as u64).sum::<u64>() + 5;
    assert_eq!(missing.total(), want);
    assert_eq!(tokio::task::spawn_blocking(move || missing.filter_map(Result::ok).count()).await.unwrap() as u64, want);
    // The rebuilt store keeps working: a local write extends the chain.
    s.put(b"after".to_vec(), b"rebuild".to_vec()).await.unwrap();
    assert_eq!(s.status().await.unwrap().entries, total + 1);
}

#[tokio::test]
async fn an_undecodable_record_fails_the_open_naming_the_log_and_offset() {
    let dir = fast_tempdir();
    let sid = StoreId::new_random();
    let id = Identity::generate();
    let s = open(dir.path(), sid, &id);
    for i in 0..600u32 {
        s.put(format!("k{i}").into_bytes(), b"v".to_vec()).await.unwrap();
    }
    s.close().await.unwrap();
    // A whole, checksummed record whose payload is not an entry, after the indexed part.
    let path = log_of(dir.path(), &id);
    let offset = append_log_record(&path, b"not an entry");
    let len = file_len(&path);
    let name = path.file_name().unwrap().to_str().unwrap().to_string();

    // The tail replay meets it...
    let err = StoreHandle::open(dir.path(), sid, id.clone(), StoreConfig::default()).unwrap_err().to_string();
    assert!(err.contains(&name) && err.contains(&format!("offset {offset}")), "{err}");
    assert_eq!(file_len(&path), len, "nothing cut from the log");
    // ... and so does a rebuild, after the 600 good records.
    std::fs::remove_file(dir.path().join("state.db")).unwrap();
    let err = StoreHandle::open(dir.path(), sid, id.clone(), StoreConfig::default()).unwrap_err().to_string();
    assert!(err.contains(&name) && err.contains(&format!("offset {offset}")), "{err}");
    assert_eq!(file_len(&path), len, "nothing cut from the log");
}

#[tokio::test]
async fn a_bad_checksum_in_the_middle_of_a_log_fails_the_rebuild_naming_the_log_and_offset() {
    let dir = fast_tempdir();
    let sid = StoreId::new_random();
    let id = Identity::generate();
    let s = open(dir.path(), sid, &id);
    for i in 0..50u32 {
        s.put(format!("k{i}").into_bytes(), b"v".to_vec()).await.unwrap();
    }
    s.close().await.unwrap();
    let path = log_of(dir.path(), &id);
    let len = file_len(&path);
    let offsets: Vec<u64> = log_records(&path).into_iter().map(|(offset, _)| offset).collect();
    assert_eq!(offsets.len(), 50);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[offsets[20] as usize + 40] ^= 1;
    std::fs::write(&path, &bytes).unwrap();

    std::fs::remove_file(dir.path().join("state.db")).unwrap();
    let err = StoreHandle::open(dir.path(), sid, id.clone(), StoreConfig::default()).unwrap_err().to_string();
    let name = path.file_name().unwrap().to_str().unwrap();
    assert!(err.contains(name) && err.contains(&format!("offset {}", offsets[20])), "{err}");
    assert_eq!(file_len(&path), len, "corruption in the middle is not truncated");
}
