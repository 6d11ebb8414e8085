//! The interactive shell: `lattice` with no command.
//!
//! Lines are split with [`crate::words::split`] and parsed by the same clap model as argv
//! ([`crate::cli::parse_words`]), so a shell line and a one-shot command are the same thing.
//! With a terminal: rustyline, history in `DATA_DIR/history`, completion of command names and the
//! current store in the prompt. Without one (stdin is a pipe): lines are read and run with no
//! prompt, and the exit code is the last command's.
//!
//! The shell owns the data dir when it can (and then serves `lattice.sock`, so one-shot commands
//! and a second shell are forwarded to it); otherwise it forwards each line to the owner.

use std::io::{BufRead, IsTerminal};
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::Duration;

use clap::CommandFactory;
use clap::error::ErrorKind as ClapErrorKind;
use lattice_node::DataDir;
use rustyline::completion::Completer;
use rustyline::error::ReadlineError;
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::history::FileHistory;
use rustyline::validate::Validator;
use rustyline::{CompletionType, Config, Context, Editor, Helper};
use tokio::net::UnixStream;
use tokio::runtime::Runtime;

use crate::cli::{Cli, command_names, parse_words};
use crate::commands::{self, RunOptions};
use crate::daemon::{self, Claim, ControlServer, Owner};
use crate::engine::{Engine, Role};
use crate::failure::exit_code;
use crate::render::style;
use crate::words;

/// Who runs the shell's commands.
enum Backend {
    /// This shell owns the data dir and serves the control socket.
    Local { engine: Arc<Engine>, server: ControlServer },
    /// Another process owns it; every line is forwarded.
    Remote(Owner),
}

struct Session<'rt> {
    rt: &'rt Runtime,
    dir: DataDir,
    backend: Backend,
    /// `--store` / `--json` given when the shell started: defaults for every line.
    default_store: Option<String>,
    default_json: bool,
}

/// Runs the shell until quit/exit/EOF. Returns the process exit code.
pub fn run(rt: &Runtime, cli: Cli) -> i32 {
    let dir = match DataDir::resolve(cli.data_dir.as_deref()).and_then(|dir| dir.create().map(|_| dir)) {
        Ok(dir) => dir,
        Err(e) => {
            style::eprint_line(&format!("error: {e}"));
            return exit_code(e.kind());
        }
    };
    let backend = match rt.block_on(daemon::claim(&dir)) {
        Ok(Claim::Own(lock)) => {
            let engine = Engine::new(dir.clone(), lock, Role::Shell);
            if dir.is_initialised()
                && let Err(e) = rt.block_on(engine.node())
            {
                style::eprint_line(&format!("error: {e}"));
                return exit_code(e.kind());
            }
            // An interactive shell is a node on the network, like `serve` (a piped one starts
            // the network only for the commands that need it).
            if dir.is_initialised()
                && std::io::stdin().is_terminal()
                && let Err(e) = rt.block_on(engine.network())
            {
                style::eprint_line(&format!("warning: not on the network: {e}"));
            }
            match rt.block_on(async { ControlServer::start(engine.clone()) }) {
                Ok(server) => Backend::Local { engine, server },
                Err(e) => {
                    style::eprint_line(&format!("error: {e}"));
                    return 1;
                }
            }
        }
        Ok(Claim::Forward(_probe, pid)) => Backend::Remote(Owner { pid, timeout: Duration::from_secs(cli.timeout) }),
        Err(e) => {
            style::eprint_line(&format!("error: {e}"));
            return exit_code(e.kind());
        }
    };
    let mut session = Session { rt, dir, backend, default_store: cli.store, default_json: cli.json };
    let code = if std::io::stdin().is_terminal() { session.interactive() } else { session.piped() };
    if let Backend::Local { engine, server } = session.backend {
        rt.block_on(server.stop());
        if let Err(e) = rt.block_on(engine.shutdown()) {
            style::eprint_line(&format!("error: {e}"));
            return 1;
        }
    }
    code
}

