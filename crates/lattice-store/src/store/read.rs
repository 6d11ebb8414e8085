//! Reads of committed state (each in its own read transaction), and the stream of the entries a
//! peer lacks.

use std::collections::HashMap;

use lattice_core::heads::{self, Head};
use lattice_core::{AuthorId, AuthorSyncState, Hlc, SyncState};
use redb::{ReadableDatabase, ReadableTable, ReadableTableMetadata};

use super::Store;
use super::kinds::value_of;
use crate::error::StoreError;
use crate::log::RecordReader;
use crate::missing::{History, MissingEntries};
use crate::tables::{self, AuthorRow, EntryRow, UsageRow, decode_heads};
use crate::types::{Change, KvPairs, KvValues, StoreStatus, Value, WatchEvent};

/// The last entry of every author, as the transaction sees it (the sync state; attestations read
/// it in the transaction that reads the root).
pub(super) fn frontier(tx: &redb::ReadTransaction) -> Result<SyncState, StoreError> {
    let mut state = SyncState::default();
    for item in tx.open_table(tables::AUTHORS)?.iter()? {
        let (author, row) = item?;
        let row = AuthorRow::read(row.value())?;
        state.authors.insert(AuthorId(author.value()), AuthorSyncState { seq: row.seq, hash: row.hash });
    }
    Ok(state)
}

impl Store {
    pub(crate) fn get_heads(&self, key: &[u8]) -> Result<Vec<Head>, StoreError> {
        let tx = self.state.begin_read().map_err(redb::Error::from)?;
        let kv = tx.open_table(tables::KV)?;
        let found = kv.get(key)?;
        found.map(|v| decode_heads(v.value())).transpose().map(Option::unwrap_or_default)
    }

