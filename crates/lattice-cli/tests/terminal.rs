//! What a person at a terminal sees, and what a pipe gets: colour only on a terminal and never
//! with `NO_COLOR` (no-color.org), and a final newline after a raw `get` value only on a
//! terminal; the same run directly and forwarded to `serve` (the client decides both).

mod common;

use std::fs::File;
use std::io::Read;
use std::os::fd::FromRawFd;
use std::process::{Child, Stdio};

use common::{Lattice, Run, signal, wait_exit};

const ESC: u8 = 0x1b;

/// A `serve` that is stopped however the test ends.
struct Serving(Child);

impl Drop for Serving {
    fn drop(&mut self) {
        signal(&self.0, libc::SIGTERM);
        let _ = wait_exit(&mut self.0);
    }
}

/// Runs `lattice ARGS` with stdout and stderr on a new pseudo-terminal; returns the exit code
/// and everything it printed (the terminal writes each "\n" as "\r\n").
fn on_terminal(l: &Lattice, args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let (mut master, mut slave) = (0, 0);
    // SAFETY: out-pointers to two ints; null name, termios and window size.
    let rc =
        unsafe { libc::openpty(&mut master, &mut slave, std::ptr::null_mut(), std::ptr::null(), std::ptr::null()) };
    assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: openpty returned two fresh descriptors that we now own.
    let (mut master, slave) = unsafe { (File::from_raw_fd(master), File::from_raw_fd(slave)) };
    let mut cmd = l.command(args);
    cmd.env_remove("NO_COLOR").envs(env.iter().copied());
    cmd.stdin(Stdio::null()).stdout(Stdio::from(slave.try_clone().unwrap())).stderr(Stdio::from(slave));
    let mut child = cmd.spawn().unwrap();
    drop(cmd); // closes our copies of the terminal's side, so the read below ends with the child
    let reader = std::thread::spawn(move || {
        let (mut screen, mut buf) = (Vec::new(), [0u8; 4096]);
        // Ends with EIO once the child and every descriptor of the other side are gone.
        while let Ok(n @ 1..) = master.read(&mut buf) {
            screen.extend_from_slice(&buf[..n]);
        }
        String::from_utf8_lossy(&screen).into_owned()
    });
    let code = wait_exit(&mut child).code().unwrap_or(-1);
    (code, reader.join().unwrap())
}

/// `lattice ARGS` on pipes with `NO_COLOR=1`.
fn piped_no_color(l: &Lattice, args: &[&str]) -> Run {
    let mut cmd = l.command(args);
    cmd.env("NO_COLOR", "1").stdin(Stdio::null());
    let out = cmd.output().unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: out.stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[track_caller]
fn assert_plain(what: &str, run: &Run) {
    assert!(!run.stdout.contains(&ESC), "{what}: ESC on stdout: {:?}", run.out());
    assert!(!run.stderr.as_bytes().contains(&ESC), "{what}: ESC on stderr: {:?}", run.stderr);
}

/// Pipes and NO_COLOR: not one escape byte, from text output, errors or the daemon.
fn no_escape_bytes(l: &Lattice, how: &str) {
    for args in [&["get", "-v", "k"][..], &["peers"], &["status"], &["list-stores"], &["get", "k"]] {
        assert_plain(&format!("{how} {args:?}"), &piped_no_color(l, args).ok());
    }
    let failed = piped_no_color(l, &["--store", "nope", "list"]).fails(1, "error:");
    assert_plain(&format!("{how} error"), &failed);
    let usage = piped_no_color(l, &["put", "k"]);
    assert_eq!(usage.code, 2, "{}", usage.stderr);
    assert_plain(&format!("{how} usage error"), &usage);
    assert_plain(&format!("{how} pipe without NO_COLOR"), &l.run(&["peers"]).ok());
}

#[test]
fn pipes_and_no_color_get_no_escape_bytes_direct_and_forwarded() {
    let l = Lattice::init();
    l.run(&["put", "k", "v"]).ok();
    no_escape_bytes(&l, "direct");
    let _serve = Serving(l.serve());
    no_escape_bytes(&l, "forwarded");
}

/// On a terminal: a bold table header, unless NO_COLOR is set and not empty; errors in red.
fn colour_on_a_terminal(l: &Lattice, how: &str) {
    let (code, screen) = on_terminal(l, &["peers"], &[]);
    assert_eq!(code, 0, "{screen}");
    assert!(screen.contains("\x1b[1mNODE ID\x1b[0m"), "{how}: {screen:?}");
    assert!(screen.contains("\x1b[32mactive\x1b[0m"), "{how}: {screen:?}");
    let (_, screen) = on_terminal(l, &["peers"], &[("NO_COLOR", "1")]);
    assert!(!screen.contains('\x1b') && screen.contains("NODE ID"), "{how} NO_COLOR=1: {screen:?}");
    let (_, screen) = on_terminal(l, &["peers"], &[("NO_COLOR", "")]);
    assert!(screen.contains('\x1b'), "{how}: an empty NO_COLOR does not count: {screen:?}");
    let (code, screen) = on_terminal(l, &["--store", "nope", "list"], &[]);
    assert_eq!(code, 1, "{screen}");
    assert!(screen.starts_with("\x1b[31merror:\x1b[0m "), "{how}: {screen:?}");
    let (_, screen) = on_terminal(l, &["--store", "nope", "list"], &[("NO_COLOR", "1")]);
    assert!(screen.starts_with("error: "), "{how}: {screen:?}");
}

#[test]
fn a_terminal_gets_colour_unless_no_color_direct_and_forwarded() {
    let l = Lattice::init();
    colour_on_a_terminal(&l, "direct");
    let _serve = Serving(l.serve());
    colour_on_a_terminal(&l, "forwarded");
}

/// `get KEY`: "v" and a newline for a person, the exact bytes for a pipe.
fn raw_get(l: &Lattice, how: &str) {
    assert_eq!(l.run(&["get", "k"]).ok().stdout, b"v", "{how}: exact bytes on a pipe");
    assert_eq!(on_terminal(l, &["get", "k"], &[]), (0, "v\r\n".to_string()), "{how}: a line on a terminal");
    assert_eq!(on_terminal(l, &["get", "nl"], &[]), (0, "v\r\n".to_string()), "{how}: never a second newline");
}

#[test]
fn get_ends_a_line_on_a_terminal_only_direct_and_forwarded() {
    let l = Lattice::init();
    l.run(&["put", "k", "v"]).ok();
    l.run_with_stdin(&["put", "nl", "-"], b"v\n").ok();
    raw_get(&l, "direct");
    let _serve = Serving(l.serve());
    raw_get(&l, "forwarded");
}
