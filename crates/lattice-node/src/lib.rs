//! # lattice-node
//!
//! The node: data dir, identity, meta.db, root store, store manager (lands with the CLI issue).
