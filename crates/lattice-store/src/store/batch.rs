//! The plumbing of one group commit: its redb transactions ([`Txn`]), its tables opened once
//! ([`Tables`]), the index rows it holds back to write in key order ([`Deferred`]), and its
//! per-batch state ([`Work`]).

use std::collections::{BTreeMap, HashMap};

use std::collections::HashSet;

use lattice_core::heads::Head;
use lattice_core::{AuthorId, Hash, Hlc, VerifiedEntry};
use redb::{Key, ReadableTable, Table, TableDefinition, Value, WriteTransaction};

use super::kinds::KindTables;
use super::orphans::OrphanTables;
use crate::error::StoreError;
use crate::tables::{self, AuthorRow, Counters, EntryRow, VersionKey, decode_heads, encode_heads};
use crate::types::{Change, GapInfo, ProofBytes};

/// A key's visible head before a transaction, and after it its visible head and its winner.
#[derive(Clone, Debug)]
pub(crate) struct VisibleChange {
    pub(super) before: Option<Head>,
    pub(super) after: Option<Head>,
    pub(super) winner: Option<Head>,
}

/// The writes of one group commit, not yet durable.
pub(crate) struct Txn {
    pub(super) state: WriteTransaction,
    /// `None` for a batch of local writes only: they never touch orphans.db, and skipping its
    /// transaction takes a commit off every put.
    pub(super) orphans: Option<WriteTransaction>,
    pub(super) work: Work,
}

impl Txn {
    /// Opens the tables of the batch (each once) and hands them out with the batch state.
    pub(crate) fn split(&mut self) -> Result<(Tables<'_>, &mut Work), StoreError> {
        let Txn { state, orphans, work } = self;
        Ok((Tables::open(state, orphans.as_ref())?, work))
    }
}

/// The tables of one group commit, opened once for the whole batch (those of orphans.db on
/// first use: a batch of local writes never touches them).
pub(crate) struct Tables<'t> {
    kv: Table<'t, &'static [u8], &'static [u8]>,
    authors: Table<'t, [u8; 32], &'static [u8]>,
    entries: Table<'t, [u8; 32], &'static [u8]>,
    versions: Table<'t, VersionKey<'static>, [u8; 32]>,
    /// Counters and sets (see `kinds`).
    pub(super) kinds: KindTables<'t>,
    /// For the tables of state.db a batch rarely touches (meta, policy, proofs), opened on use.
    pub(super) state_tx: &'t WriteTransaction,
    pub(super) orphans_tx: Option<&'t WriteTransaction>,
    pub(super) orphan_tables: Option<OrphanTables<'t>>,
    /// Index writes held back (replay, and batches of received entries), see [`Deferred`].
    /// `None`: rows are written at once.
    deferred: Option<Deferred>,
}

/// Index rows not written yet. Received entries arrive in random hash order and touch keys in
/// random order; inserting each row into its B-tree at once dirties a random page per row.
/// Held here, they are written in key order, in runs ([`Tables::flush_deferred`]), which is much
/// faster. Lookups see them first.
#[derive(Default)]
struct Deferred {
    entries: HashMap<[u8; 32], [u8; EntryRow::LEN]>,
    /// Heads of each touched key, decoded.
    kv: HashMap<Vec<u8>, Vec<Head>>,
    /// Tip of each touched author (looked up for every entry, so kept out of the B-tree too).
    authors: HashMap<AuthorId, AuthorRow>,
    /// Version rows: (key, hlc wall, hlc counter, author, entry hash).
    versions: Vec<DeferredVersion>,
    /// Rough bytes held in `kv` and `versions` (keys and values).
    kv_bytes: usize,
}

/// A [`tables::VERSIONS`] row held back: its key's parts, then the entry hash.
type DeferredVersion = (Vec<u8>, u64, u32, [u8; 32], [u8; 32]);

/// Deferred rows (see [`Deferred`]) are written once this many entries rows or this many bytes of
/// heads wait.
const DEFERRED_ENTRIES_MAX: usize = 1 << 17;
const DEFERRED_KV_BYTES_MAX: usize = 64 << 20;

