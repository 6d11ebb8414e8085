//! The head set of a key and the winner rule.
//!
//! A key holds the entries that wrote it and that no later write of it has superseded: an entry
//! supersedes the heads it cites in `parent_hashes`, and its own author's earlier heads of the
//! key (the author's chain orders them), so a key holds at most one head per author. Given
//! causal delivery (an entry is applied only after its parents and its author's previous
//! entries), the resulting set does not depend on arrival order, and [`apply`] keeps it in one
//! canonical order (winner first) so two replicas holding the same entries hold byte-identical
//! head lists.

use crate::hlc::Hlc;
use crate::ids::{AuthorId, Hash};
use crate::op::Kind;
use crate::proto;

/// One head of a key: the value an entry left there (or a tombstone).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Head {
    /// The value written; empty for a tombstone.
    pub value: Vec<u8>,
    /// HLC of the entry that wrote it; the first key of the winner rule.
    pub hlc: Hlc,
    /// Author of that entry; breaks HLC ties (higher bytes win).
    pub author: AuthorId,
    /// Hash of that entry; later writes cite it in `parent_hashes` to supersede this head.
    pub hash: Hash,
    /// True if the entry deleted the key.
    pub tombstone: bool,
    /// What the entry's last op on the key wrote: the kind the key holds while this head wins
    /// ([`Kind::Register`] for a put or a tombstone). A counter's or a set's value is not in
    /// the head: the store derives it from every op of the key.
    pub kind: Kind,
}

impl Head {
    /// Winner order: highest HLC, then highest author bytes; the hash breaks the (impossible
    /// without equivocation) remaining tie so the order is total.
    fn rank(&self) -> (Hlc, AuthorId, Hash) {
        (self.hlc, self.author, self.hash)
    }

    /// The protobuf form, as stored in `state.db` (see [`from_proto`](Self::from_proto)).
    pub fn to_proto(&self) -> proto::HeadInfo {
        proto::HeadInfo {
            value: self.value.clone(),
            hlc: Some(self.hlc.to_proto()),
            author: self.author.0.to_vec(),
            hash: self.hash.0.to_vec(),
            tombstone: self.tombstone,
            kind: self.kind.to_wire(),
        }
    }

    /// Reads a head back from `state.db`. `None` if the record is malformed.
    pub fn from_proto(p: proto::HeadInfo) -> Option<Head> {
        Some(Head {
            hlc: Hlc::from_proto(p.hlc.as_ref()?),
            author: AuthorId(p.author.as_slice().try_into().ok()?),
            hash: Hash::from_bytes(&p.hash).ok()?,
            tombstone: p.tombstone,
            kind: Kind::from_wire(p.kind)?,
            value: p.value,
        })
    }
}

/// The winning head: the first in canonical order. `None` for an empty set.
pub fn winner(heads: &[Head]) -> Option<&Head> {
    heads.iter().max_by_key(|h| h.rank())
}

/// The head whose value the key shows, if any: the winner, unless it is a tombstone; then the
/// highest counter or set head, if one is left (heads are mutually concurrent, so that op was
/// not observed by the delete, and a counter or a set keeps what a delete did not observe).
/// A tombstone that wins over registers only reads as "not found".
pub fn visible(heads: &[Head]) -> Option<&Head> {
    match winner(heads) {
        Some(w) if !w.tombstone => Some(w),
        Some(_) => heads.iter().filter(|h| !h.tombstone && h.kind != Kind::Register).max_by_key(|h| h.rank()),
        None => None,
    }
}

