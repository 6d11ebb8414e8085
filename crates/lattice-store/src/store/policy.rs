//! Who may write (DESIGN.md §7.2, §7.4): the authorisation the node sets, the equivocation
//! proofs this store holds, and the per-author limit they make. An entry of a limited author past
//! its limit is refused: stored and served, never applied; so is one at its cut-off's seq whose
//! hash is not the cut-off's (it forks from the chain the cut-off names). When a change moves
//! the limit of an author across entries already stored, the index is recomputed from the logs
//! (the rebuild the open runs when state.db is gone), after the batch that made the change
//! commits.

use std::collections::{BTreeSet, HashMap, HashSet};

use lattice_core::{AuthorId, Clock, Hash, Kind, VerifiedEntry};
use redb::{Database, Durability, ReadableDatabase, ReadableTable};

use super::{Store, Tables, Work, visible};
use crate::error::StoreError;
use crate::log::RecordReader;
use crate::tables::{self, AuthorisationRow, ProofRow, Waiting};
use crate::types::{Authorisation, Cutoff, ProofBytes, WatchEvent};

/// A proven fork of one author: the seq signed twice and the hashes of the two entries.
struct Fork {
    seq: u64,
    hashes: [Hash; 2],
}

/// The rules a store applies to entries, as persisted in state.db (`policy_v1`,
/// `equivocations_v1`), with the limits they make.
pub(crate) struct Policy {
    /// This node's author: always admitted (its limits still apply).
    me: AuthorId,
    authorisation: Option<Authorisation>,
    forks: HashMap<AuthorId, Fork>,
    /// The entries of every proof. One of each pair may never be held here (this node holds the
    /// other branch), yet an entry that cites it applies as if it were absent, as on a node that
    /// holds it: for the DAG-parent check, these count as held.
    proven: HashSet<Hash>,
    /// Per limited author, the last seq that applies: min(cut-off, fork seq - 1).
    limits: HashMap<AuthorId, u64>,
    /// The cut-offs whose hash is known and whose seq is within the limit: the entry at that seq
    /// applies only if it has that hash.
    cut_hashes: HashMap<AuthorId, Cutoff>,
}

/// Whether `entry` is refused under `limits` and `cut_hashes`: its author's limit is below its
/// seq, or it sits at its author's cut-off seq with another hash than the cut-off's. No lookup
/// at all while no author is limited: this is on every entry's path.
fn refused_under(
    limits: &HashMap<AuthorId, u64>,
    cut_hashes: &HashMap<AuthorId, Cutoff>,
    entry: &VerifiedEntry,
) -> bool {
    !limits.is_empty()
        && limits.get(&entry.author()).is_some_and(|&limit| {
            entry.seq() > limit
                || cut_hashes.get(&entry.author()).is_some_and(|c| c.seq == entry.seq() && c.hash != entry.hash())
        })
}

/// What decides which entries of each author apply: the limits and the cut-off hashes.
#[derive(Clone, Default, PartialEq, Eq)]
pub(super) struct Rules {
    limits: HashMap<AuthorId, u64>,
    cut_hashes: HashMap<AuthorId, Cutoff>,
}

impl Rules {
    /// The seqs of `author` that may change status between `self` and `other`: `(after, upto)`
    /// (the entries with `after < seq <= upto`), or `None` if the two rules agree on `author`.
    fn changed_range(&self, other: &Rules, author: &AuthorId) -> Option<(u64, u64)> {
        let limit = |r: &Rules| r.limits.get(author).copied().unwrap_or(UNLIMITED);
        let cut = |r: &Rules| r.cut_hashes.get(author).copied();
        let (was, now) = (limit(self), limit(other));
        if was == now && cut(self) == cut(other) {
            return None;
        }
        // Below every bound that moved: an entry at a cut-off's seq changes status with its hash.
        let after = [cut(self), cut(other)].into_iter().flatten().fold(was.min(now), |lo, c| lo.min(c.seq - 1));
        Some((after, was.max(now)))
    }
}

/// A limit of `u64::MAX`: every entry applies.
const UNLIMITED: u64 = u64::MAX;

