//! Orphans: entries held in orphans.db until what they wait for arrives (a predecessor, a DAG
//! parent, or their author's admission), released when it does, dropped at the TTL.
//!
//! The buffer is bounded in bytes, overall and per author, with the totals kept in rows updated
//! with every orphan stored or taken. Every way out of it goes through an index: the wait
//! indexes (what arrived), by author and seq (a limit lowered), by age (expiry). None reads the
//! orphans it does not take.

use std::collections::BTreeSet;

use lattice_core::{AuthorId, Hash, VerifiedEntry};
use redb::{MultimapTable, ReadableMultimapTable, ReadableTable, ReadableTableMetadata, Table, WriteTransaction};

use super::{Store, Tables, Work};
use crate::error::{IngestError, StoreError};
use crate::tables::{self, OrphanRow, UsageRow, WaitKey, Waiting};
use crate::types::GapInfo;

/// The tables of orphans.db.
pub(super) struct OrphanTables<'t> {
    orphans: Table<'t, [u8; 32], &'static [u8]>,
    wait_predecessor: MultimapTable<'t, ([u8; 32], u64), [u8; 32]>,
    wait_parent: MultimapTable<'t, [u8; 32], [u8; 32]>,
    wait_admission: MultimapTable<'t, [u8; 32], [u8; 32]>,
    by_author: Table<'t, ([u8; 32], u64, [u8; 32]), ()>,
    by_age: Table<'t, (u64, [u8; 32]), ()>,
    usage: Table<'t, [u8; 32], &'static [u8]>,
    meta: Table<'t, &'static str, &'static [u8]>,
}

/// Creates the tables of orphans.db, dropping those of older layouts (their entries come back
/// by sync).
pub(super) fn init(tx: &WriteTransaction) -> Result<(), StoreError> {
    use redb::{MultimapTableHandle, TableHandle};
    let legacy = tables::LEGACY_ORPHANS.name();
    if tx.list_tables()?.any(|t| t.name() == legacy) {
        let dropped = tx.open_table(tables::LEGACY_ORPHANS)?.len()?;
        tx.delete_table(tables::LEGACY_ORPHANS)?;
        tracing::warn!(dropped, "dropped the orphan buffer of an older layout; sync brings its entries again");
    }
    let waits: Vec<_> =
        tx.list_multimap_tables()?.filter(|t| tables::LEGACY_ORPHAN_WAITS.contains(&t.name())).collect();
    for table in waits {
        tx.delete_multimap_table(table)?;
    }
    OrphanTables::open(tx).map(drop)
}

impl<'t> OrphanTables<'t> {
    fn open(tx: &'t WriteTransaction) -> Result<Self, StoreError> {
        Ok(OrphanTables {
            orphans: tx.open_table(tables::ORPHANS)?,
            wait_predecessor: tx.open_multimap_table(tables::WAIT_PREDECESSOR)?,
            wait_parent: tx.open_multimap_table(tables::WAIT_PARENT)?,
            wait_admission: tx.open_multimap_table(tables::WAIT_ADMISSION)?,
            by_author: tx.open_table(tables::ORPHANS_BY_AUTHOR)?,
            by_age: tx.open_table(tables::ORPHANS_BY_AGE)?,
            usage: tx.open_table(tables::ORPHAN_USAGE)?,
            meta: tx.open_table(tables::ORPHAN_META)?,
        })
    }
}

