//! The command model: one clap parser for argv and for shell lines alike.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

/// Lattice: a local-first, peer-to-peer, replicated key-value store.
///
/// With no command, `lattice` starts the interactive shell (commands are the same, plus quit).
#[derive(Parser, Debug, Clone)]
#[command(name = "lattice", version, propagate_version = true, disable_help_subcommand = false)]
pub struct Cli {
    /// Data dir [default: $LATTICE_DATA_DIR, else the platform data dir]
    #[arg(long, global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// The store to act on, by name or uuid (`root` is the root store) [default: the current store]
    #[arg(long, global = true, value_name = "NAME|UUID")]
    pub store: Option<String>,
    /// Print one JSON document per command, for scripts
    #[arg(long, global = true)]
    pub json: bool,
    /// Give up on a `serve` or shell that owns the data dir once it has sent nothing for SECS
    /// (a busy owner keeps sending; one that is stopped or hung does not)
    #[arg(long, global = true, value_name = "SECS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout: u64,
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Where `serve --http` with no address serves the HTTP API (loopback: opt in to more).
pub const DEFAULT_HTTP_ADDR: &str = "127.0.0.1:7180";

#[derive(Subcommand, Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Create the identity, the root store and a store named "default"
    Init {
        /// This node's name in the mesh [default: the host name]
        #[arg(long)]
        name: Option<String>,
    },
    /// Node id, data dir, current store, per-store figures, daemon
    Status,
    /// Three nodes on 127.0.0.1, narrated: gossip, a conflict and its merge, catch-up, HTTP
    Demo {
        /// Keep the three data dirs in DIR (new or empty) instead of removing them at the end
        #[arg(long, value_name = "DIR")]
        keep: Option<PathBuf>,
    },
    /// Run the node in the foreground (owns the data dir; other commands are forwarded to it);
    /// initialises a data dir that has never been used
    Serve {
        /// Address for peer connections (UDP/QUIC) [default: 0.0.0.0:0, an ephemeral port]
        #[arg(long, value_name = "ADDR")]
        bind: Option<SocketAddr>,
        /// Serve the HTTP API: `--http` alone on 127.0.0.1:7180, or on ADDR; off unless given
        #[arg(long, value_name = "ADDR", num_args = 0..=1, default_missing_value = DEFAULT_HTTP_ADDR)]
        http: Option<SocketAddr>,
        /// Requests a second each HTTP token may make unless it has its own rate, e.g. 100/s
        #[arg(long, value_name = "N/s", default_value = "100/s")]
        http_rate: String,
        /// Requests a token may make at once above --http-rate, after being idle
        #[arg(long, value_name = "N", default_value_t = 200)]
        http_burst: u32,
        /// How peers are found: direct addresses only (none), or opt-in mdns / n0 (relays + DNS)
        #[arg(long, value_enum, default_value_t = Discovery::None)]
        discovery: Discovery,
    },
    /// Declare a new store in the mesh
    CreateStore {
        /// 1-64 letters, digits, '-', '_' or '.'
        name: String,
    },
    /// List the declared stores (never the root store)
    ListStores {
        /// Also list deleted stores, as "archived"
        #[arg(long)]
        all: bool,
    },
    /// Delete a store from the mesh; its local data moves to archive/
    DeleteStore {
        #[arg(value_name = "NAME|UUID")]
        store: String,
    },
    /// Make a store the current one
    Use {
        #[arg(value_name = "NAME|UUID")]
        store: String,
    },
    /// Write a value ("-" reads it from stdin, binary-safe)
    Put {
        #[arg(allow_hyphen_values = true)]
        key: OsString,
        #[arg(allow_hyphen_values = true)]
        value: OsString,
        /// Write only if the key's value is still the one written by entry HASH (`get -v`,
        /// `--json put`); else exit 1 "precondition failed"
        #[arg(long, value_name = "HASH", conflicts_with = "if_absent")]
        if_match: Option<String>,
        /// Write only if the key has no value; else exit 1 "precondition failed"
        #[arg(long)]
        if_absent: bool,
    },
    /// Write several operations as one atomic entry, or nothing: JSON lines from FILE or stdin
    /// ({"op":"put","key":K,"value":V}, {"op":"delete","key":K}, {"op":"incr","key":K,"by":N},
    /// {"op":"sadd"|"srem","key":K,"member":M}, each with an optional "if_match":HASH or
    /// "if_absent":true)
    Batch {
        #[arg(value_name = "FILE|-", allow_hyphen_values = true)]
        file: Option<PathBuf>,
    },
    /// Read a value ("not found" and exit 1 if the key has none)
    Get {
        #[arg(allow_hyphen_values = true)]
        key: OsString,
        /// Show every head with its author, HLC and hash
        #[arg(short, long, conflicts_with = "at")]
        verbose: bool,
        /// The value as of then (time travel): an RFC 3339 time with its offset
        /// (2026-12-03T17:00:00Z) or an HLC as `history` shows it
        #[arg(long, value_name = "TIME|HLC")]
        at: Option<String>,
    },
    /// Every version of KEY this node holds, oldest first: time, HLC, author, hash, what it
    /// wrote, and which are heads now
    History {
        #[arg(allow_hyphen_values = true)]
        key: OsString,
    },
    /// Add N (default 1) to the counter at KEY; prints its value after the write
    Incr {
        #[arg(allow_hyphen_values = true)]
        key: OsString,
        #[arg(default_value_t = 1, allow_hyphen_values = true)]
        by: i64,
    },
    /// Subtract N (default 1) from the counter at KEY; prints its value after the write
    Decr {
        #[arg(allow_hyphen_values = true)]
        key: OsString,
        #[arg(default_value_t = 1, allow_hyphen_values = true)]
        by: i64,
    },
    /// Add members to the set at KEY (one entry)
    Sadd {
        #[arg(allow_hyphen_values = true)]
        key: OsString,
        #[arg(required = true, allow_hyphen_values = true)]
        members: Vec<OsString>,
    },
    /// Remove members from the set at KEY: the adds this node has seen; a concurrent add survives
    Srem {
        #[arg(allow_hyphen_values = true)]
        key: OsString,
        #[arg(required = true, allow_hyphen_values = true)]
        members: Vec<OsString>,
    },
    /// The members of the set at KEY, one a line, in byte order
    Smembers {
        #[arg(allow_hyphen_values = true)]
        key: OsString,
    },
    /// A Merkle proof of KEY (its value and heads, or its absence) against this node's signed
    /// root, as JSON: anyone can check it with verify-proof
    Proof {
        #[arg(allow_hyphen_values = true)]
        key: OsString,
    },
    /// Check a proof made by `proof` (exit 0 valid, 1 invalid with the reason): its hashes, its
    /// root's signature, and that the signer is a member of this mesh (or is --node)
    VerifyProof {
        #[arg(value_name = "FILE|-", allow_hyphen_values = true)]
        file: PathBuf,
        /// Trust a root signed by this node only; checks offline, without a data dir
        #[arg(long, value_name = "PUBKEY")]
        node: Option<String>,
    },
    /// Delete a key
    Delete {
        #[arg(allow_hyphen_values = true)]
        key: OsString,
    },
    /// List keys and values, in key order
    List {
        #[arg(allow_hyphen_values = true)]
        prefix: Option<OsString>,
    },
    /// Print put/delete events for keys matching a regex until interrupted
    Watch {
        #[arg(allow_hyphen_values = true, value_name = "REGEX")]
        pattern: String,
    },
    /// Invite a node into the mesh (it may then `join`); admins only
    Invite {
        #[arg(value_name = "PUBKEY")]
        pubkey: String,
        /// Invite it as an admin (it may then change the control plane too)
        #[arg(long)]
        admin: bool,
    },
    /// Make a member an admin; admins only
    GrantAdmin {
        #[arg(value_name = "PUBKEY")]
        pubkey: String,
    },
    /// Make an admin a plain member again; admins only
    RevokeAdmin {
        #[arg(value_name = "PUBKEY")]
        pubkey: String,
    },
    /// List the mesh's nodes: status, last seen, last sync
    Peers,
    /// Remove a node from the mesh: what it wrote so far stays, what it writes after is refused; admins only
    Remove {
        #[arg(value_name = "PUBKEY")]
        pubkey: String,
    },
    /// Join the mesh of a node that invited this one (from a fresh data dir)
    Join {
        #[arg(value_name = "NODE_ID[@HOST:PORT]")]
        peer: String,
        /// This node's name in the mesh [default: the host name]
        #[arg(long)]
        name: Option<String>,
    },
    /// Sync once: with one peer, or with every member of the mesh
    Sync {
        #[arg(value_name = "NODE_ID")]
        peer: Option<String>,
    },
    /// Create an HTTP access token for a store; prints ID:SECRET (the secret is shown only once)
    CreateToken {
        /// The store it grants access to (name or uuid)
        store: String,
        /// A label for people
        #[arg(long)]
        name: Option<String>,
        /// r (read), w (write) or rw
        #[arg(long, default_value = "rw")]
        permissions: String,
        /// Lifetime, e.g. 30d, 12h, 45m [default: never expires]
        #[arg(long, value_name = "DURATION")]
        expires: Option<String>,
        /// The token's own HTTP request rate, e.g. 10/s [default: the server's --http-rate]
        #[arg(long, value_name = "N/s")]
        rate: Option<String>,
    },
    /// List the HTTP access tokens of the mesh (never their secrets)
    ListTokens,
    /// Revoke an HTTP access token
    RevokeToken { id: String },
    /// Print a shell completion script (bash, zsh, fish, elvish or powershell) to stdout
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff) to stdout, or write one page per command into DIR
    Man {
        /// Write lattice.1 and a page per command (lattice-put.1, ...) into DIR, e.g.
        /// ~/.local/share/man/man1
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}