impl Policy {
    /// Everyone admitted, nobody limited: until [`Policy::load`] reads the persisted policy.
    pub(super) fn empty(me: AuthorId) -> Self {
        Policy {
            me,
            authorisation: None,
            forks: HashMap::new(),
            proven: HashSet::new(),
            limits: HashMap::new(),
            cut_hashes: HashMap::new(),
        }
    }

    /// Reads the policy persisted in `state`.
    pub(super) fn load(state: &Database, me: AuthorId) -> Result<Self, StoreError> {
        let tx = state.begin_read().map_err(redb::Error::from)?;
        let authorisation = match tx.open_table(tables::POLICY)?.get(tables::POLICY_AUTHORISATION)? {
            Some(row) => Some(
                AuthorisationRow::decode(row.value())
                    .ok_or_else(|| StoreError::CorruptIndex("authorisation".into()))?,
            ),
            None => None,
        };
        let mut forks = HashMap::new();
        for item in tx.open_table(tables::PROOFS)?.iter()? {
            let (key, row) = item?;
            let (author, seq) = key.value();
            let (a, b) = ProofRow::decode(row.value()).ok_or_else(|| StoreError::CorruptIndex("proof".into()))?;
            forks.insert(AuthorId(author), Fork { seq, hashes: [Hash::of(a), Hash::of(b)] });
        }
        let mut policy = Policy { authorisation, forks, ..Policy::empty(me) };
        policy.derive();
        Ok(policy)
    }

    /// Recomputes `limits`, `cut_hashes` and `proven` from the authorisation and the forks.
    fn derive(&mut self) {
        let cutoffs = || self.authorisation.iter().flat_map(|a| a.cutoffs.iter());
        let mut limits: HashMap<AuthorId, u64> = cutoffs().map(|(k, v)| (*k, v.seq)).collect();
        for (author, fork) in &self.forks {
            let limit = limits.entry(*author).or_insert(UNLIMITED);
            *limit = (*limit).min(fork.seq.saturating_sub(1));
        }
        // A cut-off hash binds only where its seq still applies (a fork below it refuses it).
        self.cut_hashes = cutoffs()
            .filter(|(author, c)| c.seq > 0 && c.hash != Hash::ZERO && limits.get(*author).is_some_and(|l| c.seq <= *l))
            .map(|(k, v)| (*k, *v))
            .collect();
        self.limits = limits;
        self.proven = self.forks.values().flat_map(|f| f.hashes).collect();
    }

    /// The limits and cut-off hashes, to compare with those after a change.
    pub(super) fn rules(&self) -> Rules {
        Rules { limits: self.limits.clone(), cut_hashes: self.cut_hashes.clone() }
    }

    /// Whether `author`'s entries are let in at all (else they wait for admission in orphans.db).
    pub(super) fn admits(&self, author: &AuthorId) -> bool {
        *author == self.me
            || self.authorisation.as_ref().is_none_or(|a| a.members.contains(author) || a.cutoffs.contains_key(author))
    }

    /// The last seq of `author` that applies; `None`: all do. A map lookup, and none at all while
    /// no author is limited: this is on every entry's path.
    pub(super) fn limit(&self, author: &AuthorId) -> Option<u64> {
        if self.limits.is_empty() { None } else { self.limits.get(author).copied() }
    }

    /// Whether `entry` is refused (see [`refused_under`]).
    pub(super) fn refuses(&self, entry: &VerifiedEntry) -> bool {
        refused_under(&self.limits, &self.cut_hashes, entry)
    }

    /// [`Policy::refuses`] as it stands now, for a reader of the logs off the actor thread.
    pub(super) fn refusal(&self) -> crate::missing::Refusal {
        let Rules { limits, cut_hashes } = self.rules();
        Box::new(move |entry: &VerifiedEntry| refused_under(&limits, &cut_hashes, entry))
    }

    /// Hashes that count as held for the DAG-parent check although they may not be (see `proven`).
    pub(super) fn proven(&self) -> &HashSet<Hash> {
        &self.proven
    }

