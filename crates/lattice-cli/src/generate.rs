//! `lattice completions SHELL` and `lattice man [--dir DIR]`: files generated from the clap
//! model ([`crate::cli::Cli`]), so they always match the commands. Neither touches a data dir.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::CommandFactory;
use clap_complete::Shell;

use crate::cli::Cli;
use crate::render::style;

/// Prints the completion script for `shell` to stdout; returns the exit code.
pub fn completions(shell: Shell) -> i32 {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "lattice", &mut script);
    write_stdout(&script)
}

/// Without `dir`: prints the `lattice.1` page (roff) to stdout. With it: writes `lattice.1` and a
/// page per command (`lattice-put.1`, ...) into `dir`, created if missing, and prints each path.
pub fn man(dir: Option<&Path>) -> i32 {
    let result = match dir {
        None => page().map(|page| write_stdout(&page)).map_err(|e| format!("cannot render the man page: {e}")),
        Some(dir) => write_pages(dir).map(|paths| {
            let listing: String = paths.iter().map(|p| format!("{}\n", p.display())).collect();
            write_stdout(listing.as_bytes())
        }),
    };
    result.unwrap_or_else(|e| {
        style::eprint_line(&format!("error: {e}"));
        1
    })
}

/// The top-level page, `lattice.1`.
fn page() -> std::io::Result<Vec<u8>> {
    let mut page = Vec::new();
    clap_mangen::Man::new(Cli::command()).render(&mut page)?;
    Ok(page)
}

/// Writes every page into `dir`; returns their paths, the top-level page first.
fn write_pages(dir: &Path) -> Result<Vec<PathBuf>, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    // Built, every subcommand knows its display name (`lattice-put`), which names its page;
    // `help` is clap's, not a command of its own.
    let mut command = Cli::command().disable_help_subcommand(true);
    command.build();
    let mut paths = Vec::new();
    write_tree(&command, dir, &mut paths)
        .map_err(|e| format!("cannot write a man page into {}: {e}", dir.display()))?;
    Ok(paths)
}

fn write_tree(command: &clap::Command, dir: &Path, paths: &mut Vec<PathBuf>) -> std::io::Result<()> {
    paths.push(clap_mangen::Man::new(command.clone()).generate_to(dir)?);
    for sub in command.get_subcommands().filter(|s| !s.is_hide_set()) {
        write_tree(sub, dir, paths)?;
    }
    Ok(())
}

/// Writes generated text to stdout; a closed pipe (`| head`) is not an error worth a message.
fn write_stdout(bytes: &[u8]) -> i32 {
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(bytes).and_then(|()| stdout.flush()) {
        Ok(()) => 0,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => 0,
        Err(e) => {
            style::eprint_line(&format!("error: cannot write to stdout: {e}"));
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_per_command() {
        let tmp = tempfile::tempdir().unwrap();
        let paths = write_pages(&tmp.path().join("man1")).unwrap();
        let names: Vec<String> = paths.iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
        assert_eq!(names[0], "lattice.1");
        for name in ["lattice-put.1", "lattice-completions.1", "lattice-man.1"] {
            assert!(names.contains(&name.to_string()), "{names:?}");
        }
        assert!(!names.contains(&"lattice-help.1".to_string()), "{names:?}");
        assert!(paths.iter().all(|p| p.exists()));
        let page = String::from_utf8(page().unwrap()).unwrap();
        assert!(page.contains(".TH") && page.contains(".SH NAME"), "{page}");
    }
}
