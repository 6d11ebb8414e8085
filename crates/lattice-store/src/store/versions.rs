//! The versions of a key (DESIGN.md §11): every applied entry that touched it. They are its
//! heads (in `kv_v2`) and a [`tables::VERSIONS`] row for each version that is no longer a head,
//! written as it stops being one: a key written once costs no row (a bulk load of distinct keys
//! writes none), an overwrite costs one. Each entry's ops on the key are read back from its log
//! record. `history` lists them; `get --at` takes the last one at or before a time, which is the
//! winner as of then: an entry's HLC is above those of the entries it cites, so the highest
//! (HLC, author) up to a time was cited by nothing up to it, a head then, and the highest of the
//! heads wins.

use std::collections::HashMap;
use std::fs::File;

use lattice_core::{AuthorId, Hash, Hlc, VerifiedEntry};
use redb::{ReadableDatabase, ReadableTable};

use super::Store;
use crate::error::StoreError;
use crate::log::read_record_at;
use crate::tables::{self, EntryRow, VersionKey, decode_heads};
use crate::types::Version;

/// The (HLC, author, hash) of each head of `key` now.
fn heads_of(tx: &redb::ReadTransaction, key: &[u8]) -> Result<Vec<(Hlc, AuthorId, Hash)>, StoreError> {
    Ok(match tx.open_table(tables::KV)?.get(key)? {
        Some(v) => decode_heads(v.value())?.into_iter().map(|h| (h.hlc, h.author, h.hash)).collect(),
        None => Vec::new(),
    })
}

/// A [`tables::VERSIONS`] row as (HLC, author, hash, head: false).
fn row_version(
    (row, hash): (redb::AccessGuard<'_, VersionKey<'static>>, redb::AccessGuard<'_, [u8; 32]>),
) -> (Hlc, AuthorId, Hash, bool) {
    let (_, wall, counter, author) = row.value();
    (Hlc::new(wall, counter), AuthorId(author), Hash(hash.value()), false)
}

/// The [`tables::VERSIONS`] rows of one key, or of one key up to an HLC.
type VersionRange<'k> = std::ops::RangeInclusive<VersionKey<'k>>;

fn versions_of(key: &[u8], up_to: Hlc) -> VersionRange<'_> {
    (key, 0, 0, [0; 32])..=(key, up_to.wall_ms, up_to.counter, [0xff; 32])
}

impl Store {
    /// Every version of `key` this node holds, oldest first.
    pub(crate) fn versions(&self, key: &[u8]) -> Result<Vec<Version>, StoreError> {
        let tx = self.state.begin_read().map_err(redb::Error::from)?;
        let table = tx.open_table(tables::VERSIONS)?;
        let entries = tx.open_table(tables::ENTRIES)?;
        let mut found: Vec<(Hlc, AuthorId, Hash, bool)> = Vec::new();
        for item in table.range(versions_of(key, Hlc::new(u64::MAX, u32::MAX)))? {
            found.push(row_version(item?));
        }
        found.extend(heads_of(&tx, key)?.into_iter().map(|(hlc, author, hash)| (hlc, author, hash, true)));
        found.sort_by_key(|(hlc, author, _, _)| (*hlc, *author));
        let mut files = HashMap::new();
        let mut out = Vec::with_capacity(found.len());
        for (_, _, hash, head) in found {
            let mut version = self.read_version(&entries, &mut files, key, hash)?;
            version.head = head;
            out.push(version);
        }
        Ok(out)
    }

    /// The version of `key` that won as of `at`: the last at or before it, if any (a head, or
    /// the last row up to `at`, whichever is later).
    pub(crate) fn version_at(&self, key: &[u8], at: Hlc) -> Result<Option<Version>, StoreError> {
        let tx = self.state.begin_read().map_err(redb::Error::from)?;
        let table = tx.open_table(tables::VERSIONS)?;
        let entries = tx.open_table(tables::ENTRIES)?;
        let row = table.range(versions_of(key, at))?.next_back().transpose()?.map(row_version);
        let head = heads_of(&tx, key)?
            .into_iter()
            .filter(|(hlc, _, _)| *hlc <= at)
            .max_by_key(|(hlc, author, _)| (*hlc, *author))
            .map(|(hlc, author, hash)| (hlc, author, hash, true));
        let Some((_, _, hash, is_head)) = row.into_iter().chain(head).max_by_key(|(hlc, author, _, _)| (*hlc, *author))
        else {
            return Ok(None);
        };
        let mut version = self.read_version(&entries, &mut HashMap::new(), key, hash)?;
        version.head = is_head;
        Ok(Some(version))
    }

    /// The entry `hash`'s ops on `key`, read from its log record (`head` left false).
    fn read_version(
        &self,
        entries: &impl ReadableTable<[u8; 32], &'static [u8]>,
        files: &mut HashMap<AuthorId, File>,
        key: &[u8],
        hash: Hash,
    ) -> Result<Version, StoreError> {
        let missing = || StoreError::CorruptIndex(format!("version {hash} has no entry row"));
        let row = entries.get(hash.0)?.and_then(|v| EntryRow::decode(v.value())).ok_or_else(missing)?;
        let path = self.log_path(&row.author);
        let file = match files.entry(row.author) {
            std::collections::hash_map::Entry::Occupied(at) => at.into_mut(),
            std::collections::hash_map::Entry::Vacant(at) => {
                at.insert(File::open(&path).map_err(StoreError::io(&path))?)
            }
        };
        let payload = read_record_at(file, &path, row.offset)?;
        let entry = VerifiedEntry::from_trusted_log(payload).map_err(|e| StoreError::CorruptLog {
            path: path.clone(),
            offset: row.offset,
            reason: e.to_string(),
        })?;
        if entry.hash() != hash {
            return Err(StoreError::CorruptLog { path, offset: row.offset, reason: format!("not entry {hash}") });
        }
        let ops = entry.ops().iter().filter(|op| op.key() == key).cloned().collect();
        Ok(Version { hlc: entry.hlc(), author: entry.author(), hash, ops, head: false })
    }
}