    /// Why our own next write (at `seq`) would be refused, if it would.
    /// A write at our cut-off's seq is refused too: the cut-off names an entry there that this
    /// node does not hold (a restored backup), and a new one would fork from it.
    pub(super) fn refuse_own_write(&self, seq: u64) -> Result<(), StoreError> {
        let at_cut = self.cut_hashes.get(&self.me).is_some_and(|c| c.seq == seq);
        match self.limit(&self.me) {
            Some(limit) if seq > limit || at_cut => Err(match self.forks.get(&self.me) {
                Some(fork) if fork.seq.saturating_sub(1) == limit => StoreError::Equivocated { fork_seq: fork.seq },
                _ => StoreError::Removed { cutoff: limit },
            }),
            _ => Ok(()),
        }
    }

    /// The equivocated authors and their fork seqs, in author order.
    pub(super) fn equivocated(&self) -> Vec<(AuthorId, u64)> {
        let mut out: Vec<_> = self.forks.iter().map(|(a, f)| (*a, f.seq)).collect();
        out.sort();
        out
    }
}

impl Store {
    /// Sets who may write (`None`: everyone). Entries of newly admitted authors that waited in
    /// orphans.db are applied (returns how many); entries past a lowered limit that waited there
    /// are stored as refused or dropped; if the new limits change the status of stored entries,
    /// the index is recomputed once the batch commits. An unchanged policy costs nothing.
    pub(crate) fn set_authorisation(
        &mut self,
        t: &mut Tables<'_>,
        w: &mut Work,
        authorisation: Option<Authorisation>,
    ) -> Result<u64, StoreError> {
        if self.policy.authorisation == authorisation {
            return Ok(0);
        }
        {
            let mut table = t.state_table(tables::POLICY)?;
            match &authorisation {
                Some(a) => table.insert(tables::POLICY_AUTHORISATION, AuthorisationRow::encode(a).as_slice())?,
                None => table.remove(tables::POLICY_AUTHORISATION)?,
            };
        }
        let before = self.policy.rules();
        self.policy.authorisation = authorisation;
        self.policy.derive();
        self.limits_changed(t, w, &before)?;
        self.admit_held(t, w)
    }

    /// Records a proof that `a` and `b` (valid, signed by one author at one seq in this store,
    /// different) fork their author's chain. Returns false if a fork of that author at this seq
    /// or before was known already (only the first fork decides what is refused).
    pub(crate) fn add_proof(
        &mut self,
        t: &mut Tables<'_>,
        w: &mut Work,
        a: VerifiedEntry,
        b: VerifiedEntry,
    ) -> Result<bool, StoreError> {
        let (author, seq) = (a.author(), a.seq());
        let known = self.policy.forks.get(&author).map(|f| f.seq);
        if known.is_some_and(|known| known <= seq) {
            return Ok(false);
        }
        let (first, second) = if a.hash() < b.hash() { (a, b) } else { (b, a) };
        {
            let mut proofs = t.state_table(tables::PROOFS)?;
            if let Some(known) = known {
                proofs.remove((author.0, known))?;
            }
            proofs.insert((author.0, seq), ProofRow::encode(first.bytes(), second.bytes()).as_slice())?;
        }
        w.proofs.push((first.bytes().to_vec(), second.bytes().to_vec()));
        tracing::warn!(store = %self.store_id, author = %author.short(), seq,
            "equivocation: the author signed two entries at one seq; its entries from it on are refused");
        let before = self.policy.rules();
        let hashes = [first.hash(), second.hash()];
        self.policy.forks.insert(author, Fork { seq, hashes });
        self.policy.derive();
        self.limits_changed(t, w, &before)?;
        // What waited for either entry as a parent applies now, as on a node that holds it.
        let waiting = t.orphan_tables()?.take_waiting_for(&hashes.map(Waiting::Parent))?;
        self.reingest(t, w, waiting)?;
        Ok(true)
    }

