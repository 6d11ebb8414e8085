//! Running one parsed command against the [`Engine`] of this process, writing to an [`Out`].
//!
//! The same [`run`] serves a one-shot command, a shell line and a request forwarded over the
//! control socket, so all three behave identically. Each command is a function of its group's
//! file; it gathers what it shows from the node and hands it to `crate::render`.
//!
//! - `node`: init, status (and `serve`, which only the command line may start).
//! - `stores`: create-store, list-stores, delete-store, use.
//! - `keys`: put, batch, get, delete, list, watch.
//! - `kinds`: incr, decr, sadd, srem, smembers (counters and sets).
//! - `mesh`: invite, remove, peers, join, sync.
//! - `tokens`: create-token, list-tokens, revoke-token.

mod keys;
mod kinds;
mod mesh;
mod node;
mod proofs;
mod stores;
mod tokens;

pub use proofs::verify_offline;

use std::sync::Arc;

use lattice_core::AuthorId;
use lattice_node::{Node, Role, StoreRef};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::cli::{Cli, Command};
use crate::engine::Engine;
use crate::failure::Failure;
use crate::protocol::Out;
use crate::render::style::Palette;

/// How a command was issued.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// Output is read line by line (a shell, or a terminal): a raw `get` value gets a final
    /// newline if it lacks one. Off for pipes and files, so `get k > file` is byte-exact.
    pub terminal: bool,
    /// Issued in this process (not over the socket): Ctrl-C stops a `watch`, and a long sync
    /// may draw a progress bar.
    pub local: bool,
    /// Cancelled when whoever issued the command stops (the control server shutting down):
    /// a `watch` then ends.
    pub stop: Option<CancellationToken>,
    /// Text may be coloured: decided where the command was issued (that process's stdout is a
    /// terminal and `NO_COLOR` is unset), not where it runs.
    pub color: bool,
}

/// What `command` reads besides its arguments, read where it was issued (a forwarded command
/// runs in another process, with another working directory and no stdin): `put KEY -` and
/// `batch` / `batch -` read stdin, `batch FILE` reads FILE. Without `stdin` (a shell line) the
/// command itself refuses "-".
pub fn read_input(command: &Command, stdin: bool) -> Result<Option<Vec<u8>>, Failure> {
    let from_stdin = || {
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin().lock(), &mut buf)
            .map_err(|e| Failure::other(format!("cannot read stdin: {e}")))?;
        Ok(Some(buf))
    };
    match command {
        Command::Put { value, .. } if value == "-" && stdin => from_stdin(),
        Command::VerifyProof { file, .. } if file.as_os_str() != "-" => {
            std::fs::read(file).map(Some).map_err(|e| Failure::other(format!("cannot read {}: {e}", file.display())))
        }
        Command::VerifyProof { .. } if stdin => from_stdin(),
        Command::Batch { file } => match file {
            Some(path) if path.as_os_str() != "-" => std::fs::read(path)
                .map(Some)
                .map_err(|e| Failure::other(format!("cannot read {}: {e}", path.display()))),
            _ if stdin => from_stdin(),
            _ => Ok(None),
        },
        _ => Ok(None),
    }
}

/// Runs one command; returns its exit code. Output and errors go to `out`.
pub async fn run(engine: &Engine, cli: &Cli, stdin: Option<Vec<u8>>, opts: RunOptions, out: &Out) -> i32 {
    let Some(command) = &cli.command else {
        out.err("error: no command given (try `help`)");
        return 2;
    };
    let ctx = Context { engine, json: cli.json, store: cli.store.as_deref(), opts, out };
    match dispatch(&ctx, command, stdin).await {
        Ok(code) => code,
        Err(failure) => {
            out.err(failure.line());
            failure.code()
        }
    }
}