    /// The value `key` shows, as bytes (see [`Value::to_bytes`]).
    #[cfg(test)]
    pub(crate) fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.value(key)?.map(|v| v.to_bytes()))
    }

    /// The typed value `key` shows, if any.
    pub(crate) fn value(&self, key: &[u8]) -> Result<Option<Value>, StoreError> {
        let tx = self.state.begin_read().map_err(redb::Error::from)?;
        let kv = tx.open_table(tables::KV)?;
        let found = kv.get(key)?;
        let Some(heads) = found.map(|v| decode_heads(v.value())).transpose()? else { return Ok(None) };
        let kind_state = tx.open_table(tables::KIND_STATE)?;
        let members = tx.open_table(tables::SET_MEMBERS)?;
        value_of(&heads, &kind_state, &members, key)
    }

    /// Visible keys starting with `prefix`, after `after` (exclusive), at most `limit`, with
    /// their typed values.
    pub(crate) fn list(&self, prefix: &[u8], after: Option<&[u8]>, limit: usize) -> Result<KvValues, StoreError> {
        let tx = self.state.begin_read().map_err(redb::Error::from)?;
        let kv = tx.open_table(tables::KV)?;
        let kind_state = tx.open_table(tables::KIND_STATE)?;
        let members = tx.open_table(tables::SET_MEMBERS)?;
        let start: &[u8] = match after {
            Some(a) if a > prefix => a,
            _ => prefix,
        };
        let mut out = Vec::new();
        for item in kv.range::<&[u8]>(start..)? {
            if out.len() >= limit {
                break;
            }
            let (k, v) = item?;
            let key = k.value();
            if !key.starts_with(prefix) {
                break;
            }
            if after == Some(key) {
                continue;
            }
            if let Some(value) = value_of(&decode_heads(v.value())?, &kind_state, &members, key)? {
                out.push((key.to_vec(), value));
            }
        }
        Ok(out)
    }

    /// Every visible key matching `pattern`, with its value as bytes (the initial state of a
    /// watch; see [`Value::to_bytes`]).
    pub(crate) fn scan_matching(&self, pattern: &regex::bytes::Regex) -> Result<KvPairs, StoreError> {
        let tx = self.state.begin_read().map_err(redb::Error::from)?;
        let kv = tx.open_table(tables::KV)?;
        let kind_state = tx.open_table(tables::KIND_STATE)?;
        let members = tx.open_table(tables::SET_MEMBERS)?;
        let mut out = Vec::new();
        for item in kv.iter()? {
            let (k, v) = item?;
            if pattern.is_match(k.value())
                && let Some(value) = value_of(&decode_heads(v.value())?, &kind_state, &members, k.value())?
            {
                out.push((k.value().to_vec(), value.to_bytes()));
            }
        }
        Ok(out)
    }

    /// The event that says what `key` shows now, after a change no new entry made (a policy
    /// change): the value of the head now visible, else a delete named after the winning
    /// tombstone, else after the head `was` visible before.
    pub(super) fn event_now(&self, key: Vec<u8>, was: Option<&Head>) -> Result<Option<WatchEvent>, StoreError> {
        let heads = self.get_heads(&key)?;
        if let Some(head) = lattice_core::visible(&heads) {
            let source = Change::of(head);
            return Ok(self.value(&key)?.map(|value| WatchEvent::of_value(key, value, source)));
        }
        Ok(match (heads::winner(&heads), was) {
            (Some(tombstone), _) => Some(WatchEvent::Delete { key, source: Change::of(tombstone) }),
            (None, Some(gone)) => Some(WatchEvent::Delete { key, source: Change::of(gone) }),
            (None, None) => None,
        })
    }

    pub(crate) fn status(&mut self) -> Result<StoreStatus, StoreError> {
        let root = self.merkle_root()?;
        let tx = self.state.begin_read().map_err(redb::Error::from)?;
        let authors = tx.open_table(tables::AUTHORS)?.len()?;
        let otx = self.orphans.begin_read().map_err(redb::Error::from)?;
        let meta = otx.open_table(tables::ORPHAN_META)?;
        let total = UsageRow::read(meta.get(tables::ORPHAN_META_TOTAL)?.as_ref().map(|v| v.value()))?;
        let orphans_refused = meta
            .get(tables::ORPHAN_META_REFUSED)?
            .and_then(|v| v.value().try_into().ok())
            .map_or(0, u64::from_le_bytes);
        Ok(StoreStatus {
            entries: self.counters.entries,
            authors,
            keys: self.counters.live_keys,
            orphans: total.count,
            orphan_bytes: total.bytes,
            orphans_refused,
            conflicts: self.counters.conflicts,
            refused: self.counters.refused,
            equivocated: self.policy.equivocated(),
            root,
        })
    }

    /// The committed row of one author.
    pub(super) fn author_row(&self, author: &AuthorId) -> Result<Option<AuthorRow>, StoreError> {
        let tx = self.state.begin_read().map_err(redb::Error::from)?;
        let row = tx.open_table(tables::AUTHORS)?.get(author.0)?;
        row.map(|v| AuthorRow::read(v.value())).transpose()
    }

    pub(super) fn author_rows(&self) -> Result<Vec<(AuthorId, AuthorRow)>, StoreError> {
        let tx = self.state.begin_read().map_err(redb::Error::from)?;
        let authors = tx.open_table(tables::AUTHORS)?;
        let mut out = Vec::new();
        for item in authors.iter()? {
            let (k, v) = item?;
            let row = AuthorRow::read(v.value())?;
            out.push((AuthorId(k.value()), row));
        }
        Ok(out)
    }

    pub(crate) fn sync_state(&self) -> Result<SyncState, StoreError> {
        frontier(&self.state.begin_read().map_err(redb::Error::from)?)
    }

    /// A reader of the entries `remote` lacks, per author in seq order, merged in HLC order.
    /// It reads the logs directly (up to the lengths committed now), off the actor thread.
    pub(crate) fn missing_entries(&self, remote: &SyncState) -> Result<MissingEntries, StoreError> {
        let rows: HashMap<AuthorId, AuthorRow> = self.author_rows()?.into_iter().collect();
        let ours = SyncState {
            authors: rows.iter().map(|(a, r)| (*a, AuthorSyncState { seq: r.seq, hash: r.hash })).collect(),
        };
        let tx = self.state.begin_read().map_err(redb::Error::from)?;
        let entries = tx.open_table(tables::ENTRIES)?;
        let mut readers = Vec::new();
        let mut total = 0;
        for range in ours.missing_for(remote) {
            let Some(row) = rows.get(&range.author) else { continue };
            let from = if range.after_seq == 0 {
                0
            } else {
                let found = entries.get(range.after_hash.0)?.and_then(|v| EntryRow::decode(v.value()));
                match found {
                    Some(e) if e.author == range.author && e.seq == range.after_seq => e.end(),
                    _ => {
                        tracing::warn!(author = %range.author.short(), seq = range.after_seq,
                            "peer holds an entry of this author that we do not: a forked author; not sending its log");
                        continue;
                    }
                }
            };
            total += range.len();
            readers.push(RecordReader::open(&self.log_path(&range.author), from, row.log_len)?);
        }
        MissingEntries::new(readers, total)
    }

    /// A reader of the applied entries with an HLC above `since`, merged in HLC order (see
    /// [`History`]). Authors whose last entry is not above `since` are not read at all.
    pub(crate) fn history(&self, since: Hlc) -> Result<History, StoreError> {
        let mut readers = Vec::new();
        let mut tips = HashMap::new();
        for (author, row) in self.author_rows()? {
            tips.insert(author, row.hlc);
            if row.hlc > since && row.log_len > 0 {
                readers.push(RecordReader::open(&self.log_path(&author), 0, row.log_len)?);
            }
        }
        History::new(readers, since, self.policy.refusal(), tips)
    }
}