    /// After the rules changed from `before`: marks the policy change (a durable commit), notes
    /// which stored entries change status (recomputed after the commit, see [`Store::settle`]),
    /// and takes the orphans that are refused now out of orphans.db (stored as refused, or
    /// dropped if their predecessor is missing).
    fn limits_changed(&mut self, t: &mut Tables<'_>, w: &mut Work, before: &Rules) -> Result<(), StoreError> {
        w.policy_changed = true;
        let now = self.policy.rules();
        let authors: BTreeSet<AuthorId> =
            [before, &now].into_iter().flat_map(|r| r.limits.keys().chain(r.cut_hashes.keys())).copied().collect();
        let mut lowered = Vec::new();
        for author in authors {
            let Some((after, upto)) = before.changed_range(&now, &author) else { continue };
            // The rules moved (a limit, a cut-off hash): orphans past `after` may be refused now.
            // Orphans of authors not admitted keep waiting for their admission.
            if self.policy.admits(&author) {
                lowered.push((author, after));
            }
            let tip = t.author_row(&author)?.map_or(0, |r| r.seq);
            if after < tip {
                self.to_recompute.push((author, after, upto.min(tip)));
            }
        }
        if !self.to_recompute.is_empty() {
            t.state_table(tables::META)?.insert(tables::META_RECOMPUTE, [1u8].as_slice())?;
        }
        // Only the orphans of the authors whose rules moved are read: those past the change.
        for (author, limit) in lowered {
            let refused = t.orphan_tables()?.take_past(&author, limit)?;
            self.reingest(t, w, refused)?;
        }
        Ok(())
    }

    /// Notes an entry that forks its author's chain at a seq already held. Its proof (with the
    /// entry held at that seq, read from the log once the batch is durable) is made by
    /// [`Store::settle`], unless a fork of the author at or before that seq is known already.
    pub(super) fn note_equivocation(&mut self, entry: &VerifiedEntry) {
        let known = self.policy.forks.get(&entry.author()).is_some_and(|f| f.seq <= entry.seq());
        if !known {
            self.equivocations.push(entry.clone());
        }
    }

    /// Whether [`Store::settle`] has work.
    pub(crate) fn needs_settling(&self) -> bool {
        !self.equivocations.is_empty() || !self.to_recompute.is_empty()
    }

    /// Run after a batch committed: makes the proofs of the equivocations it saw, then, if the
    /// policy changed the status of stored entries, rebuilds the index from the logs under it.
    /// Returns the visible-value changes (computed only if `want_events`). A failure stops the
    /// store (its index may match neither policy); the reopen rebuilds it.
    pub(crate) fn settle(&mut self, want_events: bool) -> Result<Vec<WatchEvent>, StoreError> {
        let result = self.make_proofs().and_then(|mut events| {
            if !self.to_recompute.is_empty() {
                events.extend(self.recompute(want_events)?);
            }
            Ok(events)
        });
        if let Err(e) = &result {
            tracing::error!(store = %self.store_id, error = %e, "recomputing the store under a new policy failed; stopping it until it is reopened");
            self.stopped = Some(e.to_string());
        }
        result
    }

    fn make_proofs(&mut self) -> Result<Vec<WatchEvent>, StoreError> {
        let mut seen = std::mem::take(&mut self.equivocations);
        seen.sort_by_key(|e| (e.author(), e.seq()));
        let mut proofs: Vec<(VerifiedEntry, VerifiedEntry)> = Vec::new();
        for second in seen {
            // Only an author's first fork matters: later ones cost no log scan.
            let author = second.author();
            let known = self.policy.forks.get(&author).map(|f| f.seq);
            let found = proofs.iter().rev().find(|(e, _)| e.author() == author).map(|(e, _)| e.seq());
            if known.or(found).is_some_and(|seq| seq <= second.seq()) {
                continue;
            }
            if let Some(first) = self.held_entry_at(&author, second.seq())?
                && first.hash() != second.hash()
            {
                proofs.push((first, second));
            }
        }
        if proofs.is_empty() {
            return Ok(Vec::new());
        }
        let mut txn = self.begin(true)?;
        let made = txn.split().and_then(|(mut t, w)| {
            proofs.into_iter().try_for_each(|(first, second)| self.add_proof(&mut t, w, first, second).map(drop))
        });
        if let Err(e) = made {
            self.abort(txn);
            return Err(e);
        }
        let mut events = Vec::new();
        self.commit_with(txn, Durability::Immediate, |changes| events = changes)?;
        Ok(events)
    }