/// Applies a write to a key's head set: drops every head `cited` says the write cites in its
/// `parent_hashes`, and the heads of the same author that are earlier in its chain; adds `new`
/// (once), and restores canonical order (winner first).
///
/// An author's chain orders its entries by HLC (each is strictly later than the previous one),
/// so "earlier" compares `(hlc, hash)`. A write that arrives after a later head of its own author
/// (never the case when entries apply in chain order, as the store applies them) is not added
/// and displaces nothing of its author; the heads it cites still go, as they would have had it
/// arrived first. The outcome does not depend on the order of arrival.
pub fn apply(heads: &mut Vec<Head>, cited: impl Fn(&Hash) -> bool, new: Head) {
    let chain_rank = |h: &Head| (h.hlc, h.hash);
    let own_later = |h: &Head| h.author == new.author && h.hash != new.hash && chain_rank(h) > chain_rank(&new);
    let superseded = heads.iter().any(own_later);
    heads.retain(|h| !cited(&h.hash) && (h.author != new.author || own_later(h)));
    if !superseded {
        heads.push(new);
    }
    heads.sort_by_key(|h| std::cmp::Reverse(h.rank()));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(wall: u64, author: u8, tag: &[u8]) -> Head {
        Head {
            value: tag.to_vec(),
            hlc: Hlc::new(wall, 0),
            author: AuthorId([author; 32]),
            hash: Hash::of(tag),
            tombstone: false,
            kind: Kind::Register,
        }
    }

    fn cites(parents: &[Hash]) -> impl Fn(&Hash) -> bool + '_ {
        |h| parents.contains(h)
    }

    #[test]
    fn concurrent_writes_fork_and_a_merge_joins_them() {
        let a = head(10, 1, b"a");
        let b = head(10, 2, b"b");
        let mut heads = vec![];
        apply(&mut heads, cites(&[]), a.clone());
        apply(&mut heads, cites(&[]), b.clone());
        assert_eq!(heads.len(), 2);
        assert_eq!(winner(&heads).unwrap().hash, b.hash, "same HLC: higher author wins");
        let merged = head(11, 1, b"m");
        apply(&mut heads, cites(&[a.hash, b.hash]), merged.clone());
        assert_eq!(heads, vec![merged]);
    }

    #[test]
    fn order_independent_for_concurrent_heads() {
        let x = head(5, 9, b"x");
        let y = head(7, 1, b"y");
        let mut h1 = vec![];
        apply(&mut h1, cites(&[]), x.clone());
        apply(&mut h1, cites(&[]), y.clone());
        let mut h2 = vec![];
        apply(&mut h2, cites(&[]), y.clone());
        apply(&mut h2, cites(&[]), x);
        assert_eq!(h1, h2);
        assert_eq!(winner(&h1).unwrap(), &y, "higher HLC wins over higher author");
        apply(&mut h2, cites(&[]), y);
        assert_eq!(h1, h2, "re-applying is idempotent");
    }

    /// DESIGN.md §4: a key holds at most one head per author. A write that cites nothing still
    /// replaces its author's earlier head (but not another author's).
    #[test]
    fn a_write_replaces_its_authors_earlier_head_without_citing_it() {
        let a1 = head(10, 1, b"a1");
        let b = head(11, 2, b"b");
        let a2 = head(12, 1, b"a2");
        let mut heads = vec![];
        for h in [&a1, &b, &a2] {
            apply(&mut heads, cites(&[]), h.clone());
        }
        assert_eq!(heads, vec![a2.clone(), b.clone()]);
        let a3 = head(9, 1, b"a3"); // an HLC below its head cannot be later in the chain
        apply(&mut heads, cites(&[]), a3);
        assert_eq!(heads, vec![a2, b]);
    }

    /// An author's earlier write arriving after its later one changes nothing of that author's
    /// head, and still removes what it cites: every arrival order gives the same heads.
    #[test]
    fn an_authors_earlier_write_arriving_late_does_not_displace_its_later_head() {
        let c = head(5, 3, b"c");
        let d = head(6, 4, b"d");
        let a1 = head(10, 1, b"a1"); // cites c
        let a2 = head(12, 1, b"a2"); // cites nothing
        let writes: [(&Head, &[Hash]); 4] = [(&c, &[]), (&d, &[]), (&a1, &[c.hash]), (&a2, &[])];
        let mut outcomes = Vec::new();
        for order in [[0, 1, 2, 3], [0, 1, 3, 2], [1, 0, 3, 2], [0, 3, 1, 2]] {
            let mut heads = vec![];
            for i in order {
                let (h, parents) = writes[i];
                apply(&mut heads, cites(parents), h.clone());
            }
            outcomes.push(heads);
        }
        assert_eq!(outcomes[0], vec![a2, d]);
        assert!(outcomes.iter().all(|o| *o == outcomes[0]), "{outcomes:?}");
    }

    #[test]
    fn a_tombstone_hides_registers_but_not_a_concurrent_counter_or_set() {
        let tombstone = Head { tombstone: true, value: Vec::new(), ..head(9, 1, b"t") };
        let put = head(8, 2, b"p");
        assert_eq!(visible(&[tombstone.clone(), put.clone()]), None);
        let counter = Head { kind: Kind::Counter, value: Vec::new(), ..head(5, 3, b"c") };
        let set = Head { kind: Kind::Set, value: Vec::new(), ..head(6, 4, b"s") };
        let heads = [tombstone.clone(), put.clone(), counter.clone()];
        assert_eq!(visible(&heads), Some(&counter));
        assert_eq!(visible(&[tombstone, counter, set.clone()]), Some(&set), "the highest kinded head");
        assert_eq!(visible(&[put.clone(), set]), Some(&put), "a winner that is no tombstone shows");
        assert_eq!(visible(&[]), None);
    }

    #[test]
    fn proto_round_trip() {
        let h = head(3, 4, b"v");
        assert_eq!(Head::from_proto(h.to_proto()), Some(h.clone()));
        let counter = Head { kind: Kind::Counter, value: Vec::new(), ..h };
        assert_eq!(Head::from_proto(counter.to_proto()), Some(counter));
        assert_eq!(Head::from_proto(proto::HeadInfo::default()), None);
    }
}
