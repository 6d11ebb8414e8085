//! An error as the user sees it: one line on stderr and an exit code (docs/design.md, CLI).

use lattice_node::{ErrorKind, NodeError};

/// A command's failure: what kind of outcome it is, and its message.
#[derive(Debug)]
pub struct Failure {
    pub kind: ErrorKind,
    pub message: String,
}

impl Failure {
    /// A command given wrongly (exit 2).
    pub fn usage(message: impl Into<String>) -> Failure {
        Failure { kind: ErrorKind::Usage, message: message.into() }
    }

    /// Any other failure (exit 1).
    pub fn other(message: impl Into<String>) -> Failure {
        Failure { kind: ErrorKind::Other, message: message.into() }
    }

    /// The process exit code of this failure, see [`exit_code`].
    pub fn code(&self) -> i32 {
        exit_code(self.kind)
    }

    /// `error: ...` on one line: a multi-line message is folded.
    pub fn line(&self) -> String {
        let parts: Vec<&str> = self.message.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
        format!("error: {}", parts.join(" "))
    }
}

/// 1 for not-found outcomes and failed preconditions, 2 for usage errors, 1 otherwise.
pub fn exit_code(kind: ErrorKind) -> i32 {
    match kind {
        ErrorKind::NotFound | ErrorKind::Precondition | ErrorKind::Other => 1,
        ErrorKind::Usage => 2,
    }
}

/// Prints a node error as the one line a user sees (`error: ...`) and returns its exit code.
pub fn report(e: &NodeError) -> i32 {
    crate::render::style::eprint_line(&format!("error: {e}"));
    exit_code(e.kind())
}

impl From<NodeError> for Failure {
    fn from(e: NodeError) -> Failure {
        Failure { kind: e.kind(), message: e.to_string() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes() {
        assert_eq!(exit_code(ErrorKind::NotFound), 1);
        assert_eq!(exit_code(ErrorKind::Usage), 2);
        assert_eq!(exit_code(ErrorKind::Other), 1);
    }

    #[test]
    fn a_write_behind_a_peer_is_one_line_exit_1() {
        let e = NodeError::Behind { store: "default".into(), peer: None, ours: 3, theirs: 5 };
        let failure = Failure::from(e);
        assert_eq!(failure.code(), 1);
        assert_eq!(
            failure.line(),
            "error: this node's log in store default is behind what a peer holds of it (seq 3 < 5); \
             catching up — retry shortly"
        );
    }
}
