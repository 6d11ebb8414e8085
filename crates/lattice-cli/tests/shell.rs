//! The shell (`lattice` with no command): through a pipe (no prompts, one parser for lines and
//! argv) and through a real pseudo-terminal (prompt with the store name, completion, history
//! that survives a restart). The pty is opened with libc, so no extra tool or crate is needed.

mod common;

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::FromRawFd;
use std::os::unix::process::CommandExt;
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::Instant;

use common::{DEADLINE, Lattice, signal, wait_exit};

#[test]
fn piped_lines_run_without_prompts() {
    let l = Lattice::init();
    let run = l.run_with_stdin(&[], b"put a 1\nget a\nput 'two words' \"x y\"\nlist\n--json get a\n");
    let out = run.clone().ok().out();
    assert!(!out.contains("lattice:"), "no prompt when stdin is a pipe: {out}");
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("ok"));
    assert_eq!(lines.next(), Some("1"), "a shell line's get ends with a newline");
    assert_eq!(lines.next(), Some("ok"));
    assert_eq!(lines.next(), Some("a\t1"));
    assert_eq!(lines.next(), Some("two words\tx y"));
    let json: serde_json::Value = serde_json::from_str(&lines.collect::<Vec<_>>().join("\n")).unwrap();
    assert_eq!(json["value"], "1");
    assert!(run.stderr.is_empty(), "{}", run.stderr);

    // Errors are reported per line and do not stop the shell; the exit code is the last line's.
    let run = l.run_with_stdin(&[], b"get missing\nbogus-command\nput 'unterminated\nget a\n");
    assert_eq!(run.code, 0);
    assert_eq!(run.out(), "1\n");
    assert!(run.stderr.contains("not found") && run.stderr.contains("bogus-command"));
    assert!(run.stderr.contains("unterminated"));
    assert!(!run.stderr.contains("panicked"));
    let run = l.run_with_stdin(&[], b"get a\nget missing\n");
    assert_eq!(run.code, 1);
    let run = l.run_with_stdin(&[], b"get a\nquit\nget missing\n");
    assert_eq!((run.code, run.out().as_str()), (0, "1\n"), "quit stops reading");

    // Shell-only refusals.
    let run = l.run_with_stdin(&[], b"put k -\n");
    assert_eq!(run.code, 2);
    let run = l.run_with_stdin(&[], b"--data-dir /elsewhere status\n");
    assert_eq!(run.code, 2);
    // `help` lists commands on stdout.
    let help = l.run_with_stdin(&[], b"help\n").ok().out();
    assert!(help.contains("create-store") && help.contains("quit"));
}

#[test]
fn piped_shell_can_init_and_honours_start_flags() {
    let l = Lattice::new();
    let run = l.run_with_stdin(&[], b"status\ninit\nput a 1\ncreate-store s\n");
    assert!(run.stderr.contains("not initialised"), "{}", run.stderr);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let run = l.run_with_stdin(&["--store", "s", "--json"], b"put b 2\nlist\n");
    let out = run.ok().out();
    assert!(out.contains("\"items\"") && out.contains("\"b\"") && !out.contains("\"a\""), "{out}");
}

#[test]
fn piped_shell_is_forwarded_to_a_daemon() {
    let l = Lattice::init();
    l.run(&["put", "a", "1"]).ok();
    let script = b"get a\nput b 2\nlist\nget missing\nstatus --json\n";
    let mut serve = l.serve();
    let run = l.run_with_stdin(&[], script);
    assert_eq!(run.code, 0);
    assert!(run.out().starts_with("1\nok\na\t1\nb\t2\n"), "{}", run.out());
    assert!(run.out().contains("\"daemon\": true"));
    assert_eq!(run.stderr, "not found\n");
    signal(&serve, libc::SIGTERM);
    assert!(wait_exit(&mut serve).success());
}

/// The shell has compare-and-set and batches: a batch FILE is read by the shell itself (also when
/// its lines are forwarded to a daemon); `batch -` is refused, as a shell line has no stdin.
#[test]
fn shell_lines_compare_and_set_and_batch_direct_and_forwarded() {
    let l = Lattice::init();
    let file = l.tmp.path().join("ops.jsonl");
    for (round, daemon) in [("direct", false), ("forwarded", true)] {
        std::fs::write(&file, format!("{{\"op\":\"put\",\"key\":\"{round}/a\",\"value\":\"1\"}}\n{{\"op\":\"put\",\"key\":\"{round}/b\",\"value\":\"2\"}}\n")).unwrap();
        let mut serve = daemon.then(|| l.serve());
        let script = format!(
            "put {round}/c 1 --if-absent\nput {round}/c 2 --if-absent\nbatch {}\nbatch -\nlist {round}/\n",
            file.display()
        );
        let run = l.run_with_stdin(&[], script.as_bytes());
        assert_eq!(run.out(), format!("ok\nok (2 operations)\n{round}/a\t1\n{round}/b\t2\n{round}/c\t1\n"), "{round}");
        assert!(run.stderr.contains(&format!("precondition failed: {round}/c is at")), "{round}: {}", run.stderr);
        assert!(run.stderr.contains("batch reads stdin, which a shell line does not have"), "{round}: {}", run.stderr);
        if let Some(serve) = serve.as_mut() {
            signal(serve, libc::SIGTERM);
            assert!(wait_exit(serve).success());
        }
    }
}

