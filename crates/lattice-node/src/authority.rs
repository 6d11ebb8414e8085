//! The effective control plane: who is a member, who is an admin, where a removed node was cut
//! off, which stores and tokens exist — as a deterministic fold over the root store's entries
//! that touch reserved prefixes (docs/design.md, Control plane).
//!
//! Entries are folded in `(hlc, author, hash)` order. Each operation takes effect only if, at
//! that point of the fold, its author holds the right ([`ControlPlane::may`]); operations without
//! the right are kept (they are valid signed entries and replicate) but change nothing. Two nodes
//! that hold the same root-store entries therefore compute the same plane, whatever order the
//! entries arrived in: [`ControlLog`] keeps them sorted and deduplicated by hash.
//!
//! Rights are checked against the plane as it stood *before* the entry, so one entry cannot grant
//! its author a right and use it at once.
//!
//! A removal carries a cut-off (`/nodes/X/cutoff`): X's root-store entries beyond it are refused,
//! which the fold honours too. Because the cut-offs come out of the fold itself, the fold runs
//! twice: once to learn the cut-offs, once more without the entries they refuse. The result is a
//! function of the entry set alone.

use std::collections::BTreeMap;

use lattice_core::{AuthorId, Hash, Hlc, MemberStatus, Op, StoreId, VerifiedEntry};
use serde::{Deserialize, Serialize};

use crate::control::{NODES_PREFIX, NodeField, node_key, reserved_prefix, split_record_key};

/// A node's role in the mesh (`/nodes/{pk}/role`; absent means member).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// May change the control plane: invite, remove, roles, stores, tokens.
    Admin,
    /// May read and write the stores' data, and change only its own record.
    #[default]
    Member,
}

impl Role {
    /// The stored spelling: `admin` or `member`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Member => "member",
        }
    }

    /// The role a stored value spells, if it spells one.
    pub fn parse(text: &str) -> Option<Role> {
        [Role::Admin, Role::Member].into_iter().find(|r| r.as_str() == text)
    }
}

/// Where a removed author's valid entries end in one store: its last entry as the remover held
/// it. Entries up to and including it apply; later ones, or ones forking from it, are refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cutoff {
    /// The author's last valid seq in the store (0: no valid entry at all).
    pub seq: u64,
    /// Hex hash of that entry (64 zeros for seq 0).
    #[serde(with = "hex_hash")]
    pub hash: Hash,
}

/// The value of `/nodes/{pk}/cutoff`: a cut-off per store uuid. A store the map does not name has
/// no valid entry of the removed author.
pub type Cutoffs = BTreeMap<StoreId, Cutoff>;

/// Parses a `/nodes/{pk}/cutoff` value; `None` if it is not that JSON shape.
pub fn parse_cutoffs(value: &[u8]) -> Option<Cutoffs> {
    let raw: BTreeMap<String, Cutoff> = serde_json::from_slice(value).ok()?;
    raw.into_iter().map(|(store, cut)| StoreId::parse(&store).ok().map(|s| (s, cut))).collect()
}

/// The JSON of a cut-off map, as `remove` writes it.
pub fn format_cutoffs(cutoffs: &Cutoffs) -> Vec<u8> {
    let raw: BTreeMap<String, &Cutoff> = cutoffs.iter().map(|(s, c)| (s.to_string(), c)).collect();
    // A map of strings to plain structs always serialises.
    serde_json::to_vec(&raw).unwrap_or_default()
}

mod hex_hash {
    use lattice_core::Hash;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(hash: &Hash, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hash.to_hex())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Hash, D::Error> {
        let text = String::deserialize(d)?;
        Hash::from_hex(&text).map_err(serde::de::Error::custom)
    }
}

/// One operation on a reserved key: a put, or a delete (`value: None`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ControlOp {
    /// The reserved key, e.g. `/nodes/{pk}/status`.
    pub key: String,
    /// The value written; `None` for a delete.
    pub value: Option<Vec<u8>>,
}