impl OrphanTables<'_> {
    fn usage_of(&self, author: &AuthorId) -> Result<UsageRow, StoreError> {
        UsageRow::read(self.usage.get(author.0)?.as_ref().map(|v| v.value()))
    }

    pub(super) fn total(&self) -> Result<UsageRow, StoreError> {
        UsageRow::read(self.meta.get(tables::ORPHAN_META_TOTAL)?.as_ref().map(|v| v.value()))
    }

    pub(super) fn refused(&self) -> Result<u64, StoreError> {
        Ok(self
            .meta
            .get(tables::ORPHAN_META_REFUSED)?
            .and_then(|v| v.value().try_into().ok())
            .map_or(0, u64::from_le_bytes))
    }

    /// Adds `count` orphans of `bytes` (negative: removes) to `author`'s usage and the total.
    fn charge(&mut self, author: &AuthorId, count: i64, bytes: i64) -> Result<(), StoreError> {
        let apply = |u: UsageRow| UsageRow {
            count: u.count.saturating_add_signed(count),
            bytes: u.bytes.saturating_add_signed(bytes),
        };
        let mine = apply(self.usage_of(author)?);
        if mine.count == 0 {
            self.usage.remove(author.0)?;
        } else {
            self.usage.insert(author.0, mine.encode().as_slice())?;
        }
        let total = apply(self.total()?);
        self.meta.insert(tables::ORPHAN_META_TOTAL, total.encode().as_slice())?;
        Ok(())
    }

    /// Whether an orphan of `author` charged `bytes` fits: if not, which limit it exceeds, that
    /// limit and what is charged against it already.
    fn over_limit(
        &self,
        author: &AuthorId,
        bytes: u64,
        per_author: u64,
        overall: u64,
    ) -> Result<Option<(&'static str, u64, u64)>, StoreError> {
        let mine = self.usage_of(author)?.bytes;
        if mine.saturating_add(bytes) > per_author {
            return Ok(Some(("its author's share", per_author, mine)));
        }
        let total = self.total()?.bytes;
        if total.saturating_add(bytes) > overall {
            return Ok(Some(("the buffer", overall, total)));
        }
        Ok(None)
    }

    fn note_refused(&mut self) -> Result<(), StoreError> {
        let refused = self.refused()? + 1;
        self.meta.insert(tables::ORPHAN_META_REFUSED, refused.to_le_bytes().as_slice())?;
        Ok(())
    }

    /// Stores orphan `hash` with every index row and its charge.
    fn insert(&mut self, hash: [u8; 32], row: OrphanRow, entry: &[u8]) -> Result<(), StoreError> {
        self.orphans.insert(hash, row.encode_with(entry).as_slice())?;
        match row.waiting.key() {
            WaitKey::Predecessor(key) => self.wait_predecessor.insert(key, hash)?,
            WaitKey::Parent(parent) => self.wait_parent.insert(parent, hash)?,
            WaitKey::Admission(author) => self.wait_admission.insert(author, hash)?,
        };
        self.by_author.insert((row.author.0, row.seq, hash), ())?;
        self.by_age.insert((row.received_ms, hash), ())?;
        self.charge(&row.author, 1, OrphanRow::charge(entry.len()) as i64)
    }

    /// Removes orphan `hash` (with its index rows and its charge) and returns its entry, if held
    /// and readable.
    fn take(&mut self, hash: [u8; 32]) -> Result<Option<VerifiedEntry>, StoreError> {
        let (row, entry, charge) = {
            let Some(value) = self.orphans.remove(hash)? else { return Ok(None) };
            let Some((row, bytes)) = OrphanRow::decode(value.value()) else {
                // Without its header its index rows cannot be found: those of the wait index
                // lead to nothing, and the callers that find orphans by age or author drop the
                // row they used.
                tracing::warn!("dropping an unreadable orphan record");
                return Ok(None);
            };
            (row, VerifiedEntry::from_trusted_log(bytes.to_vec()), OrphanRow::charge(bytes.len()) as i64)
        };
        match row.waiting.key() {
            WaitKey::Predecessor(key) => self.wait_predecessor.remove(key, hash)?,
            WaitKey::Parent(parent) => self.wait_parent.remove(parent, hash)?,
            WaitKey::Admission(author) => self.wait_admission.remove(author, hash)?,
        };
        self.by_author.remove((row.author.0, row.seq, hash))?;
        self.by_age.remove((row.received_ms, hash))?;
        self.charge(&row.author, -1, -charge)?;
        match entry {
            Ok(entry) => Ok(Some(entry)),
            Err(e) => {
                tracing::warn!(error = %e, "dropping an unreadable orphan record");
                Ok(None)
            }
        }
    }

    /// Takes the orphans `hashes`, each author's lowest seq first so a released run applies in
    /// one pass.
    fn take_all(&mut self, hashes: impl IntoIterator<Item = [u8; 32]>) -> Result<Vec<VerifiedEntry>, StoreError> {
        let mut out = Vec::new();
        for hash in hashes {
            out.extend(self.take(hash)?);
        }
        out.sort_by_key(|e| (e.author(), e.seq()));
        Ok(out)
    }

    /// The authors some of whose entries wait for their admission (one row read per author).
    pub(super) fn authors_awaiting_admission(&self) -> Result<BTreeSet<AuthorId>, StoreError> {
        let mut authors = BTreeSet::new();
        for item in self.wait_admission.iter()? {
            let (author, _) = item?;
            authors.insert(AuthorId(author.value()));
        }
        Ok(authors)
    }

    /// Removes and returns `author`'s orphans past seq `limit`, in seq order.
    pub(super) fn take_past(&mut self, author: &AuthorId, limit: u64) -> Result<Vec<VerifiedEntry>, StoreError> {
        let Some(from) = limit.checked_add(1) else { return Ok(Vec::new()) };
        let mut rows = Vec::new();
        for item in self.by_author.range((author.0, from, [0; 32])..=(author.0, u64::MAX, [u8::MAX; 32]))? {
            rows.push(item?.0.value());
        }
        let mut out = Vec::new();
        for &(_, _, hash) in &rows {
            out.extend(self.take(hash)?);
        }
        for row in rows {
            self.by_author.remove(row)?;
        }
        Ok(out)
    }

    /// Removes and returns the orphans waiting for any of `what`, each author's lowest seq first.
    pub(super) fn take_waiting_for(&mut self, what: &[Waiting]) -> Result<Vec<VerifiedEntry>, StoreError> {
        let mut hashes = Vec::new();
        for waiting in what {
            let filed = match waiting.key() {
                WaitKey::Predecessor(key) => self.wait_predecessor.remove_all(key)?,
                WaitKey::Parent(parent) => self.wait_parent.remove_all(parent)?,
                WaitKey::Admission(author) => self.wait_admission.remove_all(author)?,
            };
            for h in filed {
                hashes.push(h?.value());
            }
        }
        self.take_all(hashes)
    }

    /// Removes the orphans received at or before `received_ms`; returns how many.
    fn expire_through(&mut self, received_ms: u64) -> Result<u64, StoreError> {
        let mut aged = Vec::new();
        for item in self.by_age.range(..=(received_ms, [u8::MAX; 32]))? {
            aged.push(item?.0.value());
        }
        for &(ms, hash) in &aged {
            self.take(hash)?;
            self.by_age.remove((ms, hash))?;
        }
        Ok(aged.len() as u64)
    }
}

