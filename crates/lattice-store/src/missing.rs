//! Streaming the entries a peer lacks, the entries newer than a timestamp (a watch resuming),
//! and replaying log tails: all read several author logs at once and merge them in HLC order,
//! holding one decoded entry per log in memory.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::mpsc::SyncSender;

use lattice_core::{AuthorId, Hlc, VerifiedEntry};

use crate::error::StoreError;
use crate::log::RecordReader;
use crate::traits::EntrySource;

/// A k-way merge of log readers by (HLC, author). Each log is in seq order already; HLCs are
/// strictly increasing along a log, so the merge keeps every author's order.
pub(crate) struct HlcMerge {
    readers: Vec<RecordReader>,
    heap: BinaryHeap<Reverse<(Hlc, AuthorId, usize)>>,
    pending: Vec<Option<(u64, VerifiedEntry)>>,
}

impl HlcMerge {
    pub(crate) fn new(readers: Vec<RecordReader>) -> Result<Self, StoreError> {
        let mut merge =
            HlcMerge { pending: (0..readers.len()).map(|_| None).collect(), readers, heap: BinaryHeap::new() };
        for i in 0..merge.readers.len() {
            merge.refill(i)?;
        }
        Ok(merge)
    }

    fn refill(&mut self, i: usize) -> Result<(), StoreError> {
        if let Some((offset, payload)) = self.readers[i].next_record()? {
            let entry = VerifiedEntry::from_trusted_log(payload).map_err(|e| StoreError::CorruptLog {
                path: self.readers[i].path().to_path_buf(),
                offset,
                reason: e.to_string(),
            })?;
            self.heap.push(Reverse((entry.hlc(), entry.author(), i)));
            self.pending[i] = Some((offset, entry));
        }
        Ok(())
    }

    /// The next entry in HLC order: the index of its reader, its offset in that log, and the
    /// entry.
    pub(crate) fn next_entry(&mut self) -> Result<Option<Merged>, StoreError> {
        let Some(Reverse((_, _, i))) = self.heap.pop() else { return Ok(None) };
        let Some((offset, entry)) = self.pending[i].take() else { return Ok(None) };
        self.refill(i)?;
        Ok(Some((i, offset, entry)))
    }

    /// Reads and decodes the merged entries on the calling thread, handing them to `out` in
    /// chunks (the replay at open runs this on a second thread, ahead of the index work). Stops
    /// after the first error (sent after the entries before it) or when `out` is dropped.
    pub(crate) fn decode_ahead(readers: Vec<RecordReader>, out: SyncSender<DecodedChunk>) {
        let mut merge = match HlcMerge::new(readers) {
            Ok(m) => m,
            Err(e) => {
                let _ = out.send(Err(e));
                return;
            }
        };
        loop {
            let mut chunk = Vec::with_capacity(DECODE_CHUNK);
            let mut failed = None;
            let mut done = false;
            while chunk.len() < DECODE_CHUNK {
                match merge.next_entry() {
                    Ok(Some(item)) => chunk.push(item),
                    Ok(None) => {
                        done = true;
                        break;
                    }
                    Err(e) => {
                        failed = Some(e);
                        break;
                    }
                }
            }
            if !chunk.is_empty() && out.send(Ok(chunk)).is_err() {
                return;
            }
            if let Some(e) = failed {
                let _ = out.send(Err(e));
                return;
            }
            if done {
                return;
            }
        }
    }
}

/// Entries per chunk handed over by [`HlcMerge::decode_ahead`].
const DECODE_CHUNK: usize = 256;

/// One merged entry: the index of the reader it came from, its offset there, the entry.
pub(crate) type Merged = (usize, u64, VerifiedEntry);
/// A chunk of merged entries, or the error that ended the merge.
pub(crate) type DecodedChunk = Result<Vec<Merged>, StoreError>;

/// The entries a peer lacks, as a blocking iterator (run it on a blocking thread). Memory is one
/// entry and one read buffer per author being sent, whatever the number of entries.
pub struct MissingEntries {
    merge: HlcMerge,
    total: u64,
}

impl MissingEntries {
    pub(crate) fn new(readers: Vec<RecordReader>, total: u64) -> Result<Self, StoreError> {
        Ok(MissingEntries { merge: HlcMerge::new(readers)?, total })
    }
}

impl EntrySource for MissingEntries {
    fn total(&self) -> u64 {
        self.total
    }
}

impl Iterator for MissingEntries {
    type Item = Result<VerifiedEntry, StoreError>;
    fn next(&mut self) -> Option<Self::Item> {
        self.merge.next_entry().map(|o| o.map(|(_, _, e)| e)).transpose()
    }
}

/// Whether an entry is refused (stored, never applied) under the policy when the reader was made.
pub(crate) type Refusal = Box<dyn Fn(&VerifiedEntry) -> bool + Send>;

/// The applied entries with an HLC greater than a timestamp, in (HLC, author) order, as a
/// blocking iterator (run it on a blocking thread): what a watch that resumes replays. It reads
/// the logs directly, up to the lengths committed when it was made; memory is one entry and one
/// read buffer per author whose last entry is newer than the timestamp. Entries refused under
/// the policy of that moment are skipped.
pub struct History {
    merge: HlcMerge,
    since: Hlc,
    refused: Refusal,
    tips: Coverage,
}

/// The HLC of each author's last entry when a [`History`] was made: which entries it covers.
/// It outlives the reader, for a watch that leaves out the live changes its replay sent.
#[derive(Clone, Debug, Default)]
pub struct Coverage(HashMap<AuthorId, Hlc>);

impl Coverage {
    /// Whether the entry of `author` stamped `hlc` is within what the reader covers: an
    /// author's HLCs increase along its chain, so it is iff `hlc` is at most the HLC of the
    /// author's last entry when the reader was made.
    pub fn covers(&self, author: &AuthorId, hlc: Hlc) -> bool {
        self.0.get(author).is_some_and(|tip| hlc <= *tip)
    }
}

impl History {
    pub(crate) fn new(
        readers: Vec<RecordReader>,
        since: Hlc,
        refused: Refusal,
        tips: HashMap<AuthorId, Hlc>,
    ) -> Result<Self, StoreError> {
        Ok(History { merge: HlcMerge::new(readers)?, since, refused, tips: Coverage(tips) })
    }

    /// Whether the entry of `author` stamped `hlc` is within what this reader covers (see
    /// [`Coverage::covers`]). A watch that subscribed first leaves out the live changes of
    /// entries covered (and newer than `since`): the replay has them.
    pub fn covers(&self, author: &AuthorId, hlc: Hlc) -> bool {
        self.tips.covers(author, hlc)
    }

    /// What this reader covers, to keep once it is consumed.
    pub fn coverage(&self) -> &Coverage {
        &self.tips
    }
}

impl Iterator for History {
    type Item = Result<VerifiedEntry, StoreError>;
    fn next(&mut self) -> Option<Self::Item> {
        loop {
            match self.merge.next_entry() {
                Ok(Some((_, _, entry))) if entry.hlc() <= self.since || (self.refused)(&entry) => continue,
                Ok(Some((_, _, entry))) => return Some(Ok(entry)),
                Ok(None) => return None,
                Err(e) => return Some(Err(e)),
            }
        }
    }
}
