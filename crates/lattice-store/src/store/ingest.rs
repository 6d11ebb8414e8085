//! Received entries: chain rules, authorisation, apply or park, and the release of the orphans
//! that waited for what was applied.

use std::collections::HashSet;

use lattice_core::chain::{ChainError, NextCheck, check_next};
use lattice_core::hlc::MergeOutcome;
use lattice_core::{AuthorId, VerifiedEntry};

use super::{Store, Tables, Work};
use crate::error::{IngestError, StoreError};
use crate::tables::Waiting;
use crate::types::{GapInfo, IngestOutcome};

impl Store {
    /// Handles one verified entry from a peer, then releases, iteratively, every orphan that
    /// was waiting for it (and for those, and so on).
    pub(crate) fn ingest(
        &mut self,
        t: &mut Tables<'_>,
        w: &mut Work,
        entry: VerifiedEntry,
    ) -> Result<IngestOutcome, IngestError> {
        let now = self.now();
        let outcome = self.ingest_one(t, w, &entry, now)?;
        if outcome != (IngestOutcome::Applied { released: 0 }) {
            return Ok(outcome);
        }
        let released = self.release_waiting(t, w, &entry, now)?;
        Ok(IngestOutcome::Applied { released })
    }

    /// Applies, iteratively, every orphan that waited for `entry` (just applied), and those
    /// that waited for them, and so on. Returns how many were applied.
    fn release_waiting(
        &mut self,
        t: &mut Tables<'_>,
        w: &mut Work,
        entry: &VerifiedEntry,
        now: u64,
    ) -> Result<usize, IngestError> {
        let mut released = 0;
        let mut ready = vec![(entry.author(), entry.seq(), entry.hash())];
        while let Some((author, seq, hash)) = ready.pop() {
            for orphan in Self::take_waiting(t, author, seq, hash)? {
                match self.ingest_one(t, w, &orphan, now) {
                    Ok(IngestOutcome::Applied { .. }) => {
                        released += 1;
                        ready.push((orphan.author(), orphan.seq(), orphan.hash()));
                    }
                    Ok(_) => {}
                    Err(IngestError::Store(e)) => return Err(e.into()),
                    Err(e) => {
                        tracing::warn!(author = %orphan.author().short(), seq = orphan.seq(), error = %e, "dropping orphan")
                    }
                }
            }
        }
        Ok(released)
    }

    /// Sets the authors whose entries are applied (`None`: all) and applies the held entries of
    /// every author it admits (with what waited for them). Returns how many entries were applied.
    pub(crate) fn set_authorised(
        &mut self,
        t: &mut Tables<'_>,
        w: &mut Work,
        authors: Option<HashSet<AuthorId>>,
    ) -> Result<u64, StoreError> {
        self.authorised = authors;
        let o = t.orphan_tables()?;
        let admitted: Vec<Waiting> = o
            .authors_awaiting_admission()?
            .into_iter()
            .filter(|author| self.is_authorised(author))
            .map(Waiting::Authorisation)
            .collect();
        let entries = o.take_waiting_for(&admitted)?;
        let held = entries.len();
        let mut applied = 0u64;
        for entry in entries {
            match self.ingest(t, w, entry) {
                Ok(IngestOutcome::Applied { released }) => applied += 1 + released as u64,
                Ok(_) => {}
                Err(IngestError::Store(e)) => return Err(e),
                Err(e) => tracing::warn!(error = %e, "dropping a held entry that no longer validates"),
            }
        }
        if held > 0 {
            tracing::info!(held, applied, "applied entries of newly authorised authors");
        }
        Ok(applied)
    }

    fn is_authorised(&self, author: &AuthorId) -> bool {
        self.authorised.as_ref().is_none_or(|set| set.contains(author)) || *author == self.identity.author()
    }

    fn ingest_one(
        &mut self,
        t: &mut Tables<'_>,
        w: &mut Work,
        entry: &VerifiedEntry,
        now: u64,
    ) -> Result<IngestOutcome, IngestError> {
        let author = entry.author();
        let tip = t.author_row(&author)?;
        // An author's entries are applied in seq order, so every held one has a seq at or below
        // the tip: only then can this one be held, and only then is the (random-key) lookup paid.
        let held = entry.seq() <= tip.map_or(0, |t| t.seq) && t.holds(&entry.hash())?;
        if !self.is_authorised(&author) {
            if entry.store_id() != self.store_id {
                return Err(ChainError::WrongStore { expected: self.store_id, got: entry.store_id() }.into());
            }
            if held {
                return Ok(IngestOutcome::Duplicate);
            }
            self.park(t, w, entry, Waiting::Authorisation(author), None, now)?;
            return Ok(IngestOutcome::Unauthorised);
        }
        let tip_hash = tip.map(|t| (t.seq, t.hash));
        let check = check_next(self.store_id, tip.map(|r| r.tip()).as_ref(), entry, held, |seq| {
            tip_hash.filter(|(s, _)| *s == seq).map(|(_, h)| h)
        })?;
        match check {
            NextCheck::Duplicate => Ok(IngestOutcome::Duplicate),
            NextCheck::Gap { have_seq, need_seq } => {
                let gap = GapInfo { author, have_seq, need_seq, missing_parent: None };
                self.park_gap(t, w, entry, gap, now)?;
                Ok(IngestOutcome::Orphaned(gap))
            }
            NextCheck::Next => {
                if let Some(parent) = t.first_missing_parent(entry)? {
                    let seq = entry.seq();
                    let gap = GapInfo { author, have_seq: seq - 1, need_seq: seq - 1, missing_parent: Some(parent) };
                    self.park_gap(t, w, entry, gap, now)?;
                    return Ok(IngestOutcome::Orphaned(gap));
                }
                if let MergeOutcome::Clamped { ahead_ms } = self.clock.merge(entry.hlc(), now) {
                    tracing::warn!(author = %author.short(), ahead_ms, "entry's clock is beyond the drift bound; not adopting it");
                }
                self.apply(t, w, entry, None)?;
                w.remote += 1;
                Ok(IngestOutcome::Applied { released: 0 })
            }
        }
    }
}