impl<'t> Tables<'t> {
    /// The tables of orphans.db, opened on first use.
    pub(super) fn orphan_tables(&mut self) -> Result<&mut OrphanTables<'t>, StoreError> {
        let tables = match self.orphan_tables.take() {
            Some(tables) => tables,
            None => {
                let tx = self.orphans_tx.ok_or(StoreError::Aborted(
                    "internal: a batch begun without orphans.db touched its tables".into(),
                ))?;
                OrphanTables::open(tx)?
            }
        };
        Ok(self.orphan_tables.insert(tables))
    }
}

impl Store {
    /// Parks an entry that waits for its predecessor or a DAG parent, and reports the gap.
    pub(super) fn park_gap(
        &mut self,
        t: &mut Tables<'_>,
        w: &mut Work,
        entry: &VerifiedEntry,
        gap: GapInfo,
        now: u64,
    ) -> Result<(), IngestError> {
        let waiting = match gap.missing_parent {
            Some(parent) => Waiting::Parent(parent),
            None => Waiting::Predecessor { author: gap.author, seq: entry.seq() - 1 },
        };
        self.park(t, w, entry, waiting, Some(gap), now)
    }

    /// Stores an orphan and indexes what it waits for; a new orphan's gap (if any) is reported
    /// at commit. One that does not fit in the buffer is refused (and counted), and nothing else
    /// changes.
    pub(super) fn park(
        &mut self,
        t: &mut Tables<'_>,
        w: &mut Work,
        entry: &VerifiedEntry,
        waiting: Waiting,
        gap: Option<GapInfo>,
        now: u64,
    ) -> Result<(), IngestError> {
        let o = t.orphan_tables()?;
        if o.orphans.get(entry.hash().0)?.is_some() {
            return Ok(());
        }
        let author = entry.author();
        let bytes = OrphanRow::charge(entry.bytes().len());
        let (per_author, overall) = (self.config.max_orphan_bytes_per_author, self.config.max_orphan_bytes);
        if let Some((scope, limit, used)) = o.over_limit(&author, bytes, per_author, overall)? {
            o.note_refused()?;
            tracing::debug!(author = %author.short(), seq = entry.seq(), scope, "orphan buffer full; refusing entry");
            return Err(IngestError::OrphanBufferFull {
                author: author.short(),
                seq: entry.seq(),
                bytes,
                scope,
                limit,
                used,
            });
        }
        let row = OrphanRow { received_ms: now, author, seq: entry.seq(), waiting };
        o.insert(entry.hash().0, row, entry.bytes())?;
        w.gaps.extend(gap);
        Ok(())
    }

