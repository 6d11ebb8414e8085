//! A node's identity: one Ed25519 key pair. Its public key is both the author id that signs
//! entries and the iroh node id. Reading and writing the key file is `lattice-store`'s job
//! (`keyfile`); this module only knows bytes.

use ed25519_dalek::{Signer, SigningKey};

use crate::ids::AuthorId;

/// Why bytes cannot become an [`Identity`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    /// The seed is not exactly 32 bytes; holds its length.
    #[error("identity key must be a 32-byte Ed25519 seed, got {0} bytes")]
    SeedLength(usize),
}

/// An Ed25519 signing key. `Debug` never prints the secret.
#[derive(Clone)]
pub struct Identity {
    key: SigningKey,
}

impl Identity {
    /// A fresh key from a random seed (`rand`'s thread-local CSPRNG).
    pub fn generate() -> Self {
        let mut seed = [0u8; 32];
        rand::fill(&mut seed);
        Identity::from_seed(seed)
    }

    /// The key derived from a 32-byte Ed25519 seed; the same seed always gives the same key.
    pub fn from_seed(seed: [u8; 32]) -> Self {
        Identity { key: SigningKey::from_bytes(&seed) }
    }

    /// Like [`from_seed`](Self::from_seed), for a slice (e.g. a key file's contents) that must be
    /// exactly 32 bytes.
    pub fn from_seed_bytes(bytes: &[u8]) -> Result<Self, IdentityError> {
        let seed: [u8; 32] = bytes.try_into().map_err(|_| IdentityError::SeedLength(bytes.len()))?;
        Ok(Identity::from_seed(seed))
    }

    /// The 32-byte secret seed, as written to `identity.key`.
    pub fn seed(&self) -> [u8; 32] {
        self.key.to_bytes()
    }

    /// The public key: the author id of every entry this identity signs, and the node id.
    pub fn author(&self) -> AuthorId {
        AuthorId(self.key.verifying_key().to_bytes())
    }

    /// The 64-byte Ed25519 signature of `message`.
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.key.sign(message).to_bytes()
    }
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Identity({})", self.author().short())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_round_trip() {
        let id = Identity::generate();
        let again = Identity::from_seed_bytes(&id.seed()).unwrap();
        assert_eq!(id.author(), again.author());
        assert_eq!(Identity::from_seed_bytes(&[0; 31]).unwrap_err(), IdentityError::SeedLength(31));
        assert!(!format!("{id:?}").contains(&hex::encode(id.seed())));
    }
}
