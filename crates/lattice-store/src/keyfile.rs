//! The identity key file: `identity.key`, the 32-byte Ed25519 seed, mode 0600.
//!
//! Loading refuses a file that group or others can read: a leaked key is a stolen identity.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use lattice_core::Identity;

/// Why the identity key file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// The file could not be read.
    #[error("cannot read identity key {path}: {source}")]
    Read {
        /// The key file.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The file could not be written.
    #[error("cannot write identity key {path}: {source}")]
    Write {
        /// The key file.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// A key file is there already: an identity is never overwritten.
    #[error("identity key {path} already exists; refusing to overwrite it")]
    Exists {
        /// The key file.
        path: PathBuf,
    },
    /// The file is readable by group or others.
    #[error("identity key {path} is readable by group or others (mode {mode:o}); run `chmod 600 {path}`")]
    Permissions {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The file does not hold exactly a 32-byte seed.
    #[error("identity key {path} must hold a 32-byte seed, found {len} bytes")]
    Length {
        /// The key file.
        path: PathBuf,
        /// Its length in bytes.
        len: usize,
    },
}

/// Writes a new key file with mode 0600 and fsyncs it. Never overwrites an existing file.
pub fn save_identity(path: &Path, identity: &Identity) -> Result<(), KeyFileError> {
    let err = |source: std::io::Error| {
        if source.kind() == std::io::ErrorKind::AlreadyExists {
            KeyFileError::Exists { path: path.to_path_buf() }
        } else {
            KeyFileError::Write { path: path.to_path_buf(), source }
        }
    };
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path).map_err(err)?;
    file.write_all(&identity.seed()).map_err(err)?;
    file.sync_all().map_err(err)?;
    crate::durable::created(path).map_err(err)?;
    Ok(())
}

/// Reads a key file, refusing one that is group/other-readable or not exactly 32 bytes.
pub fn load_identity(path: &Path) -> Result<Identity, KeyFileError> {
    let read_err = |source| KeyFileError::Read { path: path.to_path_buf(), source };
    let meta = std::fs::metadata(path).map_err(read_err)?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(KeyFileError::Permissions { path: path.to_path_buf(), mode });
    }
    let bytes = std::fs::read(path).map_err(read_err)?;
    Identity::from_seed_bytes(&bytes).map_err(|_| KeyFileError::Length { path: path.to_path_buf(), len: bytes.len() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_load_and_refusals() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("identity.key");
        let id = Identity::generate();
        save_identity(&path, &id).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(load_identity(&path).unwrap().author(), id.author());
        assert!(matches!(save_identity(&path, &id), Err(KeyFileError::Exists { .. })));

        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = load_identity(&path).unwrap_err();
        assert!(matches!(err, KeyFileError::Permissions { mode: 0o644, .. }));
        assert!(err.to_string().contains("chmod 600"));

        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::write(&path, [1u8; 5]).unwrap();
        assert!(matches!(load_identity(&path), Err(KeyFileError::Length { len: 5, .. })));
        assert!(matches!(load_identity(&dir.path().join("missing")), Err(KeyFileError::Read { .. })));
    }
}
