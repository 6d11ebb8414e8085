//! # lattice-store
//!
//! One store on disk. Layout of `stores/{uuid}/`:
//! `logs/{author_hex}.log` (the source of truth), `state.db` (a derived redb index) and
//! `orphans.db` (entries waiting for a missing predecessor or parent).
//!
//! - [`log`]: the author log record format, append + fsync, torn-tail recovery.
//! - [`keyfile`]: the node's `identity.key` file.

pub mod keyfile;
pub mod log;
