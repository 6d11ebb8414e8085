//! Where a node keeps its files, and how that place is chosen.
//!
//! Resolution order: the `--data-dir` flag, else `$LATTICE_DATA_DIR`, else the platform data dir
//! (`$XDG_DATA_HOME/lattice`, else `~/.local/share/lattice`; `~/Library/Application Support/lattice`
//! on macOS). The path is made absolute once, so a daemon and its clients agree on it.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use lattice_core::StoreId;

use crate::error::NodeError;

/// The environment variable that names the data dir when `--data-dir` is not given.
pub const ENV_DATA_DIR: &str = "LATTICE_DATA_DIR";

/// A data dir: a root path and the names of everything inside it (DESIGN.md section 3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataDir {
    root: PathBuf,
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

    pub fn path(&self) -> &Path {
        &self.root
    }
    /// `identity.key`: the node's 32-byte Ed25519 seed, mode 0600.
    pub fn identity_key(&self) -> PathBuf {
        self.root.join("identity.key")
    }
    /// `meta.db`: local node metadata; its presence marks an initialised data dir.
    pub fn meta_db(&self) -> PathBuf {
        self.root.join("meta.db")
    }
    /// Where `init` builds `meta.db` before renaming it into place (init is all or nothing).
    pub fn meta_db_staging(&self) -> PathBuf {
        self.root.join("meta.db.init")
    }
    /// `lattice.lock`: flocked by the process that owns the data dir.
    pub fn lock_file(&self) -> PathBuf {
        self.root.join("lattice.lock")
    }
    /// `lattice.sock`: the control socket of a long-running owner (serve, shell, watch).
    pub fn socket(&self) -> PathBuf {
        self.root.join("lattice.sock")
    }
    /// The shell's persistent history.
    pub fn history(&self) -> PathBuf {
        self.root.join("history")
    }
    pub fn stores_dir(&self) -> PathBuf {
        self.root.join("stores")
    }
    /// `stores/{uuid}`: the live data of one store.
    pub fn store(&self, id: StoreId) -> PathBuf {
        self.stores_dir().join(id.to_string())
    }
    pub fn archive_dir(&self) -> PathBuf {
        self.root.join("archive")
    }
    /// `archive/{uuid}`: a store deleted from the mesh; kept, never served.
    pub fn archived_store(&self, id: StoreId) -> PathBuf {
        self.archive_dir().join(id.to_string())
    }

    pub fn exists(&self) -> bool {
        self.root.is_dir()
    }
    pub fn is_initialised(&self) -> bool {
        self.meta_db().is_file()
    }

    /// Creates the data dir (mode 0700: it holds the secret key) if it does not exist.
    pub fn create(&self) -> Result<(), NodeError> {
        use std::os::unix::fs::DirBuilderExt;
        if self.exists() {
            return Ok(());
        }
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.root)
            .map_err(|source| NodeError::io(format!("cannot create data dir {}", self.root.display()), source))
    }

    /// Fails with [`NodeError::NotInitialised`] unless `init` has completed here.
    pub fn require_initialised(&self) -> Result<(), NodeError> {
        if self.is_initialised() { Ok(()) } else { Err(NodeError::NotInitialised(self.root.clone())) }
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
