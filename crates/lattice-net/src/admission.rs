//! Who may do what: one pure function of a peer's membership status, the fault rules and what
//! the peer asks for. Every path that admits a connection, serves a stream, delivers a gossip
//! message or starts a sync asks [`admit`], so the rules of docs/design.md, Wire protocol (the
//! table of first frames and statuses) and Gossip, live in one place.
//!
//! The status comes from the node (the root store's `/nodes/`), looked up by the node id the
//! TLS handshake proved; a peer this node expelled counts as removed whatever the node says
//! (see `gate`). [`Purpose::Connect`] and [`Purpose::Dial`] are asked at the handshake, before
//! any stream of the connection is read: that is where a stranger is refused before it can send
//! a single frame.

use lattice_core::{AuthorId, MemberStatus};

/// What a peer is trying to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Purpose {
    /// Connect to us, on `lattice/sync/1` or gossip (checked once the handshake proved its id).
    Connect,
    /// Be connected to by us (checked once the handshake proved its id).
    Dial {
        /// The connection is for gossip (dialled by iroh-gossip itself), not `lattice/sync/1`.
        gossip: bool,
    },
    /// Ask for the mesh's root store id (`JoinRequest`).
    Join,
    /// Sync one store (`SyncRequest`).
    Sync {
        /// The store asked for is the mesh's root store.
        root_store: bool,
    },
    /// Deliver a gossip message, or be taken as a gossip neighbour.
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

/// QUIC application close code of a connection refused at the handshake.
pub(crate) const REFUSED: u32 = 1;
/// QUIC application close code of a connection cut by a partition (fault injection).
pub(crate) const PARTITIONED: u32 = 2;
/// QUIC application close code of the connections of a peer this node expelled.
pub(crate) const EXPELLED: u32 = 3;
/// QUIC application close code of a connection whose peer broke the protocol.
pub(crate) const PROTOCOL_VIOLATION: u32 = 4;

impl Refusal {
    /// The text of the `Error` frame, or of the close reason, sent to the peer. Tests (and the
    /// CLI's `join`) look for "not invited" and "not an active member": keep those words.
    pub(crate) fn message(self, peer: AuthorId) -> String {
        match self {
            Refusal::Partitioned => "partitioned (fault injection)".into(),
            Refusal::NotMember => format!("node {peer} is not invited to this mesh"),
            Refusal::NotActive(status) => format!("node {peer} is not an active member of this mesh ({status:?})"),
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
        Purpose::Connect | Purpose::Join | Purpose::Gossip | Purpose::Dial { gossip: true } => member,
        // We dial `lattice/sync/1` on purpose (a join, a sync the user asked for), often before
        // we know the peer: a fresh joiner knows nothing of the mesh yet. Only a peer known to
        // be removed is not dialled.
        Purpose::Dial { gossip: false } => status != Some(MemberStatus::Removed),
        // An invited node fetches the root store (to learn the mesh, then declare itself
        // active); every other store waits until it is active.
        Purpose::Sync { root_store } => active || (status == Some(MemberStatus::Invited) && root_store),
        Purpose::ScheduleSync => active,
    };
    match (allowed, purpose) {
        (true, _) => Admission::Allow,
        (false, Purpose::Connect | Purpose::Dial { .. } | Purpose::Join | Purpose::Gossip) => {
            Admission::Refuse(Refusal::NotMember)
        }
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
        for flag in [false, true] {
            all.push(Purpose::Sync { root_store: flag });
            all.push(Purpose::Dial { gossip: flag });
        }
        all
    }

    /// The rules written out as a table, one row per status and purpose.
    fn expected(status: Option<MemberStatus>, purpose: Purpose) -> Admission {
        use Admission::{Allow, Refuse};
        use MemberStatus::{Active, Invited, Removed};
        match (status, purpose) {
            (Some(Removed), Purpose::Dial { gossip: false }) => Refuse(Refusal::NotMember),
            (_, Purpose::Dial { gossip: false }) => Allow,
            (Some(Invited | Active), Purpose::Connect | Purpose::Join | Purpose::Gossip | Purpose::Dial { .. }) => {
                Allow
            }
            (_, Purpose::Connect | Purpose::Join | Purpose::Gossip | Purpose::Dial { .. }) => {
                Refuse(Refusal::NotMember)
            }
            (Some(Active), Purpose::Sync { .. } | Purpose::ScheduleSync) => Allow,
            (Some(Invited), Purpose::Sync { root_store: true }) => Allow,
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
        assert_eq!(admit(invited, false, Purpose::Sync { root_store: true }), Admission::Allow);
        let other_store = Purpose::Sync { root_store: false };
        assert_eq!(admit(invited, false, other_store), Admission::Refuse(Refusal::NotActive(invited)));
        assert_eq!(admit(invited, false, Purpose::ScheduleSync), Admission::Refuse(Refusal::NotActive(invited)));
    }

    #[test]
    fn strangers_and_removed_nodes_are_refused_at_the_handshake() {
        for status in [None, Some(MemberStatus::Removed)] {
            for purpose in [Purpose::Connect, Purpose::Dial { gossip: true }, Purpose::Gossip] {
                assert_eq!(
                    admit(status, false, purpose),
                    Admission::Refuse(Refusal::NotMember),
                    "{status:?} {purpose:?}"
                );
            }
        }
        // A joiner dials a peer it does not know yet; a removed one it does not dial.
        assert_eq!(admit(None, false, Purpose::Dial { gossip: false }), Admission::Allow);
        let removed = Some(MemberStatus::Removed);
        assert_eq!(admit(removed, false, Purpose::Dial { gossip: false }), Admission::Refuse(Refusal::NotMember));
    }

    #[test]
    fn refusal_texts_keep_the_words_clients_look_for() {
        let peer = AuthorId([7; 32]);
        assert!(Refusal::NotMember.message(peer).contains("not invited"));
        let removed = Refusal::NotActive(Some(MemberStatus::Removed)).message(peer);
        assert!(removed.contains("not an active member") && removed.contains("Removed"), "{removed}");
    }
}
