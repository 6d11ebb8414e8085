//! Operations: what one entry does to keys, and the kind of value each op needs.
//!
//! A key is a register (`Put`/`Delete`, last writer wins), a counter (`CounterAdd`, a
//! PN-counter) or a set (`SetAdd`/`SetRemove`, an OR-set). `Delete` applies to every kind. The
//! store derives the value of a counter or a set from all the ops of the key; see
//! lattice-store's `store/kinds` for the rule and ARCHITECTURE.md for what happens when kinds meet.

use crate::entry::{EntryError, MAX_KEY_BYTES, MAX_VALUE_BYTES};
use crate::proto;

/// The kind of value a key holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum Kind {
    /// Bytes, last writer wins (`Put`).
    #[default]
    Register,
    /// A signed 64-bit sum of deltas (`CounterAdd`).
    Counter,
    /// A set of byte strings (`SetAdd`, `SetRemove`).
    Set,
}

impl Kind {
    /// The name used in messages and output: `register`, `counter`, `set`.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Register => "register",
            Kind::Counter => "counter",
            Kind::Set => "set",
        }
    }

    /// The number stored in `HeadInfo.kind`.
    pub fn to_wire(self) -> u32 {
        match self {
            Kind::Register => 0,
            Kind::Counter => 1,
            Kind::Set => 2,
        }
    }

    /// The kind `HeadInfo.kind` names; `None` for a number this build does not know.
    pub fn from_wire(n: u32) -> Option<Kind> {
        match n {
            0 => Some(Kind::Register),
            1 => Some(Kind::Counter),
            2 => Some(Kind::Set),
            _ => None,
        }
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One operation of an entry. An entry's operations apply atomically, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Sets `key` to `value`.
    Put {
        /// The key written; must be 1 to [`MAX_KEY_BYTES`] bytes.
        key: Vec<u8>,
        /// The new value; may be empty, must be at most [`MAX_VALUE_BYTES`] bytes.
        value: Vec<u8>,
    },
    /// Deletes `key`, leaving a tombstone head (of a counter or a set: clears what it observed).
    Delete {
        /// The key deleted; must be 1 to [`MAX_KEY_BYTES`] bytes.
        key: Vec<u8>,
    },
    /// Adds `delta` to the counter at `key`.
    CounterAdd {
        /// The counter; must be 1 to [`MAX_KEY_BYTES`] bytes.
        key: Vec<u8>,
        /// What is added (negative: subtracted).
        delta: i64,
    },
    /// Adds `member` to the set at `key`.
    SetAdd {
        /// The set; must be 1 to [`MAX_KEY_BYTES`] bytes.
        key: Vec<u8>,
        /// The member; at most [`MAX_VALUE_BYTES`] bytes.
        member: Vec<u8>,
    },
    /// Removes `member` from the set at `key` (the adds of it the writer has observed).
    SetRemove {
        /// The set; must be 1 to [`MAX_KEY_BYTES`] bytes.
        key: Vec<u8>,
        /// The member; at most [`MAX_VALUE_BYTES`] bytes.
        member: Vec<u8>,
    },
}