    /// Removes and returns the orphans waiting for the entry `(author, seq, hash)`.
    pub(super) fn take_waiting(
        t: &mut Tables<'_>,
        author: AuthorId,
        seq: u64,
        hash: Hash,
    ) -> Result<Vec<VerifiedEntry>, StoreError> {
        let o = t.orphan_tables()?;
        if o.orphans.is_empty()? {
            return Ok(Vec::new());
        }
        o.take_waiting_for(&[Waiting::Predecessor { author, seq }, Waiting::Parent(hash)])
    }

    /// Drops orphans older than the TTL (reading only those). Returns how many were dropped.
    pub(crate) fn expire_orphans(&mut self, t: &mut Tables<'_>) -> Result<u64, StoreError> {
        let ttl = self.config.orphan_ttl.as_millis() as u64;
        let Some(through) = self.now().checked_sub(ttl) else { return Ok(0) };
        let expired = t.orphan_tables()?.expire_through(through)?;
        if expired > 0 {
            tracing::info!(count = expired, "expired orphans");
        }
        Ok(expired)
    }

    /// Drops orphans that are held after all. orphans.db commits with the index, so after a
    /// crash it may still hold orphans that were released (and logged) after its last durable
    /// commit, and that the replay has just applied from the logs. Reads the by-author index
    /// only: an orphan above its author's tip cannot be held.
    pub(super) fn drop_held_orphans(t: &mut Tables<'_>) -> Result<u64, StoreError> {
        let mut held = Vec::new();
        t.orphan_tables()?;
        let Some(o) = &t.orphan_tables else { return Ok(0) };
        let mut tip: Option<(AuthorId, u64)> = None;
        for item in o.by_author.iter()? {
            let (author, seq, hash) = item?.0.value();
            let author = AuthorId(author);
            let author_seq = match tip {
                Some((a, s)) if a == author => s,
                _ => {
                    let s = t.author_row(&author)?.map_or(0, |r| r.seq);
                    tip = Some((author, s));
                    s
                }
            };
            if seq <= author_seq && t.holds(&Hash(hash))? {
                held.push(hash);
            }
        }
        let o = t.orphan_tables()?;
        for &hash in &held {
            o.take(hash)?;
        }
        Ok(held.len() as u64)
    }
}