/// A child process on a pseudo-terminal, and everything it has printed so far.
struct Pty {
    master: File,
    child: Child,
    rx: mpsc::Receiver<Vec<u8>>,
    screen: String,
    /// Where the next `expect` starts looking.
    pos: usize,
}

impl Pty {
    fn spawn(l: &Lattice, args: &[&str]) -> Pty {
        let (mut master, mut slave) = (0, 0);
        let size = libc::winsize { ws_row: 50, ws_col: 200, ws_xpixel: 0, ws_ypixel: 0 };
        // SAFETY: out-pointers to two ints; null name/termios; a valid winsize.
        let rc = unsafe { libc::openpty(&mut master, &mut slave, std::ptr::null_mut(), std::ptr::null(), &size) };
        assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
        // SAFETY: openpty returned two fresh descriptors that we now own.
        let (master, slave) = unsafe { (File::from_raw_fd(master), File::from_raw_fd(slave)) };
        let mut cmd = l.command(args);
        cmd.env("TERM", "xterm")
            .stdin(Stdio::from(slave.try_clone().unwrap()))
            .stdout(Stdio::from(slave.try_clone().unwrap()))
            .stderr(Stdio::from(slave));
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                libc::setsid();
                libc::ioctl(0, libc::TIOCSCTTY, 0);
                Ok(())
            });
        }
        let child = cmd.spawn().unwrap();
        drop(cmd); // closes our copies of the slave side
        let mut reader = master.try_clone().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            // Ends with EIO once the child and every slave descriptor are gone.
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                    return;
                }
            }
        });
        Pty { master, child, rx, screen: String::new(), pos: 0 }
    }

    fn send(&mut self, keys: &str) {
        self.master.write_all(keys.as_bytes()).unwrap();
    }

    /// Waits until the output after the last match contains `needle`.
    #[track_caller]
    fn expect(&mut self, needle: &str) {
        let end = Instant::now() + DEADLINE;
        loop {
            if let Some(i) = self.screen[self.pos..].find(needle) {
                self.pos += i + needle.len();
                return;
            }
            match self.rx.recv_timeout(end.saturating_duration_since(Instant::now())) {
                Ok(bytes) => self.screen.push_str(&String::from_utf8_lossy(&bytes)),
                Err(_) => panic!("no {needle:?} on the terminal; it shows:\n{}", self.screen),
            }
        }
    }

    fn finish(mut self) {
        assert!(wait_exit(&mut self.child).success(), "shell exit status; screen:\n{}", self.screen);
    }
}

#[test]
fn terminal_shell_prompt_completion_and_history() {
    let l = Lattice::init();
    let mut pty = Pty::spawn(&l, &[]);
    pty.expect("lattice:default> ");
    pty.send("put greeting hello\r");
    pty.expect("ok");
    pty.expect("lattice:default> ");
    pty.send("get greeting\r");
    pty.expect("hello");
    // Tab completes a command name: "create-st" + Tab -> "create-store".
    pty.send("create-st\t");
    pty.expect("create-store");
    pty.send(" photos\r");
    pty.expect("created store photos");
    pty.send("use photos\r");
    pty.expect("lattice:photos> ");
    // Another process sees the shell as the owner and is forwarded to it.
    let status = l.run(&["--json", "status"]).ok().json();
    assert_eq!(status["current_store"], "photos");
    assert_eq!(status["daemon"], true);
    pty.send("\x04"); // Ctrl-D
    pty.finish();
    assert!(!l.socket().exists(), "the shell removes its socket");
    let history = std::fs::read_to_string(l.dir.join("history")).unwrap();
    assert!(history.contains("put greeting hello") && history.contains("use photos"), "{history}");

    // History survives a restart: Up recalls the last line.
    let mut pty = Pty::spawn(&l, &[]);
    pty.expect("lattice:photos> ");
    pty.send("\x1b[A");
    pty.expect("use photos");
    pty.send("\x15"); // Ctrl-U clears the line
    pty.send("help\r");
    pty.expect("list-stores");
    pty.expect("lattice:photos> ");
    pty.send("quit\r");
    pty.finish();
}

#[test]
fn second_terminal_shell_forwards_to_the_first() {
    let l = Lattice::init();
    let mut first = Pty::spawn(&l, &[]);
    first.expect("lattice:default> ");
    let mut second = Pty::spawn(&l, &[]);
    second.expect("lattice:default> ");
    second.send("put from second\r");
    second.expect("ok");
    first.send("get from\r");
    first.expect("second");
    first.send("create-store other\r");
    first.expect("created store other");
    first.send("use other\r");
    first.expect("lattice:other> ");
    // The prompt follows the owner's current store.
    second.send("\r");
    second.expect("lattice:other> ");
    second.send("exit\r");
    second.finish();
    first.send("exit\r");
    first.finish();
}

/// On a terminal a raw `get` value ends with a newline (a pipe gets the exact bytes instead).
#[test]
fn one_shot_get_on_a_terminal_ends_the_line() {
    let l = Lattice::init();
    l.run(&["put", "a", "1"]).ok();
    let mut pty = Pty::spawn(&l, &["get", "a"]);
    pty.expect("1\r\n");
    pty.finish();
    assert_eq!(l.run(&["get", "a"]).ok().stdout, b"1");
}