/// `--discovery`: how peers are found (docs/design.md, Networking modes).
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Discovery {
    /// Direct addresses only
    None,
    /// Local network (mDNS)
    Mdns,
    /// Relays and DNS discovery
    N0,
}

/// The names the shell completes (subcommands plus the shell's own words).
pub fn command_names() -> Vec<String> {
    use clap::CommandFactory;
    let mut names: Vec<String> = Cli::command().get_subcommands().map(|c| c.get_name().to_string()).collect();
    names.extend(["help", "quit", "exit"].map(String::from));
    names.sort();
    names.dedup();
    names
}

/// Parses one command from words (argv without the program name, or a split shell line).
pub fn parse_words<I, S>(words: I) -> Result<Cli, clap::Error>
where
    I: IntoIterator<Item = S>,
    S: Into<OsString> + Clone,
{
    Cli::try_parse_from(std::iter::once(OsString::from("lattice")).chain(words.into_iter().map(Into::into)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn globals_anywhere_and_hyphen_values() {
        let cli = parse_words(["put", "k", "-5", "--store", "s", "--json"]).unwrap();
        let put = |value: &str| Command::Put { key: "k".into(), value: value.into(), if_match: None, if_absent: false };
        assert_eq!(cli.command, Some(put("-5")));
        assert_eq!(cli.store.as_deref(), Some("s"));
        assert!(cli.json);
        let cli = parse_words(["put", "k", "-"]).unwrap();
        assert_eq!(cli.command, Some(put("-")));
        assert!(parse_words(["put", "k", "v", "--if-absent", "--if-match", "ab"]).is_err(), "one condition");
        assert!(parse_words(["put", "k"]).is_err());
        assert!(parse_words(["serve", "--bind", "not-an-addr"]).is_err());
        let http = |words: &[&str]| match parse_words(words).unwrap().command {
            Some(Command::Serve { http, .. }) => http.map(|a| a.to_string()),
            other => panic!("{other:?}"),
        };
        assert_eq!(http(&["serve"]), None);
        assert_eq!(http(&["serve", "--http"]).as_deref(), Some(DEFAULT_HTTP_ADDR));
        assert_eq!(http(&["serve", "--http", "127.0.0.1:9"]).as_deref(), Some("127.0.0.1:9"));
        assert_eq!(http(&["serve", "--http", "--bind", "127.0.0.1:0"]).as_deref(), Some(DEFAULT_HTTP_ADDR));
        assert_eq!(parse_words(Vec::<String>::new()).unwrap().command, None);
        let completions = parse_words(["completions", "zsh"]).unwrap().command;
        assert_eq!(completions, Some(Command::Completions { shell: clap_complete::Shell::Zsh }));
        assert!(parse_words(["completions", "tcsh"]).is_err());
        assert_eq!(parse_words(["man"]).unwrap().command, Some(Command::Man { dir: None }));
    }

    #[test]
    fn names_include_commands_and_shell_words() {
        let names = command_names();
        for n in ["init", "put", "get", "list-stores", "watch", "quit", "exit", "help"] {
            assert!(names.contains(&n.to_string()), "{n}");
        }
    }
}