async fn dispatch(ctx: &Context<'_>, command: &Command, stdin: Option<Vec<u8>>) -> Result<i32, Failure> {
    match command {
        Command::Init { name } => node::init(ctx, name.clone()).await,
        Command::Serve { .. } | Command::Demo { .. } => Err(node::serve_refused(ctx)),
        Command::Status => node::status(ctx).await,
        Command::CreateStore { name } => stores::create(ctx, name).await,
        Command::ListStores { all } => stores::list(ctx, *all).await,
        Command::DeleteStore { store } => stores::delete(ctx, store).await,
        Command::Use { store } => stores::use_store(ctx, store).await,
        Command::Put { key, value, if_match, if_absent } => {
            keys::put(ctx, key, value, (if_match.as_deref(), *if_absent), stdin).await
        }
        Command::Batch { .. } => keys::batch(ctx, stdin).await,
        Command::Get { key, at: Some(at), .. } => keys::get_at(ctx, key, at).await,
        Command::Get { key, verbose, at: None } => keys::get(ctx, key, *verbose).await,
        Command::History { key } => keys::history(ctx, key).await,
        Command::Delete { key } => keys::delete(ctx, key).await,
        Command::Incr { key, by } => kinds::incr(ctx, key, Some(*by)).await,
        Command::Decr { key, by } => kinds::incr(ctx, key, by.checked_neg()).await,
        Command::Sadd { key, members } => kinds::sadd(ctx, key, members, true).await,
        Command::Srem { key, members } => kinds::sadd(ctx, key, members, false).await,
        Command::Smembers { key } => kinds::smembers(ctx, key).await,
        Command::Proof { key } => proofs::prove(ctx, key).await,
        Command::VerifyProof { node, .. } => proofs::verify(ctx, stdin, node.as_deref()).await,
        Command::List { prefix } => keys::list(ctx, prefix.as_deref()).await,
        Command::Watch { pattern } => keys::watch(ctx, pattern).await,
        Command::Invite { pubkey, admin } => mesh::invite(ctx, pubkey, *admin).await,
        Command::GrantAdmin { pubkey } => mesh::set_role(ctx, pubkey, Role::Admin).await,
        Command::RevokeAdmin { pubkey } => mesh::set_role(ctx, pubkey, Role::Member).await,
        Command::Remove { pubkey } => mesh::remove(ctx, pubkey).await,
        Command::Peers => mesh::peers(ctx).await,
        Command::Join { peer, name } => mesh::join(ctx, peer, name.clone()).await,
        Command::Sync { peer } => mesh::sync(ctx, peer.as_deref()).await,
        Command::CreateToken { store, name, permissions, expires, rate } => {
            tokens::create(ctx, store, name.clone(), permissions, expires.as_deref(), rate.as_deref()).await
        }
        Command::ListTokens => tokens::list(ctx).await,
        Command::RevokeToken { id } => tokens::revoke(ctx, id).await,
        Command::Completions { .. } => Err(node::command_line_only("completions SHELL")),
        Command::Man { .. } => Err(node::command_line_only("man [--dir DIR]")),
    }
}

/// What every command is given: the engine, the global flags and where its output goes.
struct Context<'a> {
    engine: &'a Engine,
    /// `--json`: one JSON document instead of text.
    json: bool,
    /// `--store`: the store key-value commands act on, instead of the current one.
    store: Option<&'a str>,
    opts: RunOptions,
    out: &'a Out,
}

impl Context<'_> {
    async fn node(&self) -> Result<Arc<Node>, Failure> {
        Ok(self.engine.node().await?)
    }

    /// The node and the store a key-value command acts on (`--store`, else the current store).
    async fn target(&self) -> Result<(Arc<Node>, StoreRef), Failure> {
        let node = self.node().await?;
        let store = node.resolve(self.store).await?;
        Ok((node, store))
    }

    /// How text is painted for whoever issued the command.
    fn palette(&self) -> Palette {
        Palette::new(self.opts.color)
    }

    /// Prints the JSON document with `--json`, else the text; only the one asked for is built.
    fn print(&self, json: impl FnOnce() -> Value, text: impl FnOnce() -> String) {
        if self.json {
            self.out.json(&json());
        } else {
            self.out.bytes(text());
        }
    }
}

fn parse_node_id(text: &str) -> Result<AuthorId, Failure> {
    AuthorId::from_hex(text).map_err(|e| Failure::usage(format!("invalid node id {text:?}: {e}")))
}
