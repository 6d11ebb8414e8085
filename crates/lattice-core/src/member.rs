//! A node's standing in a mesh, as the root store records it (`/nodes/{pubkey}/status`).
//!
//! The one spelling of the status values: the node parses and writes them through
//! [`MemberStatus`], and the network layer decides admission from it.

use std::fmt;
use std::str::FromStr;

/// The value of `/nodes/{pubkey}/status`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MemberStatus {
    /// Invited by a member: may join (fetch the root store and declare itself active).
    Invited,
    /// A member of the mesh: syncs every store.
    Active,
    /// Removed from the mesh: every connection from it is refused.
    Removed,
}

impl MemberStatus {
    /// Every status, in the order of its lifecycle.
    pub const ALL: [MemberStatus; 3] = [MemberStatus::Invited, MemberStatus::Active, MemberStatus::Removed];

    /// The stored spelling: `invited`, `active` or `removed`.
    pub fn as_str(self) -> &'static str {
        match self {
            MemberStatus::Invited => "invited",
            MemberStatus::Active => "active",
            MemberStatus::Removed => "removed",
        }
    }

    /// The status a stored value spells, if it spells one.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// True for the statuses that may connect at all (`invited` or `active`).
    pub fn is_member(self) -> bool {
        matches!(self, MemberStatus::Invited | MemberStatus::Active)
    }
}

impl fmt::Display for MemberStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A stored status that is not one of `invited`, `active`, `removed`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownStatus(pub String);

impl fmt::Display for UnknownStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown member status {:?} (expected invited, active or removed)", self.0)
    }
}

impl std::error::Error for UnknownStatus {}

impl FromStr for MemberStatus {
    type Err = UnknownStatus;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text).ok_or_else(|| UnknownStatus(text.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_round_trips_through_its_spelling() {
        for status in MemberStatus::ALL {
            assert_eq!(MemberStatus::parse(status.as_str()), Some(status));
            assert_eq!(status.to_string().parse::<MemberStatus>(), Ok(status));
        }
        assert_eq!(MemberStatus::parse("Active"), None);
        assert!("admin".parse::<MemberStatus>().unwrap_err().to_string().contains("\"admin\""));
    }

    #[test]
    fn only_invited_and_active_are_members() {
        assert!(MemberStatus::Invited.is_member());
        assert!(MemberStatus::Active.is_member());
        assert!(!MemberStatus::Removed.is_member());
    }
}