/// The per-batch state of a group commit (besides the redb transactions).
pub(crate) struct Work {
    /// Touched logs and their length before this transaction (to undo on failure).
    pub(super) log_lens: HashMap<AuthorId, u64>,
    /// Per touched key whose visible head changed: the visible head before the transaction, and
    /// now the visible head and the winner (a tombstone names the delete).
    pub(super) changed: BTreeMap<Vec<u8>, VisibleChange>,
    /// Keys whose counter or set state changed, with the entry that changed it last: their
    /// value may change while their visible head stays.
    pub(super) kinded: BTreeMap<Vec<u8>, Change>,
    /// Whether `changed` is kept (not during the replay at open: no watcher exists yet).
    pub(super) track_changes: bool,
    pub(super) counters: Counters,
    pub(super) local: Vec<VerifiedEntry>,
    pub(super) remote: usize,
    pub(super) gaps: Vec<GapInfo>,
    /// The equivocation proofs this transaction added (new to this store), for the commit event.
    pub(super) proofs: Vec<ProofBytes>,
    /// Set when a storage error left the transaction half-applied: it must not commit.
    pub(crate) poisoned: Option<String>,
    /// Set when the batch changed the policy: its commit is durable (the policy and proofs are
    /// not in the logs), and an abort reloads the policy that was committed.
    pub(super) policy_changed: bool,
    /// The new heads digest of every key the batch changed, by path (see `merkle`).
    pub(super) leaves: HashMap<lattice_core::merkle::Digest, Option<lattice_core::merkle::Digest>>,
    /// Leaves of committed batches that this transaction put in the tree: waiting again if it
    /// aborts.
    pub(super) taken_pending: HashMap<lattice_core::merkle::Digest, Option<lattice_core::merkle::Digest>>,
}

impl<'t> Tables<'t> {
    fn open(state: &'t WriteTransaction, orphans: Option<&'t WriteTransaction>) -> Result<Self, StoreError> {
        Ok(Tables {
            kv: state.open_table(tables::KV)?,
            authors: state.open_table(tables::AUTHORS)?,
            entries: state.open_table(tables::ENTRIES)?,
            versions: state.open_table(tables::VERSIONS)?,
            kinds: KindTables {
                state: state.open_table(tables::KIND_STATE)?,
                ops: state.open_table(tables::KIND_OPS)?,
                members: state.open_table(tables::SET_MEMBERS)?,
            },
            state_tx: state,
            orphans_tx: orphans,
            orphan_tables: None,
            deferred: None,
        })
    }

    /// From now on, index rows are held back and written in key order, in runs; the caller
    /// must call [`Tables::flush_deferred`] before the transaction commits.
    pub(crate) fn defer_index_writes(&mut self) {
        self.deferred.get_or_insert_with(Deferred::default);
    }

    /// Writes the rows held back, each table's in key order.
    pub(crate) fn flush_deferred(&mut self) -> Result<(), StoreError> {
        let Some(deferred) = &mut self.deferred else { return Ok(()) };
        let mut rows: Vec<_> = deferred.entries.drain().collect();
        rows.sort_unstable_by_key(|(hash, _)| *hash);
        for (hash, row) in rows {
            self.entries.insert(hash, row.as_slice())?;
        }
        let mut heads: Vec<_> = deferred.kv.drain().collect();
        deferred.kv_bytes = 0;
        heads.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        for (key, heads) in heads {
            self.kv.insert(key.as_slice(), encode_heads(&heads).as_slice())?;
        }
        for (author, row) in deferred.authors.drain() {
            self.authors.insert(author.0, row.encode().as_slice())?;
        }
        deferred.versions.sort_unstable();
        for (key, wall, counter, author, hash) in deferred.versions.drain(..) {
            self.versions.insert((key.as_slice(), wall, counter, author), hash)?;
        }
        Ok(())
    }

    /// Records that the entry `hash` of `author` stamped `hlc` touched `key` (see
    /// [`tables::VERSIONS`]).
    pub(super) fn add_version(&mut self, key: &[u8], hlc: Hlc, author: AuthorId, hash: Hash) -> Result<(), StoreError> {
        match &mut self.deferred {
            Some(deferred) => {
                deferred.kv_bytes += key.len() + 80;
                deferred.versions.push((key.to_vec(), hlc.wall_ms, hlc.counter, author.0, hash.0));
                if deferred.kv_bytes >= DEFERRED_KV_BYTES_MAX {
                    self.flush_deferred()?;
                }
            }
            None => {
                self.versions.insert((key, hlc.wall_ms, hlc.counter, author.0), hash.0)?;
            }
        }
        Ok(())
    }

