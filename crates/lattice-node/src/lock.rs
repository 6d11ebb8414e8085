//! One owner per data dir: an exclusive `flock` on `lattice.lock`.
//!
//! The kernel drops a flock when its holder exits, however it exits, so a lock left by a killed
//! process is never stale: the next `try_acquire` simply succeeds. The holder writes its pid into
//! the file so that a refused caller can say who owns the dir.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;

use crate::datadir::DataDir;
use crate::error::NodeError;

/// Holds the data dir's lock until dropped (closing the file releases the flock).
#[derive(Debug)]
pub struct DirLock {
    // Invariant: this descriptor holds LOCK_EX on `lattice.lock`. It is close-on-exec, so a child
    // process never inherits the ownership.
    _file: File,
}

impl DirLock {
    /// Takes the lock without waiting. [`NodeError::Locked`] if a live process holds it.
    pub fn try_acquire(dir: &DataDir) -> Result<DirLock, NodeError> {
        let path = dir.lock_file();
        let io_err = |source| NodeError::io(format!("cannot open lock file {}", path.display()), source);
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(io_err)?;
        // SAFETY: flock on a descriptor we own; no memory is passed.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            let err = std::io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
                return Err(NodeError::Locked { path: dir.path().to_path_buf(), pid: read_pid(&mut file) });
            }
            return Err(io_err(err));
        }
        // The pid is advisory (for messages); failing to write it does not matter.
        let _ = file.set_len(0).and_then(|_| file.rewind()).and_then(|_| writeln!(file, "{}", std::process::id()));
        Ok(DirLock { _file: file })
    }
}

fn read_pid(file: &mut File) -> Option<u32> {
    let mut text = String::new();
    file.rewind().ok()?;
    file.read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_is_refused_with_pid_then_released_on_drop() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = DataDir::new(tmp.path()).unwrap();
        let lock = DirLock::try_acquire(&dir).unwrap();
        match DirLock::try_acquire(&dir) {
            Err(NodeError::Locked { pid, .. }) => assert_eq!(pid, Some(std::process::id())),
            other => panic!("expected Locked, got {other:?}"),
        }
        drop(lock);
        let again = DirLock::try_acquire(&dir).unwrap();
        drop(again);
    }
}
