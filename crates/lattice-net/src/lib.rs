//! # lattice-net
//!
//! Networking over iroh (lands with the networking issue).
