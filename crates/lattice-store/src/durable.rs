//! New files and directories made durable (DESIGN.md §3): a file's fsync makes its contents
//! durable, not its name. Until the directory that holds the new name is fsynced too, a crash
//! can lose the whole file, so everything that creates a file or directory and then
//! acknowledges a write in it goes through here first.

use std::io;
use std::path::{Path, PathBuf};

/// The directory that holds `path`'s name (`.` for a bare file name).
fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    }
}

/// Fsyncs the directory `dir`, making durable the names created in it (and removed from it).
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    std::fs::File::open(dir)?.sync_all()?;
    #[cfg(test)]
    SYNCED_DIRS.with(|synced| synced.borrow_mut().push(dir.to_path_buf()));
    Ok(())
}

/// Makes the name of the just-created file (or directory) `path` durable: fsyncs its parent.
pub fn created(path: &Path) -> io::Result<()> {
    sync_dir(parent_of(path))
}

/// Creates `path` and its missing ancestors (like `std::fs::create_dir_all`), each with
/// permission bits `mode` (less the umask), and fsyncs the parent of every directory it
/// created. Returns whether it created any.
pub fn create_dir_all_mode(path: &Path, mode: u32) -> io::Result<bool> {
    use std::os::unix::fs::DirBuilderExt;
    let mut missing: Vec<PathBuf> = Vec::new();
    let mut at = path;
    while !at.is_dir() {
        missing.push(at.to_path_buf());
        match at.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => at = parent,
            _ => break,
        }
    }
    for dir in missing.iter().rev() {
        match std::fs::DirBuilder::new().mode(mode).create(dir) {
            Ok(()) => created(dir)?,
            // Created meanwhile by someone else, who makes it durable.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => {}
            Err(e) => return Err(e),
        }
    }
    Ok(!missing.is_empty())
}

#[cfg(test)]
thread_local! {
    /// The directories this thread fsynced, in order (for tests: a crash cannot be staged).
    static SYNCED_DIRS: std::cell::RefCell<Vec<PathBuf>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Takes the list of directories this thread fsynced since the last call.
#[cfg(test)]
pub(crate) fn take_synced_dirs() -> Vec<PathBuf> {
    SYNCED_DIRS.with(|synced| std::mem::take(&mut *synced.borrow_mut()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn creating_a_tree_fsyncs_the_parent_of_each_new_directory() {
        let dir = tempfile::tempdir().unwrap();
        let deep = dir.path().join("a").join("b").join("c");
        take_synced_dirs();
        assert!(create_dir_all_mode(&deep, 0o700).unwrap());
        assert!(deep.is_dir());
        assert_eq!(
            take_synced_dirs(),
            vec![dir.path().to_path_buf(), dir.path().join("a"), dir.path().join("a").join("b")]
        );
        assert_eq!(std::fs::metadata(&deep).unwrap().permissions().mode() & 0o777, 0o700);
        // Already there: nothing created, nothing synced.
        assert!(!create_dir_all_mode(&deep, 0o700).unwrap());
        assert!(take_synced_dirs().is_empty());
        // A file in the way is an error, as with std.
        let file = dir.path().join("f");
        std::fs::write(&file, b"x").unwrap();
        assert!(create_dir_all_mode(&file.join("under"), 0o700).is_err());
    }

    #[test]
    fn created_syncs_the_parent_and_bare_names_sync_the_current_dir() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("new.log");
        std::fs::write(&file, b"x").unwrap();
        take_synced_dirs();
        created(&file).unwrap();
        assert_eq!(take_synced_dirs(), vec![dir.path().to_path_buf()]);
        assert_eq!(parent_of(Path::new("identity.key")), Path::new("."));
        assert!(sync_dir(&dir.path().join("missing")).is_err());
    }
}
