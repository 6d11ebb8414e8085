//! Who may do what: one pure function of a peer's membership status, the fault rules and what
//! the peer asks for. Every path that accepts a connection, serves a stream or starts a sync
//! asks [`admit`], so the rules of docs/design.md, Wire protocol (the table of first frames
//! and statuses) and Gossip, live in one place.
//!
//! The status comes from the node (the root store's `/nodes/`), looked up by the node id the
//! TLS handshake proved. [`Purpose::Connect`] is asked before any stream of a connection is
//! read, which is where a membership check "before any frame body" belongs; rules that depend
//! on the status alone (a frame cap for peers not yet known as members, dropping gossip from
//! non-members, closing a removed member's connections) extend this function the same way.

use lattice_core::{AuthorId, MemberStatus};

/// What a peer is trying to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Purpose {
    /// Open a `lattice/sync/1` connection (checked before any of its streams is read).
    Connect,
    /// Ask for the mesh's root store id (`JoinRequest`).
    Join,
    /// Sync one store (`SyncRequest`).
    Sync {
        /// The store asked for is the mesh's root store.
        root_store: bool,
        /// The peer joined on this very connection.
        joined_here: bool,
    },
    /// Open a gossip connection.
    Gossip,
    /// Be chosen by this node's scheduler for a sync.
    ScheduleSync,
}

/// The answer of [`admit`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Admission {
    Allow,
    Refuse(Refusal),
}

/// Why a peer was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Fault injection cuts all traffic with this peer (tests only).
    Partitioned,
    /// Neither invited nor active: unknown to the mesh, or removed.
    NotMember,
    /// What was asked needs an active member (an invited one may only join and fetch the root
    /// store).
    NotActive(Option<MemberStatus>),
}

impl Refusal {
    /// The text of the `Error` frame sent to the peer. Tests (and the CLI's `join`) look for
    /// "not invited" and "not an active member": keep those words.
    pub(crate) fn message(self, peer: AuthorId) -> String {
        match self {
            Refusal::Partitioned => "partitioned (fault injection)".into(),
            Refusal::NotMember => format!("node {peer} is not invited to this mesh"),
            Refusal::NotActive(status) => format!("node {peer} is not an active member of this mesh ({status:?})"),
        }
    }

    /// The reason given when a whole connection is closed.
    pub(crate) fn close_reason(self) -> &'static [u8] {
        match self {
            Refusal::Partitioned => b"partitioned",
            Refusal::NotMember | Refusal::NotActive(_) => b"not a member",
        }
    }
}

/// Decides whether a peer with membership `status` (`None`: unknown to the mesh) may do
/// `purpose`, given whether fault injection cuts it off.
pub(crate) fn admit(status: Option<MemberStatus>, blocked_by_faults: bool, purpose: Purpose) -> Admission {
    // The scheduler still picks a partitioned peer: the attempt fails at connect and lands in
    // the peer's health (backoff), as a real outage would.
    if blocked_by_faults && purpose != Purpose::ScheduleSync {
        return Admission::Refuse(Refusal::Partitioned);
    }
    let member = status.is_some_and(MemberStatus::is_member);
    let active = status == Some(MemberStatus::Active);
    let allowed = match purpose {
        // Membership is checked per stream, so that a removal refuses the next stream of a
        // connection that is already open.
        Purpose::Connect => true,
        Purpose::Join | Purpose::Gossip => member,
        // An invited node fetches the root store (to learn the mesh, then declare itself
        // active), and may sync on the connection it joined with.
        Purpose::Sync { root_store, joined_here } => {
            active || (status == Some(MemberStatus::Invited) && (root_store || joined_here))
        }
        Purpose::ScheduleSync => active,
    };
    match (allowed, purpose) {
        (true, _) => Admission::Allow,
        (false, Purpose::Join | Purpose::Gossip) => Admission::Refuse(Refusal::NotMember),
        (false, _) => Admission::Refuse(Refusal::NotActive(status)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUSES: [Option<MemberStatus>; 4] =
        [None, Some(MemberStatus::Invited), Some(MemberStatus::Active), Some(MemberStatus::Removed)];

    fn purposes() -> Vec<Purpose> {
        let mut all = vec![Purpose::Connect, Purpose::Join, Purpose::Gossip, Purpose::ScheduleSync];
        for root_store in [false, true] {
            for joined_here in [false, true] {
                all.push(Purpose::Sync { root_store, joined_here });
            }
        }
        all
    }

    /// The rules written out as a table, one row per status and purpose.
    fn expected(status: Option<MemberStatus>, purpose: Purpose) -> Admission {
        use Admission::{Allow, Refuse};
        use MemberStatus::{Active, Invited};
        match (status, purpose) {
            (_, Purpose::Connect) => Allow,
            (Some(Invited | Active), Purpose::Join | Purpose::Gossip) => Allow,
            (_, Purpose::Join | Purpose::Gossip) => Refuse(Refusal::NotMember),
            (Some(Active), Purpose::Sync { .. } | Purpose::ScheduleSync) => Allow,
            (Some(Invited), Purpose::Sync { root_store: true, .. } | Purpose::Sync { joined_here: true, .. }) => Allow,
            (status, Purpose::Sync { .. } | Purpose::ScheduleSync) => Refuse(Refusal::NotActive(status)),
        }
    }

    #[test]
    fn every_status_and_purpose_without_faults() {
        for status in STATUSES {
            for purpose in purposes() {
                assert_eq!(admit(status, false, purpose), expected(status, purpose), "{status:?} {purpose:?}");
            }
        }
    }

    #[test]
    fn faults_refuse_everything_but_the_scheduler_choice() {
        for status in STATUSES {
            for purpose in purposes() {
                let got = admit(status, true, purpose);
                if purpose == Purpose::ScheduleSync {
                    assert_eq!(got, admit(status, false, purpose), "{status:?}");
                } else {
                    assert_eq!(got, Admission::Refuse(Refusal::Partitioned), "{status:?} {purpose:?}");
                }
            }
        }
    }

    #[test]
    fn an_invited_node_may_join_and_fetch_the_root_store_only() {
        let invited = Some(MemberStatus::Invited);
        assert_eq!(admit(invited, false, Purpose::Join), Admission::Allow);
        let other_store = Purpose::Sync { root_store: false, joined_here: false };
        assert_eq!(admit(invited, false, other_store), Admission::Refuse(Refusal::NotActive(invited)));
        assert_eq!(admit(invited, false, Purpose::ScheduleSync), Admission::Refuse(Refusal::NotActive(invited)));
    }

    #[test]
    fn refusal_texts_keep_the_words_clients_look_for() {
        let peer = AuthorId([7; 32]);
        assert!(Refusal::NotMember.message(peer).contains("not invited"));
        let removed = Refusal::NotActive(Some(MemberStatus::Removed)).message(peer);
        assert!(removed.contains("not an active member") && removed.contains("Removed"), "{removed}");
        assert_eq!(Refusal::NotMember.close_reason(), b"not a member");
        assert_eq!(Refusal::Partitioned.close_reason(), b"partitioned");
    }
}