impl Session<'_> {
    fn piped(&mut self) -> i32 {
        let mut last = 0;
        for line in std::io::stdin().lock().split(b'\n') {
            let line = match line {
                Ok(line) => line,
                Err(e) => {
                    style::eprint_line(&format!("error: cannot read stdin: {e}"));
                    return 1;
                }
            };
            let line = String::from_utf8_lossy(&line);
            match self.execute(line.trim_end_matches('\r')) {
                Some(code) => last = code,
                None => break,
            }
        }
        last
    }

    fn interactive(&mut self) -> i32 {
        let config = Config::builder()
            .auto_add_history(false)
            .history_ignore_dups(true)
            .map(|b| b.history_ignore_space(true).completion_type(CompletionType::List).build());
        let config = match config {
            Ok(config) => config,
            Err(e) => {
                style::eprint_line(&format!("error: {e}"));
                return 1;
            }
        };
        let mut editor: Editor<ShellHelper, FileHistory> = match Editor::with_config(config) {
            Ok(editor) => editor,
            Err(e) => {
                style::eprint_line(&format!("error: cannot start the line editor: {e}"));
                return 1;
            }
        };
        editor.set_helper(Some(ShellHelper { names: command_names() }));
        let history = self.dir.history();
        if history.exists()
            && let Err(e) = editor.load_history(&history)
        {
            tracing::warn!(path = %history.display(), error = %e, "cannot load shell history");
        }
        println!("lattice {} shell: `help` lists commands, `quit` or Ctrl-D leaves", env!("CARGO_PKG_VERSION"));
        loop {
            let prompt = match self.prompt_store() {
                Some(store) => format!("lattice:{store}> "),
                None => "lattice> ".to_string(),
            };
            match editor.readline(&prompt) {
                Ok(line) => {
                    if !line.trim().is_empty() && editor.add_history_entry(line.as_str()).unwrap_or(false) {
                        save_history(&mut editor, &history);
                    }
                    if self.execute(&line).is_none() {
                        return 0;
                    }
                }
                Err(ReadlineError::Interrupted) => continue,
                Err(ReadlineError::Eof) => return 0,
                Err(e) => {
                    style::eprint_line(&format!("error: {e}"));
                    return 1;
                }
            }
        }
    }

    fn prompt_store(&self) -> Option<String> {
        match &self.backend {
            Backend::Local { engine, .. } => self.rt.block_on(engine.prompt_store()),
            Backend::Remote(owner) => self.rt.block_on(daemon::remote_prompt(&self.dir, owner.timeout)),
        }
    }

    /// Runs one line. `None` means leave the shell; otherwise the line's exit code.
    fn execute(&mut self, line: &str) -> Option<i32> {
        let mut words = match words::split(line) {
            Ok(words) => words,
            Err(e) => {
                style::eprint_line(&format!("error: {e}"));
                return Some(2);
            }
        };
        match words.first().map(String::as_str) {
            None => return Some(0),
            Some("quit" | "exit") if words.len() == 1 => return None,
            Some("help") if words.len() == 1 => {
                print_help();
                return Some(0);
            }
            _ => {}
        }
        if self.default_json && !words.iter().any(|w| w == "--json") {
            words.push("--json".into());
        }
        if let Some(store) = &self.default_store
            && !words.iter().any(|w| w == "--store" || w.starts_with("--store="))
        {
            words.extend(["--store".to_string(), store.clone()]);
        }
        let cli = match parse_words(&words) {
            Ok(cli) => cli,
            Err(e) => return Some(report_clap(e)),
        };
        if cli.data_dir.is_some() {
            style::eprint_line(
                "error: --data-dir cannot change inside the shell; start another shell for another data dir",
            );
            return Some(2);
        }
        let input = match cli.command.as_ref().map(|c| commands::read_input(c, false)).transpose() {
            Ok(input) => input.flatten(),
            Err(failure) => {
                style::eprint_line(&failure.line());
                return Some(failure.code());
            }
        };
        let opts = RunOptions { terminal: true, local: true, stop: None, color: style::stdout_color() };
        Some(match &self.backend {
            Backend::Local { engine, .. } => self.rt.block_on(daemon::run_here(engine, &cli, input, opts)),
            Backend::Remote(owner) => self.rt.block_on(async {
                match UnixStream::connect(self.dir.socket()).await {
                    Ok(stream) => {
                        daemon::forward(stream, *owner, words.into_iter().map(Into::into).collect(), input, true).await
                    }
                    Err(e) => {
                        style::eprint_line(&format!(
                            "error: the lattice process that owned {} has gone ({e}); restart the shell",
                            self.dir.path().display()
                        ));
                        1
                    }
                }
            }),
        })
    }
}

/// Prints a clap outcome the shell way: help/version to stdout (exit 0), errors without the
/// "try --help" trailer (exit 2).
fn report_clap(e: clap::Error) -> i32 {
    let text = e.render().to_string();
    match e.kind() {
        ClapErrorKind::DisplayHelp | ClapErrorKind::DisplayVersion => {
            print!("{text}");
            0
        }
        _ => {
            let text: Vec<&str> = text.lines().filter(|l| !l.starts_with("For more information")).collect();
            style::eprint_line(text.join("\n").trim_end());
            2
        }
    }
}

fn print_help() {
    let help = Cli::command().render_help().to_string();
    // The shell's own words, after clap's list of commands.
    println!("{}", help.trim_end());
    println!("\nIn the shell: `help COMMAND` for a command's options; quit, exit or Ctrl-D to leave.");
}

fn save_history(editor: &mut Editor<ShellHelper, FileHistory>, path: &std::path::Path) {
    if let Err(e) = editor.append_history(path) {
        tracing::warn!(path = %path.display(), error = %e, "cannot save shell history");
        return;
    }
    // Lines may hold values: keep the file private like the rest of the data dir.
    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
}

/// Completes command names in the first word of a line.
struct ShellHelper {
    names: Vec<String>,
}

impl Completer for ShellHelper {
    type Candidate = String;

    fn complete(&self, line: &str, pos: usize, _ctx: &Context<'_>) -> rustyline::Result<(usize, Vec<String>)> {
        let before = &line[..pos];
        let start = before.len() - before.trim_start().len();
        let word = &before[start..];
        if word.contains(char::is_whitespace) {
            return Ok((pos, Vec::new()));
        }
        Ok((start, complete_command(&self.names, word)))
    }
}

/// Command names starting with `prefix`.
fn complete_command(names: &[String], prefix: &str) -> Vec<String> {
    names.iter().filter(|n| n.starts_with(prefix)).cloned().collect()
}

impl Hinter for ShellHelper {
    type Hint = String;
}
impl Highlighter for ShellHelper {}
impl Validator for ShellHelper {}
impl Helper for ShellHelper {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completes_command_names() {
        let names = command_names();
        assert_eq!(complete_command(&names, "cre"), ["create-store", "create-token"]);
        assert_eq!(complete_command(&names, "create-s"), ["create-store"]);
        let l = complete_command(&names, "li");
        assert_eq!(l, ["list", "list-stores", "list-tokens"]);
        assert!(complete_command(&names, "zz").is_empty());
    }
}