/// The part of a root-store entry that the control plane folds: its order, its author and seq,
/// and its operations on reserved keys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ControlEntry {
    /// The entry's HLC (first of the fold order).
    pub hlc: Hlc,
    /// Who signed it (second of the fold order).
    pub author: AuthorId,
    /// Its hash (third of the fold order, and its identity).
    pub hash: Hash,
    /// Its seq in the author's chain, checked against a cut-off.
    pub seq: u64,
    /// Its operations on reserved keys, in entry order.
    pub ops: Vec<ControlOp>,
}

impl ControlEntry {
    /// The reserved-key operations of `entry`; `None` if it touches no reserved key.
    pub fn from_entry(entry: &VerifiedEntry) -> Option<ControlEntry> {
        let ops: Vec<ControlOp> = entry
            .ops()
            .iter()
            .filter(|op| reserved_prefix(op.key()).is_some())
            .filter_map(|op| {
                let key = String::from_utf8(op.key().to_vec()).ok()?;
                // The control plane is registers only: a counter or set op there takes no effect.
                let value = match op {
                    Op::Put { value, .. } => Some(value.clone()),
                    Op::Delete { .. } => None,
                    Op::CounterAdd { .. } | Op::SetAdd { .. } | Op::SetRemove { .. } => return None,
                };
                Some(ControlOp { key, value })
            })
            .collect();
        (!ops.is_empty()).then(|| ControlEntry {
            hlc: entry.hlc(),
            author: entry.author(),
            hash: entry.hash(),
            seq: entry.seq(),
            ops,
        })
    }

    fn order(&self) -> FoldKey {
        (self.hlc, self.author, self.hash)
    }
}

/// The fold order: `(hlc, author, hash)`.
type FoldKey = (Hlc, AuthorId, Hash);

/// The effective control plane: the value of every reserved key that took effect.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ControlPlane {
    genesis: AuthorId,
    root: StoreId,
    /// Effective value of each reserved key (deleted keys are absent).
    values: BTreeMap<String, Vec<u8>>,
    /// Operations that did not take effect (their author lacked the right).
    ignored: u64,
}

impl ControlPlane {
    /// The plane of a mesh with no control-plane entry yet: the genesis admin alone holds rights.
    pub fn new(genesis: AuthorId, root: StoreId) -> ControlPlane {
        ControlPlane { genesis, root, values: BTreeMap::new(), ignored: 0 }
    }

    /// The node that ran `init` for this mesh.
    pub fn genesis(&self) -> AuthorId {
        self.genesis
    }

    /// The effective value of a reserved key.
    pub fn value(&self, key: &str) -> Option<&[u8]> {
        self.values.get(key).map(Vec::as_slice)
    }

    /// Every effective reserved key under `prefix` with its value, in key order.
    pub fn items(&self, prefix: &str) -> Vec<(Vec<u8>, Vec<u8>)> {
        self.page(prefix.as_bytes(), None, usize::MAX)
    }

    /// At most `limit` effective reserved keys under `prefix` and after `after`, in key order
    /// (a page of `list`). Keys are UTF-8, so a `String` orders as its bytes do.
    pub fn page(&self, prefix: &[u8], after: Option<&[u8]>, limit: usize) -> Vec<(Vec<u8>, Vec<u8>)> {
        // Start at the later of the two bounds that are text; a bound that is not text (no
        // reserved key can equal it) only costs a longer skip.
        let text = |b: &[u8]| std::str::from_utf8(b).ok().map(str::to_string);
        let start = text(prefix).into_iter().chain(after.and_then(text)).max().unwrap_or_default();
        self.values
            .range(start..)
            .skip_while(|(k, _)| k.as_bytes() < prefix || after.is_some_and(|a| k.as_bytes() <= a))
            .take_while(|(k, _)| k.as_bytes().starts_with(prefix))
            .take(limit)
            .map(|(k, v)| (k.clone().into_bytes(), v.clone()))
            .collect()
    }

    /// How many operations did not take effect.
    pub fn ignored_ops(&self) -> u64 {
        self.ignored
    }