    pub(super) fn set_author_row(&mut self, author: AuthorId, row: AuthorRow) -> Result<(), StoreError> {
        match &mut self.deferred {
            Some(deferred) => {
                deferred.authors.insert(author, row);
            }
            None => {
                self.authors.insert(author.0, row.encode().as_slice())?;
            }
        }
        Ok(())
    }

    pub(super) fn insert_entry(&mut self, hash: &Hash, row: &EntryRow) -> Result<(), StoreError> {
        match &mut self.deferred {
            Some(deferred) => {
                deferred.entries.insert(hash.0, row.encode());
                if deferred.entries.len() >= DEFERRED_ENTRIES_MAX {
                    self.flush_deferred()?;
                }
            }
            None => {
                self.entries.insert(hash.0, row.encode().as_slice())?;
            }
        }
        Ok(())
    }

    /// The heads of `key`, taken out of the deferred rows if held there (put them back with
    /// [`Tables::set_heads`]).
    pub(super) fn take_heads(&mut self, key: &[u8]) -> Result<Vec<Head>, StoreError> {
        if let Some(heads) = self.deferred.as_mut().and_then(|d| d.kv.remove(key)) {
            return Ok(heads);
        }
        self.heads_in(key)
    }

    pub(super) fn set_heads(&mut self, key: &[u8], heads: Vec<Head>) -> Result<(), StoreError> {
        match &mut self.deferred {
            Some(deferred) => {
                deferred.kv_bytes += key.len() + heads.iter().map(|h| h.value.len() + 64).sum::<usize>();
                deferred.kv.insert(key.to_vec(), heads);
                if deferred.kv_bytes >= DEFERRED_KV_BYTES_MAX {
                    self.flush_deferred()?;
                }
            }
            None => {
                self.kv.insert(key, encode_heads(&heads).as_slice())?;
            }
        }
        Ok(())
    }

    pub(super) fn author_row(&self, author: &AuthorId) -> Result<Option<AuthorRow>, StoreError> {
        if let Some(row) = self.deferred.as_ref().and_then(|d| d.authors.get(author)) {
            return Ok(Some(*row));
        }
        let row = self.authors.get(author.0)?;
        row.map(|v| AuthorRow::read(v.value())).transpose()
    }

    /// Where the entry `hash` is stored, if it is held.
    pub(super) fn entry_row(&self, hash: &Hash) -> Result<Option<EntryRow>, StoreError> {
        let deferred = self.deferred.as_ref().and_then(|d| d.entries.get(&hash.0));
        if let Some(row) = deferred {
            return Ok(EntryRow::decode(row));
        }
        let found = self.entries.get(hash.0)?;
        Ok(found.and_then(|v| EntryRow::decode(v.value())))
    }

    pub(super) fn holds(&self, hash: &Hash) -> Result<bool, StoreError> {
        if self.deferred.as_ref().is_some_and(|d| d.entries.contains_key(&hash.0)) {
            return Ok(true);
        }
        Ok(self.entries.get(hash.0)?.is_some())
    }

    /// Opens a table of state.db that [`Tables`] does not hold open (meta, policy, proofs).
    pub(super) fn state_table<K: Key + 'static, V: Value + 'static>(
        &self,
        table: TableDefinition<K, V>,
    ) -> Result<Table<'t, K, V>, StoreError> {
        Ok(self.state_tx.open_table(table)?)
    }

    /// The first parent of `entry` neither held nor in `counts_as_held` (looked up only for a
    /// parent not held).
    pub(super) fn first_missing_parent(
        &self,
        entry: &VerifiedEntry,
        counts_as_held: &HashSet<Hash>,
    ) -> Result<Option<Hash>, StoreError> {
        for p in entry.parents() {
            if !self.holds(p)? && !counts_as_held.contains(p) {
                return Ok(Some(*p));
            }
        }
        Ok(None)
    }

    pub(super) fn heads_in(&self, key: &[u8]) -> Result<Vec<Head>, StoreError> {
        if let Some(heads) = self.deferred.as_ref().and_then(|d| d.kv.get(key)) {
            return Ok(heads.clone());
        }
        let found = self.kv.get(key)?;
        found.map(|v| decode_heads(v.value())).transpose().map(Option::unwrap_or_default)
    }
}
