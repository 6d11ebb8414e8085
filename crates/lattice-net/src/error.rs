//! Errors of the network layer.

use lattice_core::AuthorId;
use lattice_store::StoreError;

/// What can go wrong on the network, named after the peer it went wrong with.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// The endpoint could not be bound (address in use, unsupported discovery mode).
    #[error("cannot bind the network endpoint: {0}")]
    Bind(String),
    /// A peer address that does not parse or resolve.
    #[error("invalid peer address {text:?}: {reason}")]
    BadAddress {
        /// The address as given.
        text: String,
        /// Why it is invalid.
        reason: String,
    },
    /// The connection could not be made.
    #[error("cannot connect to {peer}: {reason}")]
    Connect {
        /// The peer.
        peer: AuthorId,
        /// Why not.
        reason: String,
    },
    /// Discovery is off and the peer's address is unknown.
    #[error("no address known for peer {0}; give one as NODE_ID@HOST:PORT")]
    NoAddress(AuthorId),
    /// The peer was silent for too long.
    #[error("{peer} did not answer within {secs} s ({what})")]
    Timeout {
        /// The peer.
        peer: AuthorId,
        /// What we were waiting for.
        what: &'static str,
        /// How long we waited.
        secs: u64,
    },
    /// The peer answered with an `Error` message.
    #[error("{peer} refused: {message}")]
    Refused {
        /// The peer.
        peer: AuthorId,
        /// The peer's message.
        message: String,
    },
    /// The peer broke the protocol (bad frame, unexpected message, bad state).
    #[error("protocol error with {peer}: {reason}")]
    Protocol {
        /// The peer.
        peer: AuthorId,
        /// What was wrong.
        reason: String,
    },
    /// The connection or stream broke.
    #[error("connection to {peer} lost: {reason}")]
    Connection {
        /// The peer.
        peer: AuthorId,
        /// Why.
        reason: String,
    },
    /// The local store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The server is shutting down.
    #[error("the network layer is shut down")]
    Shutdown,
}