    fn field(&self, node: AuthorId, field: NodeField) -> Option<&str> {
        let value = self.values.get(&node_key(node, field))?;
        std::str::from_utf8(value).ok()
    }

    /// A node's effective status; `None` if it has none (never invited).
    pub fn status(&self, node: AuthorId) -> Option<MemberStatus> {
        self.field(node, NodeField::Status).and_then(MemberStatus::parse)
    }

    /// A node's effective role: the genesis admin is always an admin; others are admins only if
    /// an admin made them one.
    pub fn role(&self, node: AuthorId) -> Role {
        if node == self.genesis {
            return Role::Admin;
        }
        self.field(node, NodeField::Role).and_then(Role::parse).unwrap_or(Role::Member)
    }

    /// True if `node` may change the control plane now: an admin that is not removed (the
    /// genesis admin), or an admin that is an active member (anyone else).
    pub fn is_admin(&self, node: AuthorId) -> bool {
        if node == self.genesis {
            return self.status(node) != Some(MemberStatus::Removed);
        }
        self.role(node) == Role::Admin && self.status(node) == Some(MemberStatus::Active)
    }

    /// A removed node's cut-offs (`None`: no cut-off, so no limit, or not removed).
    pub fn cutoffs(&self, node: AuthorId) -> Option<Cutoffs> {
        self.values.get(&node_key(node, NodeField::Cutoff)).and_then(|v| parse_cutoffs(v))
    }

    /// Every node the plane has a record for.
    pub fn nodes(&self) -> Vec<AuthorId> {
        let mut out: Vec<AuthorId> = self
            .values
            .keys()
            .filter_map(|k| split_record_key(k.as_bytes(), NODES_PREFIX))
            .filter_map(|(id, _)| AuthorId::from_hex(id).ok())
            .collect();
        out.dedup();
        out
    }

    /// Whether `author` may write `value` (`None`: delete) to the reserved key `key` now.
    pub fn may(&self, author: AuthorId, key: &str, value: Option<&[u8]>) -> bool {
        let admin = self.is_admin(author);
        let Some((id, field)) = split_record_key(key.as_bytes(), NODES_PREFIX) else {
            // `/stores/…`, `/tokens/…`: declared and revoked by admins.
            return admin;
        };
        let Ok(node) = AuthorId::from_hex(id) else { return admin };
        if node == self.genesis {
            // The genesis admin's own record changes only through its own entries.
            return author == self.genesis;
        }
        let itself = author == node && self.status(node).is_some_and(MemberStatus::is_member);
        let status = value.and_then(|v| std::str::from_utf8(v).ok()).and_then(MemberStatus::parse);
        match NodeField::parse(field) {
            // A node declares itself active; admins invite and remove.
            Some(NodeField::Status) if status == Some(MemberStatus::Active) => itself,
            // A node publishes its own info; the inviting admin records who added it.
            Some(NodeField::Info) => itself || admin,
            _ => admin,
        }
    }

    /// Applies one entry's operations, each checked against the plane as it stood before it.
    fn apply(&mut self, entry: &ControlEntry) {
        let before = self.clone();
        for op in &entry.ops {
            if !before.may(entry.author, &op.key, op.value.as_deref()) {
                self.ignored += 1;
                continue;
            }
            match &op.value {
                Some(v) => self.values.insert(op.key.clone(), v.clone()),
                None => self.values.remove(&op.key),
            };
        }
    }

    /// True if `entry` is beyond its author's root-store cut-off in this plane, or at its seq
    /// with another hash (a fork from the chain the cut-off names; a zero hash is not known).
    /// A cut-off binds only while its node is removed: an admin that invites it again lifts it.
    fn refuses(&self, entry: &ControlEntry) -> bool {
        self.status(entry.author) == Some(MemberStatus::Removed)
            && self.cutoffs(entry.author).is_some_and(|c| match c.get(&self.root) {
                None => true,
                Some(c) => entry.seq > c.seq || (entry.seq == c.seq && c.hash != Hash::ZERO && entry.hash != c.hash),
            })
    }
}

