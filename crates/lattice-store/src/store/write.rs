//! Local writes: sign the next entry of our own chain and apply it.

use std::collections::{HashMap, HashSet, hash_map};

use lattice_core::{EntryBuilder, Hash, Head, Op};

use super::{Store, Tables, Work, visible};
use crate::error::StoreError;
use crate::types::{Condition, Transaction, WriteReceipt};

impl Store {
    /// Signs and applies a local write if its conditions hold against the current winners
    /// (nothing is written otherwise): the next seq of our chain, a fresh HLC, and as parents
    /// every current head of every key it touches (so the write merges any fork it sees).
    pub(crate) fn local_write(
        &mut self,
        t: &mut Tables<'_>,
        w: &mut Work,
        transaction: Transaction,
    ) -> Result<WriteReceipt, StoreError> {
        let Transaction { ops, conditions } = transaction;
        for condition in conditions {
            // Checked in this write transaction: an earlier write of the same group commit counts.
            let current = visible(&t.heads_in(condition.key())?).map(|h| h.hash);
            if !condition.holds(current) {
                let key = match condition {
                    Condition::Matches { key, .. } | Condition::Absent { key } => key,
                };
                return Err(StoreError::PreconditionFailed { key, current });
            }
        }
        for (i, op) in ops.iter().enumerate() {
            lattice_core::entry::check_op(i, op)?;
        }
        if ops.is_empty() {
            return Err(lattice_core::EntryError::NoOps.into());
        }
        // Each key's heads, read once: for the kind checks and as the parents.
        let mut heads_of: HashMap<&[u8], Vec<Head>> = HashMap::with_capacity(ops.len());
        let mut parents = Vec::new();
        let mut cited = HashSet::new();
        for op in &ops {
            if let hash_map::Entry::Vacant(slot) = heads_of.entry(op.key()) {
                let heads = slot.insert(t.heads_in(op.key())?);
                for head in heads.iter() {
                    if cited.insert(head.hash) {
                        parents.push(head.hash);
                    }
                }
            }
        }
        t.check_kinds(&ops, &heads_of)?;
        drop(heads_of);
        let me = self.identity.author();
        let tip = t.author_row(&me)?;
        // Every node would refuse it: say so rather than write an entry that never applies.
        self.policy.refuse_own_write(tip.map_or(1, |t| t.seq + 1))?;
        let hlc = self.clock.tick(self.now());
        let entry = EntryBuilder::new(self.store_id, tip.map_or(1, |t| t.seq + 1))
            .prev_hash(tip.map_or(Hash::ZERO, |t| t.hash))
            .timestamp(hlc)
            .parent_hashes(parents)
            .ops(ops)
            .sign(&self.identity)?;
        self.store_entry(t, w, &entry, None, true)?;
        w.local.push(entry.clone());
        Ok(WriteReceipt { hash: entry.hash(), hlc, seq: entry.seq() })
    }

    /// Deletes a key if it has a visible value; otherwise writes nothing and returns `None`.
    pub(crate) fn local_delete(
        &mut self,
        t: &mut Tables<'_>,
        w: &mut Work,
        key: Vec<u8>,
    ) -> Result<Option<WriteReceipt>, StoreError> {
        if visible(&t.heads_in(&key)?).is_none() {
            return Ok(None);
        }
        self.local_write(t, w, Transaction::new(vec![Op::Delete { key }])).map(Some)
    }
}