    /// The entries of `author`'s log as indexed, in seq order (read from disk: call it only
    /// when the log's appends are synced, i.e. outside a batch).
    fn indexed_log(
        &self,
        author: &AuthorId,
    ) -> Result<impl Iterator<Item = Result<VerifiedEntry, StoreError>>, StoreError> {
        let len = self.author_row(author)?.map_or(0, |r| r.log_len);
        let path = self.log_path(author);
        let reader = if len == 0 { None } else { Some(RecordReader::open(&path, 0, len)?) };
        Ok(reader.into_iter().flatten().map(move |record| {
            let (offset, payload) = record?;
            VerifiedEntry::from_trusted_log(payload).map_err(|e| StoreError::CorruptLog {
                path: path.clone(),
                offset,
                reason: e.to_string(),
            })
        }))
    }

    /// The entry of `author` at `seq` in its log, if held.
    fn held_entry_at(&self, author: &AuthorId, seq: u64) -> Result<Option<VerifiedEntry>, StoreError> {
        for entry in self.indexed_log(author)? {
            let entry = entry?;
            if entry.seq() == seq {
                return Ok(Some(entry));
            }
        }
        Ok(None)
    }

    /// Rebuilds the index from the logs under the current policy. Our clock keeps what it had
    /// (a rebuilt clock could lag it, and our next write must be later than everything we saw).
    fn recompute(&mut self, want_events: bool) -> Result<Vec<WatchEvent>, StoreError> {
        let ranges = std::mem::take(&mut self.to_recompute);
        // The keys whose value may change: those of the entries that change status.
        let mut keys = BTreeSet::new();
        if want_events {
            for (author, after, upto) in &ranges {
                for entry in self.indexed_log(author)? {
                    let entry = entry?;
                    if entry.seq() > *upto {
                        break;
                    }
                    if entry.seq() > *after {
                        keys.extend(entry.ops().iter().map(|op| op.key().to_vec()));
                    }
                }
            }
        }
        let mut before = Vec::with_capacity(keys.len());
        for key in keys {
            let value = visible(&self.get_heads(&key)?);
            before.push((key, value));
        }
        tracing::info!(store = %self.store_id, authors = ranges.len(), "the policy changes the status of stored entries; rebuilding the index from the logs");
        let clock = self.clock.last();
        // The rebuild may cut a log (an entry allowed now whose parent was never fetched moves
        // to orphans.db); open writers would not know.
        self.logs.clear();
        self.catch_up(true)?;
        if clock > self.clock.last() {
            self.clock = Clock::resume(clock, self.config.max_drift_ms);
        }
        let mut events = Vec::new();
        for (key, was) in before {
            let now = visible(&self.get_heads(&key)?);
            // A counter or a set may change under the same head: compare the values too.
            let moved = was.as_ref().map(|h| h.hash) != now.as_ref().map(|h| h.hash)
                || now.as_ref().is_some_and(|h| h.kind != Kind::Register);
            if moved {
                // No new entry made this change: see `Store::event_now`.
                events.extend(self.event_now(key, was.as_ref())?);
            }
        }
        Ok(events)
    }

    /// The proofs held, each as (first, second) SignedEntry bytes, in author order.
    pub(crate) fn proofs(&self) -> Result<Vec<ProofBytes>, StoreError> {
        let tx = self.state.begin_read().map_err(redb::Error::from)?;
        let mut out = Vec::new();
        for item in tx.open_table(tables::PROOFS)?.iter()? {
            let (_, row) = item?;
            let (a, b) = ProofRow::decode(row.value()).ok_or_else(|| StoreError::CorruptIndex("proof".into()))?;
            out.push((a.to_vec(), b.to_vec()));
        }
        Ok(out)
    }

    /// Whether the authorisation admits `author` (see [`Policy::admits`]).
    pub(super) fn admits(&self, author: &AuthorId) -> bool {
        self.policy.admits(author)
    }
}
