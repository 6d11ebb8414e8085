//! Received entries: authorisation, chain rules, limits, apply or park (or store as refused),
//! and the release of the orphans that waited for what was stored.

use lattice_core::VerifiedEntry;
use lattice_core::chain::{ChainError, NextCheck, check_next};
use lattice_core::hlc::MergeOutcome;

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
        let (outcome, stored) = self.ingest_one(t, w, &entry, now)?;
        if !stored {
            return Ok(outcome);
        }
        let released = self.release_waiting(t, w, &entry, now)?;
        Ok(match outcome {
            IngestOutcome::Applied { .. } => IngestOutcome::Applied { released },
            other => other,
        })
    }

    /// Ingests, iteratively, every orphan that waited for `entry` (just stored), and those that
    /// waited for them, and so on. Returns how many were applied.
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
                    Ok((outcome, true)) => {
                        released += usize::from(matches!(outcome, IngestOutcome::Applied { .. }));
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

    /// Applies the held entries of every author the policy admits now (with what waited for
    /// them). Returns how many entries were applied.
    pub(super) fn admit_held(&mut self, t: &mut Tables<'_>, w: &mut Work) -> Result<u64, StoreError> {
        let o = t.orphan_tables()?;
        let admitted: Vec<Waiting> = o
            .authors_awaiting_admission()?
            .into_iter()
            .filter(|author| self.admits(author))
            .map(Waiting::Authorisation)
            .collect();
        let entries = o.take_waiting_for(&admitted)?;
        let held = entries.len();
        let applied = self.reingest(t, w, entries)?;
        if held > 0 {
            tracing::info!(held, applied, "applied entries of newly authorised authors");
        }
        Ok(applied)
    }

    /// Ingests entries taken out of orphans.db again (what waited for them too). Returns how
    /// many entries were applied.
    pub(super) fn reingest(
        &mut self,
        t: &mut Tables<'_>,
        w: &mut Work,
        entries: Vec<VerifiedEntry>,
    ) -> Result<u64, StoreError> {
        let mut applied = 0u64;
        for entry in entries {
            match self.ingest(t, w, entry) {
                Ok(IngestOutcome::Applied { released }) => applied += 1 + released as u64,
                Ok(_) => {}
                Err(IngestError::Store(e)) => return Err(e),
                Err(e) => tracing::warn!(error = %e, "dropping a held entry that no longer validates"),
            }
        }
        Ok(applied)
    }

    /// One entry, without the release of what waited for it. Returns its outcome and whether it
    /// was stored now (applied, or stored as refused): only then can orphans wait for it.
    fn ingest_one(
        &mut self,
        t: &mut Tables<'_>,
        w: &mut Work,
        entry: &VerifiedEntry,
        now: u64,
    ) -> Result<(IngestOutcome, bool), IngestError> {
        let author = entry.author();
        let tip = t.author_row(&author)?;
        // An author's entries are stored in seq order, so every held one has a seq at or below
        // the tip: only then can this one be held, and only then is the (random-key) lookup paid.
        let held = entry.seq() <= tip.map_or(0, |t| t.seq) && t.holds(&entry.hash())?;
        if !self.admits(&author) {
            if entry.store_id() != self.store_id {
                return Err(ChainError::WrongStore { expected: self.store_id, got: entry.store_id() }.into());
            }
            if held {
                return Ok((IngestOutcome::Duplicate, false));
            }
            self.park(t, w, entry, Waiting::Authorisation(author), None, now)?;
            return Ok((IngestOutcome::Unauthorised, false));
        }
        let tip_hash = tip.map(|t| (t.seq, t.hash));
        let check = check_next(self.store_id, tip.map(|r| r.tip()).as_ref(), entry, held, |seq| {
            tip_hash.filter(|(s, _)| *s == seq).map(|(_, h)| h)
        });
        if let Err(ChainError::Equivocation { .. }) = &check {
            self.note_equivocation(entry);
        }
        let limit = self.policy.limit(&author);
        let refused = self.policy.refuses(entry);
        match check? {
            NextCheck::Duplicate => Ok((IngestOutcome::Duplicate, false)),
            NextCheck::Gap { have_seq, need_seq } if refused => {
                // Not parked: a sync sends the author's entries in seq order, so this one comes
                // back after its predecessor. What is missing below the limit is a real gap.
                if let Some(limit) = limit.filter(|limit| have_seq < *limit) {
                    w.gaps.push(GapInfo { author, have_seq, need_seq: need_seq.min(limit), missing_parent: None });
                }
                Ok((IngestOutcome::Refused, false))
            }
            NextCheck::Gap { have_seq, need_seq } => {
                let gap = GapInfo { author, have_seq, need_seq, missing_parent: None };
                self.park_gap(t, w, entry, gap, now)?;
                Ok((IngestOutcome::Orphaned(gap), false))
            }
            NextCheck::Next if refused => {
                // Stored (so sync state shows it and sync serves it) but never part of the state;
                // its parents do not matter, and its clock is not adopted.
                self.store_entry(t, w, entry, None, false)?;
                Ok((IngestOutcome::Refused, true))
            }
            NextCheck::Next => {
                if let Some(parent) = t.first_missing_parent(entry, self.policy.proven())? {
                    let seq = entry.seq();
                    let gap = GapInfo { author, have_seq: seq - 1, need_seq: seq - 1, missing_parent: Some(parent) };
                    self.park_gap(t, w, entry, gap, now)?;
                    return Ok((IngestOutcome::Orphaned(gap), false));
                }
                if let MergeOutcome::Clamped { ahead_ms } = self.clock.merge(entry.hlc(), now) {
                    tracing::warn!(author = %author.short(), ahead_ms, "entry's clock is beyond the drift bound; not adopting it");
                }
                self.store_entry(t, w, entry, None, true)?;
                w.remote += 1;
                Ok((IngestOutcome::Applied { released: 0 }, true))
            }
        }
    }
}
