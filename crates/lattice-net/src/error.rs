//! Errors of the network layer.

use lattice_core::AuthorId;
use lattice_store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("cannot bind the network endpoint: {0}")]
    Bind(String),
    #[error("invalid peer address {text:?}: {reason}")]
    BadAddress { text: String, reason: String },
    #[error("cannot connect to {peer}: {reason}")]
    Connect { peer: AuthorId, reason: String },
    #[error("no address known for peer {0}; give one as NODE_ID@HOST:PORT")]
    NoAddress(AuthorId),
    #[error("{peer} did not answer within {secs} s ({what})")]
    Timeout { peer: AuthorId, what: &'static str, secs: u64 },
    #[error("{peer} refused: {message}")]
    Refused { peer: AuthorId, message: String },
    #[error("protocol error with {peer}: {reason}")]
    Protocol { peer: AuthorId, reason: String },
    #[error("connection to {peer} lost: {reason}")]
    Connection { peer: AuthorId, reason: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the network layer is shut down")]
    Shutdown,
}
