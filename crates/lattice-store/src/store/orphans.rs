//! Orphans: entries held in orphans.db until what they wait for arrives (a predecessor, a DAG
//! parent, or their author's admission), released when it does, dropped at the TTL.

use std::collections::BTreeSet;

use lattice_core::{AuthorId, Hash, VerifiedEntry};
use redb::{MultimapTable, ReadableTable, ReadableTableMetadata, Table};

use super::{Store, Tables, Work};
use crate::error::StoreError;
use crate::tables::{self, OrphanRow, WaitKey, Waiting};
use crate::types::GapInfo;

/// The tables of orphans.db.
pub(super) struct OrphanTables<'t> {
    orphans: Table<'t, [u8; 32], &'static [u8]>,
    wait_predecessor: MultimapTable<'t, ([u8; 32], u64), [u8; 32]>,
    wait_parent: MultimapTable<'t, [u8; 32], [u8; 32]>,
}

impl OrphanTables<'_> {
    /// Files orphan `hash` in the wait index under what it waits for.
    fn index_wait(&mut self, waiting: Waiting, hash: [u8; 32]) -> Result<(), StoreError> {
        match waiting.key() {
            WaitKey::Predecessor(key) => self.wait_predecessor.insert(key, hash)?,
            WaitKey::Parent(parent) => self.wait_parent.insert(parent, hash)?,
        };
        Ok(())
    }

    /// Removes orphan `hash` from the wait index.
    fn unindex_wait(&mut self, waiting: Waiting, hash: [u8; 32]) -> Result<(), StoreError> {
        match waiting.key() {
            WaitKey::Predecessor(key) => self.wait_predecessor.remove(key, hash)?,
            WaitKey::Parent(parent) => self.wait_parent.remove(parent, hash)?,
        };
        Ok(())
    }

    /// The authors some of whose entries wait for their admission.
    pub(super) fn authors_awaiting_admission(&self) -> Result<BTreeSet<AuthorId>, StoreError> {
        let mut authors = BTreeSet::new();
        for item in self.orphans.iter()? {
            let (_, value) = item?;
            if let Some((row, _)) = OrphanRow::decode(value.value())
                && let Waiting::Authorisation(author) = row.waiting
            {
                authors.insert(author);
            }
        }
        Ok(authors)
    }

    /// Removes orphans and their wait-index rows.
    fn remove(&mut self, which: &[([u8; 32], Waiting)]) -> Result<(), StoreError> {
        for (hash, waiting) in which {
            self.orphans.remove(hash)?;
            self.unindex_wait(*waiting, *hash)?;
        }
        Ok(())
    }

    /// Removes and returns the orphans for which `pred` holds (a scan of orphans.db, for rare
    /// events), each author's lowest seq first.
    pub(super) fn take_where(
        &mut self,
        pred: impl Fn(&VerifiedEntry) -> bool,
    ) -> Result<Vec<VerifiedEntry>, StoreError> {
        let mut taken = Vec::new();
        for item in self.orphans.iter()? {
            let (key, value) = item?;
            let Some((row, bytes)) = OrphanRow::decode(value.value()) else { continue };
            if let Ok(entry) = VerifiedEntry::from_trusted_log(bytes.to_vec())
                && pred(&entry)
            {
                taken.push((key.value(), row.waiting, entry));
            }
        }
        let rows: Vec<([u8; 32], Waiting)> = taken.iter().map(|(hash, waiting, _)| (*hash, *waiting)).collect();
        self.remove(&rows)?;
        let mut out: Vec<VerifiedEntry> = taken.into_iter().map(|(_, _, e)| e).collect();
        out.sort_by_key(|e| (e.author(), e.seq()));
        Ok(out)
    }

    /// Removes and returns the orphans waiting for any of `what` (their rows and wait-index
    /// rows), each author's lowest seq first so a released run applies in one pass.
    pub(super) fn take_waiting_for(&mut self, what: &[Waiting]) -> Result<Vec<VerifiedEntry>, StoreError> {
        let mut hashes = Vec::new();
        for waiting in what {
            let filed = match waiting.key() {
                WaitKey::Predecessor(key) => self.wait_predecessor.remove_all(key)?,
                WaitKey::Parent(parent) => self.wait_parent.remove_all(parent)?,
            };
            for h in filed {
                hashes.push(h?.value());
            }
        }
        let mut out = Vec::new();
        for h in hashes {
            let Some(value) = self.orphans.remove(h)? else { continue };
            match OrphanRow::decode(value.value()).map(|(_, bytes)| VerifiedEntry::from_trusted_log(bytes.to_vec())) {
                Some(Ok(e)) => out.push(e),
                _ => tracing::warn!("dropping an unreadable orphan record"),
            }
        }
        out.sort_by_key(|e| (e.author(), e.seq()));
        Ok(out)
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
                OrphanTables {
                    orphans: tx.open_table(tables::ORPHANS)?,
                    wait_predecessor: tx.open_multimap_table(tables::WAIT_PREDECESSOR)?,
                    wait_parent: tx.open_multimap_table(tables::WAIT_PARENT)?,
                }
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
    ) -> Result<(), StoreError> {
        let waiting = match gap.missing_parent {
            Some(parent) => Waiting::Parent(parent),
            None => Waiting::Predecessor { author: gap.author, seq: entry.seq() - 1 },
        };
        self.park(t, w, entry, waiting, Some(gap), now)
    }

    /// Stores an orphan and indexes what it waits for; a new orphan's gap (if any) is reported
    /// at commit.
    pub(super) fn park(
        &mut self,
        t: &mut Tables<'_>,
        w: &mut Work,
        entry: &VerifiedEntry,
        waiting: Waiting,
        gap: Option<GapInfo>,
        now: u64,
    ) -> Result<(), StoreError> {
        let o = t.orphan_tables()?;
        if o.orphans.get(entry.hash().0)?.is_some() {
            return Ok(());
        }
        if o.orphans.len()? >= self.config.max_orphans {
            tracing::warn!(
                max = self.config.max_orphans,
                "orphan buffer full; dropping entry (sync will bring it again)"
            );
            return Ok(());
        }
        let row = OrphanRow { received_ms: now, seq: entry.seq(), waiting };
        o.orphans.insert(entry.hash().0, row.encode_with(entry.bytes()).as_slice())?;
        o.index_wait(waiting, entry.hash().0)?;
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

    /// Drops orphans older than the TTL. Returns how many were dropped.
    pub(crate) fn expire_orphans(&mut self, t: &mut Tables<'_>) -> Result<u64, StoreError> {
        let now = self.now();
        let ttl = self.config.orphan_ttl.as_millis() as u64;
        let mut expired = Vec::new();
        for item in t.orphan_tables()?.orphans.iter()? {
            let (k, v) = item?;
            if let Some((row, _)) = OrphanRow::decode(v.value())
                && now.saturating_sub(row.received_ms) >= ttl
            {
                expired.push((k.value(), row.waiting));
            }
        }
        Self::remove_orphans(t, &expired)?;
        if !expired.is_empty() {
            tracing::info!(count = expired.len(), "expired orphans");
        }
        Ok(expired.len() as u64)
    }

    /// Drops orphans that are held after all. orphans.db commits with the index, so after a
    /// crash it may still hold orphans that were released (and logged) after its last durable
    /// commit, and that the replay has just applied from the logs.
    pub(super) fn drop_held_orphans(t: &mut Tables<'_>) -> Result<u64, StoreError> {
        let mut held = Vec::new();
        t.orphan_tables()?;
        let Some(o) = &t.orphan_tables else { return Ok(0) };
        for item in o.orphans.iter()? {
            let (k, v) = item?;
            if t.holds(&Hash(k.value()))?
                && let Some((row, _)) = OrphanRow::decode(v.value())
            {
                held.push((k.value(), row.waiting));
            }
        }
        Self::remove_orphans(t, &held)?;
        Ok(held.len() as u64)
    }

    /// Removes orphans and their wait-index rows.
    fn remove_orphans(t: &mut Tables<'_>, which: &[([u8; 32], Waiting)]) -> Result<(), StoreError> {
        if which.is_empty() {
            return Ok(());
        }
        t.orphan_tables()?.remove(which)
    }
}
