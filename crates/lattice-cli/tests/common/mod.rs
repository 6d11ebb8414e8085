//! Helpers shared by the CLI tests: a temp data dir per test, running the built `lattice`
//! binary, a `serve` child with polling deadlines (never bare sleeps), pipes read with timeouts.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Instant;

pub use lattice_testkit::DEADLINE;

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_lattice")
}

/// Polls `cond` until it holds or [`DEADLINE`] passes.
pub fn wait_until(what: &str, cond: impl FnMut() -> bool) {
    lattice_testkit::wait_until(what, DEADLINE, cond)
}

/// What one command did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    pub code: i32,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

impl Run {
    pub fn out(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.out()))
    }
    #[track_caller]
    pub fn ok(self) -> Run {
        assert_eq!(self.code, 0, "command failed: stdout={:?} stderr={:?}", self.out(), self.stderr);
        self
    }
    /// A failure reported the way docs/design.md, CLI asks: the exit code, one line on stderr, no panic.
    #[track_caller]
    pub fn fails(self, code: i32, needle: &str) -> Run {
        assert_eq!(self.code, code, "exit code; stderr={:?} stdout={:?}", self.stderr, self.out());
        assert_eq!(self.stderr.trim_end().lines().count(), 1, "one line on stderr: {:?}", self.stderr);
        assert!(self.stderr.contains(needle), "stderr {:?} lacks {needle:?}", self.stderr);
        assert!(!self.stderr.contains("panicked"), "{}", self.stderr);
        self
    }
}

fn to_run(out: Output) -> Run {
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: out.stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A temp data dir and the commands that act on it.
pub struct Lattice {
    pub tmp: tempfile::TempDir,
    pub dir: PathBuf,
}

impl Lattice {
    /// A fresh, uninitialised data dir path (not created).
    pub fn new() -> Lattice {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        Lattice { tmp, dir }
    }

    /// A data dir after `lattice init`.
    pub fn init() -> Lattice {
        let l = Lattice::new();
        l.run(&["init", "--name", "test"]).ok();
        l
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.join("lattice.sock")
    }

    /// A `lattice` command with this data dir and a clean environment.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(bin());
        cmd.arg("--data-dir").arg(&self.dir).args(args);
        isolate(&mut cmd, self.tmp.path());
        cmd
    }

    pub fn run(&self, args: &[&str]) -> Run {
        let mut cmd = self.command(args);
        cmd.stdin(Stdio::null());
        to_run(cmd.output().unwrap())
    }

    /// As [`Lattice::run`], with arguments that need not be UTF-8 (raw key bytes).
    pub fn run_bytes(&self, args: &[&[u8]]) -> Run {
        use std::os::unix::ffi::OsStrExt;
        let mut cmd = self.command(&[]);
        cmd.args(args.iter().map(|a| std::ffi::OsStr::from_bytes(a))).stdin(Stdio::null());
        to_run(cmd.output().unwrap())
    }

    pub fn run_with_stdin(&self, args: &[&str], input: &[u8]) -> Run {
        let mut cmd = self.command(args);
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let input = input.to_vec();
        let writer = std::thread::spawn(move || {
            let _ = stdin.write_all(&input);
        });
        let out = child.wait_with_output().unwrap();
        writer.join().unwrap();
        to_run(out)
    }

    /// Starts `lattice serve` and waits until its control socket accepts connections.
    pub fn serve(&self) -> Child {
        self.serve_at("127.0.0.1:0")
    }

    /// Starts `lattice serve --bind ADDR` and waits until its control socket accepts connections.
    pub fn serve_at(&self, addr: &str) -> Child {
        let mut cmd = self.command(&["serve", "--bind", addr]);
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let socket = self.socket();
        wait_until("the control socket", || {
            if let Some(status) = child.try_wait().unwrap() {
                let mut err = String::new();
                let _ = child.stderr.take().map(|mut e| e.read_to_string(&mut err));
                panic!("serve exited early ({status}): {err}");
            }
            std::os::unix::net::UnixStream::connect(&socket).is_ok()
        });
        child
    }
}

/// No inherited data dir, and HOME inside the test's temp dir.
pub fn isolate(cmd: &mut Command, home: &Path) {
    cmd.env_remove("LATTICE_DATA_DIR").env_remove("XDG_DATA_HOME").env("HOME", home).env("RUST_LOG", "warn");
}

pub fn signal(child: &Child, sig: i32) {
    // SAFETY: sending a signal to our own child process.
    let rc = unsafe { libc::kill(child.id() as i32, sig) };
    assert_eq!(rc, 0, "kill failed");
}

/// Waits (polling, with the deadline) for `child` to exit.
pub fn wait_exit(child: &mut Child) -> std::process::ExitStatus {
    let mut status = None;
    wait_until("the process to exit", || {
        status = child.try_wait().unwrap();
        status.is_some()
    });
    status.unwrap()
}

/// Reads lines of a pipe on a thread, so tests can wait for one with a deadline.
pub struct Lines {
    rx: mpsc::Receiver<String>,
    pub seen: Vec<String>,
}

impl Lines {
    pub fn new(pipe: impl Read + Send + 'static) -> Lines {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Lines { rx, seen: Vec::new() }
    }

    /// The next line containing `needle` (earlier lines are kept in `seen`).
    #[track_caller]
    pub fn wait_for(&mut self, needle: &str) -> String {
        let end = Instant::now() + DEADLINE;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(e) => panic!("no line containing {needle:?} ({e}); saw {:?}", self.seen),
            }
        }
    }
}

/// `serve` processes, killed when dropped (a failed assertion must not leave them running).
pub struct Serving(pub Vec<Child>);

impl Drop for Serving {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
