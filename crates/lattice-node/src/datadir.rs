//! Where a node keeps its files, and how that place is chosen.
//!
//! Resolution order: the `--data-dir` flag, else `$LATTICE_DATA_DIR`, else the platform data dir
//! (`$XDG_DATA_HOME/lattice`, else `~/.local/share/lattice`; `~/Library/Application Support/lattice`
//! on macOS). The path is made absolute once, so a daemon and its clients agree on it.

use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use lattice_core::StoreId;

use crate::error::NodeError;

/// The environment variable that names the data dir when `--data-dir` is not given.
pub const ENV_DATA_DIR: &str = "LATTICE_DATA_DIR";

/// A data dir: a root path and the names of everything inside it (docs/design.md, Data directory).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataDir {
    root: PathBuf,
}

/// Declares the `DataDir` methods that name one entry of the data dir's top level.
macro_rules! entries {
    ($($(#[$doc:meta])* $method:ident => $name:literal;)*) => {
        impl DataDir {
            $($(#[$doc])* pub fn $method(&self) -> PathBuf { self.root.join($name) })*
        }
    };
}

entries! {
    /// `identity.key`: the node's 32-byte Ed25519 seed, mode 0600.
    identity_key => "identity.key";
    /// `meta.db`: local node metadata; its presence marks an initialised data dir.
    meta_db => "meta.db";
    /// Where `init` builds `meta.db` before renaming it into place (init is all or nothing).
    meta_db_staging => "meta.db.init";
    /// `lattice.lock`: flocked by the process that owns the data dir.
    lock_file => "lattice.lock";
    /// `lattice.sock`: the control socket of a long-running owner (serve, shell, watch).
    socket => "lattice.sock";
    /// The shell's persistent history.
    history => "history";
    /// `stores/`: one directory per live store.
    stores_dir => "stores";
    /// `archive/`: one directory per store deleted from the mesh.
    archive_dir => "archive";
}

impl DataDir {
    /// Resolves the data dir from the flag, the environment, then the platform default.
    pub fn resolve(flag: Option<&Path>) -> Result<DataDir, NodeError> {
        Self::resolve_with(flag, |name| std::env::var_os(name))
    }

    /// [`resolve`](Self::resolve) with the environment passed in (for tests).
    pub fn resolve_with(flag: Option<&Path>, env: impl Fn(&str) -> Option<OsString>) -> Result<DataDir, NodeError> {
        let non_empty = |name: &str| env(name).filter(|v| !v.is_empty()).map(PathBuf::from);
        let chosen = match flag {
            Some(path) if !path.as_os_str().is_empty() => path.to_path_buf(),
            Some(_) => return Err(NodeError::Invalid("--data-dir must not be empty".into())),
            None => match non_empty(ENV_DATA_DIR) {
                Some(path) => path,
                None => platform_data_dir(&non_empty).ok_or_else(|| {
                    NodeError::Invalid(format!(
                        "cannot find a data dir: pass --data-dir or set ${ENV_DATA_DIR} (neither $XDG_DATA_HOME nor $HOME is set)"
                    ))
                })?,
            },
        };
        DataDir::new(chosen)
    }

    /// A data dir at `path`, made absolute against the current directory.
    pub fn new(path: impl AsRef<Path>) -> Result<DataDir, NodeError> {
        let path = path.as_ref();
        let root = std::path::absolute(path)
            .map_err(|source| NodeError::io(format!("cannot resolve data dir {}", path.display()), source))?;
        Ok(DataDir { root })
    }

    /// The data dir itself (absolute).
    pub fn path(&self) -> &Path {
        &self.root
    }
    /// `stores/{uuid}`: the live data of one store.
    pub fn store(&self, id: StoreId) -> PathBuf {
        self.stores_dir().join(id.to_string())
    }
    /// `archive/{uuid}`: a store deleted from the mesh; kept, never served.
    pub fn archived_store(&self, id: StoreId) -> PathBuf {
        self.archive_dir().join(id.to_string())
    }

    /// True if the data dir exists (initialised or not).
    pub fn exists(&self) -> bool {
        self.root.is_dir()
    }
    /// True once `init` has completed here (`meta.db` exists).
    pub fn is_initialised(&self) -> bool {
        self.meta_db().is_file()
    }

    /// Creates the data dir (mode 0700: it holds the secret key) if it does not exist, durably
    /// (the parent of every directory created is fsynced before anything is written in it).
    pub fn create(&self) -> Result<(), NodeError> {
        if self.exists() {
            return Ok(());
        }
        lattice_store::durable::create_dir_all_mode(&self.root, 0o700)
            .map(drop)
            .map_err(|source| NodeError::io(format!("cannot create data dir {}", self.root.display()), source))
    }

    /// Makes the data dir 0700 (`init` does, so a dir that existed before keeps no looser mode).
    pub fn make_private(&self) -> Result<(), NodeError> {
        std::fs::set_permissions(&self.root, std::fs::Permissions::from_mode(0o700))
            .map_err(|source| NodeError::io(format!("cannot chmod data dir {}", self.root.display()), source))
    }

    /// Fails with [`NodeError::Exposed`] if group or other have any access to the data dir.
    pub fn require_private(&self) -> Result<(), NodeError> {
        let meta = std::fs::metadata(&self.root)
            .map_err(|source| NodeError::io(format!("cannot read data dir {}", self.root.display()), source))?;
        if meta.permissions().mode() & 0o077 != 0 {
            return Err(NodeError::Exposed(self.root.clone()));
        }
        Ok(())
    }

    /// Fails with [`NodeError::NotInitialised`] unless `init` has completed here.
    pub fn require_initialised(&self) -> Result<(), NodeError> {
        if self.is_initialised() { Ok(()) } else { Err(NodeError::NotInitialised(self.root.clone())) }
    }

    /// Moves `stores/{uuid}` to `archive/{uuid}` if it exists here, then fsyncs both parent
    /// directories so the move survives a crash. Returns whether there was anything to move.
    /// The store must be closed.
    pub(crate) fn archive(&self, id: StoreId) -> Result<bool, NodeError> {
        let from = self.store(id);
        if !from.exists() {
            return Ok(false);
        }
        let archive = self.archive_dir();
        // 0700 and durable in the data dir before anything is moved into it.
        lattice_store::durable::create_dir_all_mode(&archive, 0o700)
            .map_err(|e| NodeError::io(format!("cannot create {}", archive.display()), e))?;
        let to = self.archived_store(id);
        if to.exists() {
            // An earlier archive of the same store (cannot normally happen): keep both.
            let aside = archive.join(format!("{id}.{}", crate::time::now_ms()));
            std::fs::rename(&to, &aside).map_err(|e| NodeError::io(format!("cannot move {}", to.display()), e))?;
        }
        std::fs::rename(&from, &to).map_err(|e| NodeError::io(format!("cannot archive {}", from.display()), e))?;
        sync_dir(&archive);
        sync_dir(&self.stores_dir());
        Ok(true)
    }
}

/// fsyncs a directory so a rename inside it is durable. Best effort: failures are logged.
pub(crate) fn sync_dir(path: &Path) {
    if let Err(e) = lattice_store::durable::sync_dir(path) {
        tracing::warn!(path = %path.display(), error = %e, "cannot fsync directory");
    }
}

fn platform_data_dir(env: &impl Fn(&str) -> Option<PathBuf>) -> Option<PathBuf> {
    if cfg!(target_os = "macos") {
        return env("HOME").map(|home| home.join("Library/Application Support/lattice"));
    }
    match env("XDG_DATA_HOME").filter(|p| p.is_absolute()) {
        Some(xdg) => Some(xdg.join("lattice")),
        None => env("HOME").map(|home| home.join(".local/share/lattice")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<OsString> {
        let vars: Vec<(String, String)> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| OsString::from(v))
    }

    #[test]
    fn resolution_order() {
        let all = env(&[(ENV_DATA_DIR, "/from-env"), ("XDG_DATA_HOME", "/xdg"), ("HOME", "/home/u")]);
        let flag = DataDir::resolve_with(Some(Path::new("/flag")), &all).unwrap();
        assert_eq!(flag.path(), Path::new("/flag"));
        assert_eq!(DataDir::resolve_with(None, &all).unwrap().path(), Path::new("/from-env"));
        if !cfg!(target_os = "macos") {
            let xdg = env(&[("XDG_DATA_HOME", "/xdg"), ("HOME", "/home/u")]);
            assert_eq!(DataDir::resolve_with(None, xdg).unwrap().path(), Path::new("/xdg/lattice"));
            let home = env(&[("XDG_DATA_HOME", "relative"), ("HOME", "/home/u")]);
            assert_eq!(DataDir::resolve_with(None, home).unwrap().path(), Path::new("/home/u/.local/share/lattice"));
        }
        assert!(matches!(DataDir::resolve_with(None, env(&[])), Err(NodeError::Invalid(_))));
        assert!(matches!(DataDir::resolve_with(Some(Path::new("")), env(&[])), Err(NodeError::Invalid(_))));
    }

    #[test]
    fn relative_paths_become_absolute() {
        let dir = DataDir::new("some/rel").unwrap();
        assert!(dir.path().is_absolute());
        assert!(dir.path().ends_with("some/rel"));
    }
}