impl Op {
    /// A [`Op::Put`] of `value` at `key`.
    pub fn put(key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> Self {
        Op::Put { key: key.into(), value: value.into() }
    }
    /// A [`Op::Delete`] of `key`.
    pub fn delete(key: impl Into<Vec<u8>>) -> Self {
        Op::Delete { key: key.into() }
    }
    /// A [`Op::CounterAdd`] of `delta` to `key`.
    pub fn counter_add(key: impl Into<Vec<u8>>, delta: i64) -> Self {
        Op::CounterAdd { key: key.into(), delta }
    }
    /// A [`Op::SetAdd`] of `member` to `key`.
    pub fn set_add(key: impl Into<Vec<u8>>, member: impl Into<Vec<u8>>) -> Self {
        Op::SetAdd { key: key.into(), member: member.into() }
    }
    /// A [`Op::SetRemove`] of `member` from `key`.
    pub fn set_remove(key: impl Into<Vec<u8>>, member: impl Into<Vec<u8>>) -> Self {
        Op::SetRemove { key: key.into(), member: member.into() }
    }
    /// The key this operation writes.
    pub fn key(&self) -> &[u8] {
        match self {
            Op::Put { key, .. }
            | Op::Delete { key }
            | Op::CounterAdd { key, .. }
            | Op::SetAdd { key, .. }
            | Op::SetRemove { key, .. } => key,
        }
    }
    /// The kind of value the op needs its key to hold; `None` for a delete (any kind).
    pub fn kind(&self) -> Option<Kind> {
        match self {
            Op::Put { .. } => Some(Kind::Register),
            Op::Delete { .. } => None,
            Op::CounterAdd { .. } => Some(Kind::Counter),
            Op::SetAdd { .. } | Op::SetRemove { .. } => Some(Kind::Set),
        }
    }

    pub(crate) fn to_proto(&self) -> proto::Operation {
        use proto::operation::Op as P;
        let op = match self {
            Op::Put { key, value } => P::Put(proto::Put { key: key.clone(), value: value.clone() }),
            Op::Delete { key } => P::Delete(proto::Delete { key: key.clone() }),
            Op::CounterAdd { key, delta } => P::CounterAdd(proto::CounterAdd { key: key.clone(), delta: *delta }),
            Op::SetAdd { key, member } => P::SetAdd(proto::SetAdd { key: key.clone(), member: member.clone() }),
            Op::SetRemove { key, member } => {
                P::SetRemove(proto::SetRemove { key: key.clone(), member: member.clone() })
            }
        };
        proto::Operation { op: Some(op) }
    }

    /// The op a decoded `Operation` holds; `None` if it holds none (an empty oneof, or a variant
    /// of a later format this build does not know).
    pub(crate) fn from_proto(op: proto::Operation) -> Option<Op> {
        use proto::operation::Op as P;
        Some(match op.op? {
            P::Put(p) => Op::Put { key: p.key, value: p.value },
            P::Delete(d) => Op::Delete { key: d.key },
            P::CounterAdd(c) => Op::CounterAdd { key: c.key, delta: c.delta },
            P::SetAdd(s) => Op::SetAdd { key: s.key, member: s.member },
            P::SetRemove(s) => Op::SetRemove { key: s.key, member: s.member },
        })
    }
}

/// Checks one operation's key (non-empty, at most [`MAX_KEY_BYTES`]), value and member (at most
/// [`MAX_VALUE_BYTES`]); `index` is its position in the entry, used in the error.
pub fn check_op(index: usize, op: &Op) -> Result<(), EntryError> {
    let key = op.key();
    if key.is_empty() {
        return Err(EntryError::EmptyKey(index));
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(EntryError::KeyTooLarge { index, len: key.len() });
    }
    match op {
        Op::Put { value, .. } if value.len() > MAX_VALUE_BYTES => {
            Err(EntryError::ValueTooLarge { index, len: value.len() })
        }
        Op::SetAdd { member, .. } | Op::SetRemove { member, .. } if member.len() > MAX_VALUE_BYTES => {
            Err(EntryError::MemberTooLarge { index, len: member.len() })
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;

    #[test]
    fn every_op_round_trips_through_its_proto() {
        let ops = [
            Op::put("k", "v"),
            Op::delete("k"),
            Op::counter_add("c", -7),
            Op::counter_add("c", i64::MIN),
            Op::set_add("s", "m"),
            Op::set_remove("s", vec![0xff]),
        ];
        for op in ops {
            let bytes = op.to_proto().encode_to_vec();
            let back = Op::from_proto(proto::Operation::decode(bytes.as_slice()).unwrap());
            assert_eq!(back, Some(op));
        }
        assert_eq!(Op::from_proto(proto::Operation { op: None }), None);
    }

    #[test]
    fn kinds_of_ops_and_their_wire_numbers() {
        assert_eq!(Op::put("k", "v").kind(), Some(Kind::Register));
        assert_eq!(Op::delete("k").kind(), None);
        assert_eq!(Op::counter_add("k", 1).kind(), Some(Kind::Counter));
        assert_eq!(Op::set_remove("k", "m").kind(), Some(Kind::Set));
        for kind in [Kind::Register, Kind::Counter, Kind::Set] {
            assert_eq!(Kind::from_wire(kind.to_wire()), Some(kind));
        }
        assert_eq!(Kind::from_wire(3), None);
        assert_eq!(Kind::Counter.to_string(), "counter");
    }

    #[test]
    fn members_are_limited_like_values() {
        let big = vec![0u8; MAX_VALUE_BYTES + 1];
        assert_eq!(
            check_op(2, &Op::set_add("s", big.clone())),
            Err(EntryError::MemberTooLarge { index: 2, len: MAX_VALUE_BYTES + 1 })
        );
        assert!(check_op(0, &Op::set_remove("s", big)).is_err());
        assert_eq!(check_op(1, &Op::counter_add("", 1)), Err(EntryError::EmptyKey(1)));
        assert!(check_op(0, &Op::set_add("s", vec![0u8; MAX_VALUE_BYTES])).is_ok());
    }
}
