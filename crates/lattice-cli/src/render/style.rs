//! Colour for people: plain ANSI SGR codes, used only when the output goes to a terminal and
//! `NO_COLOR` is unset or empty (no-color.org). Whether to colour is decided once, where a
//! command is issued (a forwarded command runs in the daemon, whose stdout is not the user's):
//! the issuer's answer travels in `RunOptions::color`, and rendering is given a [`Palette`].

use std::io::IsTerminal;

const BOLD: &str = "1";
const RED: &str = "31";
const GREEN: &str = "32";
const YELLOW: &str = "33";
const RESET: &str = "\x1b[0m";

/// True when the user asked for no colour: `NO_COLOR` present and not empty.
pub fn no_color() -> bool {
    std::env::var_os("NO_COLOR").is_some_and(|value| !value.is_empty())
}

/// Whether this process's stdout gets colour.
pub fn stdout_color() -> bool {
    std::io::stdout().is_terminal() && !no_color()
}

/// Whether this process's stderr gets colour (error lines, tracing).
pub fn stderr_color() -> bool {
    std::io::stderr().is_terminal() && !no_color()
}

/// Paints text, or leaves it as it is when colour is off.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Palette {
    color: bool,
}

impl Palette {
    pub fn new(color: bool) -> Palette {
        Palette { color }
    }

    /// Table headers.
    pub fn bold(self, text: &str) -> String {
        self.paint(BOLD, text)
    }

    /// Something wrong: a removed or equivocating node, `error:`.
    pub fn red(self, text: &str) -> String {
        self.paint(RED, text)
    }

    /// Something well: an active node, the winning head.
    pub fn green(self, text: &str) -> String {
        self.paint(GREEN, text)
    }

    /// Something to look at: an invited node, a conflict.
    pub fn yellow(self, text: &str) -> String {
        self.paint(YELLOW, text)
    }

    /// A node's standing as `peers` and `status` show it (`active`, `invited`, `removed`, with
    /// any equivocation after it).
    pub fn member_status(self, status: &str) -> String {
        if status.contains("equivocated") || status.starts_with("removed") {
            self.red(status)
        } else if status.starts_with("active") {
            self.green(status)
        } else if status.starts_with("invited") {
            self.yellow(status)
        } else {
            status.to_string()
        }
    }

    fn paint(self, sgr: &str, text: &str) -> String {
        if self.color && !text.is_empty() { format!("\x1b[{sgr}m{text}{RESET}") } else { text.to_string() }
    }
}

/// A line for stderr as printed where the user sees it: a leading `error:` in red, `warning:`
/// in yellow. Lines sent over the control socket stay plain; the client paints them.
pub fn stderr_line(line: &str, palette: Palette) -> String {
    for (prefix, paint) in [("error:", Palette::red as fn(Palette, &str) -> String), ("warning:", Palette::yellow)] {
        if let Some(rest) = line.strip_prefix(prefix) {
            return format!("{}{rest}", paint(palette, prefix));
        }
    }
    line.to_string()
}

/// Prints one line to this process's stderr, painted if stderr is a terminal.
pub fn eprint_line(line: &str) {
    eprintln!("{}", stderr_line(line, Palette::new(stderr_color())));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_is_plain_and_on_is_painted() {
        let (off, on) = (Palette::new(false), Palette::new(true));
        assert_eq!(off.bold("NAME"), "NAME");
        assert_eq!(off.member_status("removed"), "removed");
        assert_eq!(on.bold("NAME"), "\x1b[1mNAME\x1b[0m");
        assert_eq!(on.member_status("active"), "\x1b[32mactive\x1b[0m");
        assert_eq!(
            on.member_status("active, equivocated in store s at seq 3"),
            on.red("active, equivocated in store s at seq 3")
        );
        assert_eq!(on.member_status("invited"), on.yellow("invited"));
        assert_eq!(on.member_status("unknown"), "unknown");
        assert_eq!(on.red(""), "", "nothing to paint");
    }

    #[test]
    fn only_the_prefix_of_an_error_line_is_painted() {
        assert_eq!(stderr_line("error: no such store", Palette::new(false)), "error: no such store");
        assert_eq!(stderr_line("error: no such store", Palette::new(true)), "\x1b[31merror:\x1b[0m no such store");
        assert_eq!(stderr_line("warning: held", Palette::new(true)), "\x1b[33mwarning:\x1b[0m held");
        assert_eq!(stderr_line("not found", Palette::new(true)), "not found");
    }
}