/// The root store's control-plane entries, kept in fold order, and the plane they give.
///
/// Every insert refolds the whole log, which holds only the entries that touch reserved keys.
/// Applying an entry that sorts last in place, as an earlier version did, gave planes that the
/// two-pass fold does not: the convergence property test found delivery orders that disagreed
/// (in the ops ignored, and in a store tombstone), so the plane must be the fold's alone.
#[derive(Clone, Debug)]
pub struct ControlLog {
    entries: BTreeMap<FoldKey, ControlEntry>,
    plane: ControlPlane,
}

impl ControlLog {
    /// An empty log of the mesh whose genesis admin is `genesis` and root store `root`.
    pub fn new(genesis: AuthorId, root: StoreId) -> ControlLog {
        ControlLog { entries: BTreeMap::new(), plane: ControlPlane::new(genesis, root) }
    }

    /// The effective control plane.
    pub fn plane(&self) -> &ControlPlane {
        &self.plane
    }

    /// Adds an entry (a duplicate changes nothing). Returns true if the plane changed.
    #[cfg(test)]
    pub fn insert(&mut self, entry: ControlEntry) -> bool {
        self.extend([entry])
    }

    /// Adds entries (duplicates change nothing) and refolds once. Returns true if the plane
    /// changed.
    pub fn extend(&mut self, entries: impl IntoIterator<Item = ControlEntry>) -> bool {
        let mut added = false;
        for entry in entries {
            added |= self.entries.insert(entry.order(), entry).is_none();
        }
        if !added {
            return false;
        }
        let before = self.plane.clone();
        self.refold();
        self.plane != before
    }

