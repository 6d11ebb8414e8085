//! `lattice completions SHELL` and `lattice man`: generated from the command model, printed or
//! written where asked, and never a data dir created for them.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};

use common::{Run, bin, isolate};

/// Runs `lattice ARGS` with `LATTICE_DATA_DIR` pointing at `data` (which need not exist).
fn lattice(home: &Path, data: &Path, args: &[&str]) -> Run {
    let mut cmd = Command::new(bin());
    cmd.args(args).stdin(Stdio::null());
    isolate(&mut cmd, home);
    cmd.env("LATTICE_DATA_DIR", data);
    let out = cmd.output().unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: out.stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[test]
fn completion_scripts_for_each_shell_without_a_data_dir() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("no-such-data-dir");
    let script = |shell: &str| lattice(tmp.path(), &data, &["completions", shell]).ok().out();

    let bash = script("bash");
    assert!(bash.contains("complete") && bash.contains("lattice"), "{bash}");
    assert!(script("zsh").starts_with("#compdef lattice"));
    assert!(script("fish").contains("complete -c lattice"));
    for shell in ["elvish", "powershell"] {
        assert!(script(shell).contains("lattice"), "{shell}");
    }
    let unknown = lattice(tmp.path(), &data, &["completions", "tcsh"]);
    assert_eq!(unknown.code, 2, "{}", unknown.stderr);
    assert!(unknown.stderr.contains("tcsh"), "{}", unknown.stderr);
    assert!(!data.exists(), "no data dir is created");
}

#[test]
fn man_page_to_stdout_or_a_page_per_command_into_a_dir() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("no-such-data-dir");
    let page = lattice(tmp.path(), &data, &["man"]).ok().out();
    assert!(page.contains(".TH") && page.contains(".SH NAME"), "{page}");

    let dir = tmp.path().join("share/man/man1");
    let written = lattice(tmp.path(), &data, &["man", "--dir", dir.to_str().unwrap()]).ok().out();
    for page in ["lattice.1", "lattice-put.1", "lattice-completions.1"] {
        let path = dir.join(page);
        assert!(path.is_file(), "{page} in {written}");
        assert!(written.lines().any(|l| Path::new(l) == path), "{page} listed: {written}");
    }
    let put = std::fs::read_to_string(dir.join("lattice-put.1")).unwrap();
    assert!(put.contains(".TH") && put.contains("lattice\\-put"), "{put}");
    assert!(!data.exists(), "no data dir is created");
}

#[test]
fn the_shell_sends_them_to_the_command_line() {
    let l = common::Lattice::init();
    let run = l.run_with_stdin(&[], b"completions bash\nman\n");
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert_eq!(run.stderr.lines().count(), 2, "{}", run.stderr);
    assert!(run.stderr.lines().all(|l| l.starts_with("error: run `lattice ")), "{}", run.stderr);
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
}
