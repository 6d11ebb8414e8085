//! The identity key file: `identity.key`, the 32-byte Ed25519 seed, mode 0600.
//!
//! Loading refuses a file that group or others can read: a leaked key is a stolen identity.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use lattice_core::Identity;

#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("cannot read identity key {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("cannot write identity key {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("identity key {path} already exists; refusing to overwrite it")]
    Exists { path: PathBuf },
    #[error("identity key {path} is readable by group or others (mode {mode:o}); run `chmod 600 {path}`")]
    Permissions { path: PathBuf, mode: u32 },
    #[error("identity key {path} must hold a 32-byte seed, found {len} bytes")]
    Length { path: PathBuf, len: usize },
}

/// Writes a new key file with mode 0600 and fsyncs it. Never overwrites an existing file.
pub fn save(path: &Path, identity: &Identity) -> Result<(), KeyFileError> {
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
    Ok(())
}

/// Reads a key file, refusing one that is group/other-readable or not exactly 32 bytes.
pub fn load(path: &Path) -> Result<Identity, KeyFileError> {
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
        save(&path, &id).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(load(&path).unwrap().author(), id.author());
        assert!(matches!(save(&path, &id), Err(KeyFileError::Exists { .. })));

        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = load(&path).unwrap_err();
        assert!(matches!(err, KeyFileError::Permissions { mode: 0o644, .. }));
        assert!(err.to_string().contains("chmod 600"));

        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::write(&path, [1u8; 5]).unwrap();
        assert!(matches!(load(&path), Err(KeyFileError::Length { len: 5, .. })));
        assert!(matches!(load(&dir.path().join("missing")), Err(KeyFileError::Read { .. })));
    }
}