    /// Recomputes the plane from every entry: a pass to learn the cut-offs, then a pass that
    /// leaves out the entries they refuse.
    fn refold(&mut self) {
        let fold = |skip: Option<&ControlPlane>| {
            let mut plane = ControlPlane::new(self.plane.genesis, self.plane.root);
            for entry in self.entries.values() {
                if skip.is_some_and(|s| s.refuses(entry)) || plane.refuses(entry) {
                    continue;
                }
                plane.apply(entry);
            }
            plane
        };
        let first = fold(None);
        self.plane = fold(Some(&first));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lattice_core::Identity;

    struct Mesh {
        root: StoreId,
        ids: Vec<Identity>,
    }

    impl Mesh {
        fn new(n: usize) -> Mesh {
            Mesh { root: StoreId::new_random(), ids: (0..n).map(|_| Identity::generate()).collect() }
        }
        fn id(&self, i: usize) -> AuthorId {
            self.ids[i].author()
        }
        fn log(&self) -> ControlLog {
            ControlLog::new(self.id(0), self.root)
        }
    }

    fn entry(author: AuthorId, wall: u64, seq: u64, ops: Vec<(String, Option<&str>)>) -> ControlEntry {
        ControlEntry {
            hlc: Hlc::new(wall, 0),
            author,
            hash: Hash::of(format!("{author}/{seq}/{wall}").as_bytes()),
            seq,
            ops: ops.into_iter().map(|(key, v)| ControlOp { key, value: v.map(|v| v.as_bytes().to_vec()) }).collect(),
        }
    }

    fn status(node: AuthorId) -> String {
        node_key(node, NodeField::Status)
    }

    #[test]
    fn the_genesis_admin_invites_and_the_invitee_joins() {
        let m = Mesh::new(3);
        let mut log = m.log();
        log.insert(entry(m.id(0), 1, 1, vec![(status(m.id(0)), Some(MemberStatus::Active.as_str()))]));
        log.insert(entry(m.id(0), 2, 2, vec![(status(m.id(1)), Some(MemberStatus::Invited.as_str()))]));
        assert_eq!(log.plane().status(m.id(1)), Some(MemberStatus::Invited));
        log.insert(entry(m.id(1), 3, 1, vec![(status(m.id(1)), Some(MemberStatus::Active.as_str()))]));
        assert_eq!(log.plane().status(m.id(1)), Some(MemberStatus::Active));
        // A stranger cannot declare itself active, and a member cannot invite.
        log.insert(entry(m.id(2), 4, 1, vec![(status(m.id(2)), Some(MemberStatus::Active.as_str()))]));
        log.insert(entry(m.id(1), 5, 2, vec![(status(m.id(2)), Some(MemberStatus::Invited.as_str()))]));
        assert_eq!(log.plane().status(m.id(2)), None);
        assert_eq!(log.plane().ignored_ops(), 2);
    }

    #[test]
    fn a_member_cannot_remove_the_genesis_admin_or_declare_stores() {
        let m = Mesh::new(2);
        let mut log = m.log();
        log.insert(entry(m.id(0), 1, 1, vec![(status(m.id(0)), Some(MemberStatus::Active.as_str()))]));
        log.insert(entry(m.id(0), 2, 2, vec![(status(m.id(1)), Some(MemberStatus::Invited.as_str()))]));
        log.insert(entry(m.id(1), 3, 1, vec![(status(m.id(1)), Some(MemberStatus::Active.as_str()))]));
        let store = format!("/stores/{}/name", StoreId::new_random());
        log.insert(entry(
            m.id(1),
            4,
            2,
            vec![(status(m.id(0)), Some(MemberStatus::Removed.as_str())), (store.clone(), Some("evil"))],
        ));
        assert_eq!(log.plane().status(m.id(0)), Some(MemberStatus::Active));
        assert_eq!(log.plane().value(&store), None);
        // Once granted admin, the same member may.
        log.insert(entry(m.id(0), 5, 3, vec![(node_key(m.id(1), NodeField::Role), Some("admin"))]));
        log.insert(entry(m.id(1), 6, 3, vec![(store.clone(), Some("granted"))]));
        assert_eq!(log.plane().value(&store), Some(&b"granted"[..]));
        // Even an admin cannot change the genesis admin's record.
        log.insert(entry(m.id(1), 7, 4, vec![(status(m.id(0)), Some(MemberStatus::Removed.as_str()))]));
        assert!(log.plane().is_admin(m.id(0)));
    }

    #[test]
    fn an_entry_cannot_use_a_right_it_grants_itself() {
        let m = Mesh::new(2);
        let mut log = m.log();
        log.insert(entry(m.id(0), 1, 1, vec![(status(m.id(1)), Some(MemberStatus::Invited.as_str()))]));
        let store = format!("/stores/{}/name", StoreId::new_random());
        log.insert(entry(
            m.id(1),
            2,
            1,
            vec![
                (status(m.id(1)), Some(MemberStatus::Active.as_str())),
                (node_key(m.id(1), NodeField::Role), Some("admin")),
                (store.clone(), Some("x")),
            ],
        ));
        assert_eq!(log.plane().status(m.id(1)), Some(MemberStatus::Active));
        assert_eq!(log.plane().role(m.id(1)), Role::Member);
        assert_eq!(log.plane().value(&store), None);
    }

    #[test]
    fn entries_beyond_a_cutoff_are_left_out_even_when_they_sort_before_the_removal() {
        let m = Mesh::new(2);
        let mut log = m.log();
        let x = m.id(1);
        log.insert(entry(
            m.id(0),
            1,
            1,
            vec![(status(x), Some(MemberStatus::Invited.as_str())), (node_key(x, NodeField::Role), Some("admin"))],
        ));
        log.insert(entry(x, 2, 1, vec![(status(x), Some(MemberStatus::Active.as_str()))]));
        // X, an admin, declares a store at seq 2 concurrently with its removal (a lower HLC), but
        // the remover had seen only X's seq 1.
        let store = format!("/stores/{}/name", StoreId::new_random());
        log.insert(entry(x, 3, 2, vec![(store.clone(), Some("late"))]));
        // And a fork of its seq 1 (another hash than the cut-off's): left out too.
        let forked = format!("/stores/{}/name", StoreId::new_random());
        log.insert(entry(x, 3, 1, vec![(forked.clone(), Some("fork"))]));
        let seq_1 = entry(x, 2, 1, vec![]).hash;
        let cut = format_cutoffs(&[(m.root, Cutoff { seq: 1, hash: seq_1 })].into_iter().collect());
        let cut = String::from_utf8(cut).unwrap();
        log.insert(entry(
            m.id(0),
            4,
            2,
            vec![(status(x), Some(MemberStatus::Removed.as_str())), (node_key(x, NodeField::Cutoff), Some(&cut))],
        ));
        assert_eq!(log.plane().status(x), Some(MemberStatus::Removed));
        assert_eq!(log.plane().value(&store), None, "X's entry beyond its cut-off took effect");
        assert_eq!(log.plane().value(&forked), None, "X's fork of its cut-off entry took effect");
    }

    #[test]
    fn cutoffs_round_trip_and_bad_ones_parse_to_none() {
        let cutoffs: Cutoffs = [(StoreId::new_random(), Cutoff { seq: 7, hash: Hash::of(b"x") })].into_iter().collect();
        assert_eq!(parse_cutoffs(&format_cutoffs(&cutoffs)), Some(cutoffs));
        assert_eq!(parse_cutoffs(b"{\"not-a-uuid\":{\"seq\":1,\"hash\":\"00\"}}"), None);
        assert_eq!(parse_cutoffs(b"[]"), None);
    }

    mod convergence {
        use super::*;
        use proptest::prelude::*;

        /// What a random operation writes: the key's shape and the value chosen.
        fn op(m: &Mesh, target: usize, kind: u8, store: usize, stores: &[StoreId]) -> (String, Option<String>) {
            let t = m.id(target);
            let s = stores[store];
            match kind % 9 {
                0 => (status(t), Some(MemberStatus::Invited.as_str().into())),
                1 => (status(t), Some(MemberStatus::Active.as_str().into())),
                2 => (status(t), Some(MemberStatus::Removed.as_str().into())),
                3 => (node_key(t, NodeField::Role), Some("admin".into())),
                4 => (node_key(t, NodeField::Role), Some("member".into())),
                5 => (format!("/stores/{s}/name"), Some(format!("s{store}"))),
                6 => (format!("/stores/{s}/deleted_at"), Some("then".into())),
                7 => (format!("/tokens/t{store}/revoked_at"), Some("then".into())),
                _ => {
                    let cut = format_cutoffs(&[(m.root, Cutoff { seq: u64::from(kind) % 4, hash: Hash::ZERO })].into());
                    (node_key(t, NodeField::Cutoff), Some(String::from_utf8(cut).unwrap_or_default()))
                }
            }
        }

        proptest! {
            #![proptest_config(lattice_testkit::proptest_config("control plane convergence", 128))]

            /// Random control-plane entries from several authors (with and without the right,
            /// concurrent and conflicting), delivered to replicas in random orders with
            /// duplicates, give identical planes.
            #[test]
            fn every_delivery_order_gives_the_same_plane(
                writes in proptest::collection::vec((0usize..4, 0u64..20, 0usize..4, 0u8..9, 0usize..3), 1..40),
                orders in proptest::collection::vec(proptest::collection::vec(any::<proptest::sample::Index>(), 1..80), 3),
            ) {
                let m = Mesh::new(4);
                let stores: Vec<StoreId> = (0..3).map(|_| StoreId::new_random()).collect();
                let mut seqs = [0u64; 4];
                let mut all = vec![entry(m.id(0), 0, 0, vec![(status(m.id(0)), Some(MemberStatus::Active.as_str()))])];
                for (author, wall, target, kind, store) in writes {
                    seqs[author] += 1;
                    let (key, value) = op(&m, target, kind, store, &stores);
                    all.push(entry(m.id(author), wall, seqs[author], vec![(key, value.as_deref())]));
                }
                let mut reference = m.log();
                for e in &all {
                    reference.insert(e.clone());
                }
                for order in orders {
                    let mut log = m.log();
                    // A random prefix order with duplicates, then everything (late arrivals).
                    for pick in order {
                        log.insert(pick.get(&all).clone());
                    }
                    for e in all.iter().rev() {
                        log.insert(e.clone());
                    }
                    prop_assert_eq!(log.plane(), reference.plane());
                }
            }
        }
    }
}
