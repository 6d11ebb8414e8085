//! Running one parsed command against the node this process owns, writing to an [`Out`].
//!
//! The same [`Engine::run`] serves a one-shot command, a shell line and a request forwarded over
//! the control socket, so all three behave identically. Formats are DESIGN.md section 8.

use std::sync::Arc;

use lattice_core::winner;
use lattice_core::{AuthorId, MemberStatus};
use lattice_net::{NetConfig, PeerAddr, SyncProgress};
use lattice_node::tokens::{self, Permissions, TokenRecord};
use lattice_node::{DataDir, DirLock, ErrorKind, Network, Node, NodeError, StoreRef};
use serde_json::{Map, Value, json};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use crate::cli::{Cli, Command};
use crate::protocol::Out;
use crate::render;

/// Page size for `list`.
const LIST_PAGE: usize = 1000;

/// What kind of process owns the data dir (shown by `status`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// A one-shot command: owns the dir for one command, no socket.
    OneShot,
    /// `lattice serve`.
    Serve,
    /// The interactive shell, with a control socket.
    Shell,
    /// A one-shot `watch` run here: long-running, so it serves the control socket too.
    Watch,
}

/// How a command was issued.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// Output is read line by line (a shell, or a terminal): a raw `get` value gets a final
    /// newline if it lacks one. Off for pipes and files, so `get k > file` is byte-exact.
    pub terminal: bool,
    /// Issued in this process (not over the socket): Ctrl-C stops a `watch`.
    pub local: bool,
    /// Cancelled when whoever issued the command stops (the control server shutting down):
    /// a `watch` then ends.
    pub stop: Option<CancellationToken>,
}

/// An error as the user sees it: one line and an exit code.
#[derive(Debug)]
pub struct Failure {
    pub kind: ErrorKind,
    pub message: String,
}

impl Failure {
    pub fn usage(message: impl Into<String>) -> Failure {
        Failure { kind: ErrorKind::Usage, message: message.into() }
    }
    pub fn other(message: impl Into<String>) -> Failure {
        Failure { kind: ErrorKind::Other, message: message.into() }
    }
    /// DESIGN.md: 1 for not-found outcomes, 2 for usage errors, 1 otherwise.
    pub fn code(&self) -> i32 {
        exit_code(self.kind)
    }
    /// `error: ...` on one line: a multi-line message is folded.
    pub fn line(&self) -> String {
        let parts: Vec<&str> = self.message.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
        format!("error: {}", parts.join(" "))
    }
}

pub fn exit_code(kind: ErrorKind) -> i32 {
    match kind {
        ErrorKind::NotFound | ErrorKind::Other => 1,
        ErrorKind::Usage => 2,
    }
}

impl From<NodeError> for Failure {
    fn from(e: NodeError) -> Failure {
        Failure { kind: e.kind(), message: e.to_string() }
    }
}

/// The data dir as owned by this process: the lock, the node (opened on first use) and a token
/// cancelled at shutdown (running watches end).
pub struct Engine {
    dir: DataDir,
    lock: Arc<DirLock>,
    role: Role,
    node: Mutex<Option<Arc<Node>>>,
    /// The node on the network, started by `serve` and the shell, or for one command (join, sync).
    net: Mutex<Option<Arc<Network>>>,
    net_config: NetConfig,
    /// Where `serve --http` serves the HTTP API (shown by `status`).
    http_addr: std::sync::Mutex<Option<std::net::SocketAddr>>,
    cancel: CancellationToken,
}

impl Engine {
    pub fn new(dir: DataDir, lock: DirLock, role: Role) -> Arc<Engine> {
        Engine::with_network(dir, lock, role, NetConfig::default())
    }

    pub fn with_network(dir: DataDir, lock: DirLock, role: Role, net_config: NetConfig) -> Arc<Engine> {
        Arc::new(Engine {
            dir,
            lock: Arc::new(lock),
            role,
            node: Mutex::new(None),
            net: Mutex::new(None),
            net_config,
            http_addr: std::sync::Mutex::new(None),
            cancel: CancellationToken::new(),
        })
    }

    /// The node's network, started on first use (a long-running owner starts it eagerly).
    pub async fn network(&self) -> Result<Arc<Network>, NodeError> {
        let node = self.node().await?;
        let mut slot = self.net.lock().await;
        if let Some(net) = slot.as_ref() {
            return Ok(net.clone());
        }
        let net = Arc::new(Network::start(node, self.net_config.clone()).await?);
        *slot = Some(net.clone());
        Ok(net)
    }

    /// The addresses the network listens on (empty when it is not running).
    pub async fn listen_addrs(&self) -> Vec<std::net::SocketAddr> {
        self.net.lock().await.as_ref().map(|n| n.listen_addrs()).unwrap_or_default()
    }

    /// Records where the HTTP API listens (`None` once it has stopped).
    pub fn set_http_addr(&self, addr: Option<std::net::SocketAddr>) {
        *self.http_addr.lock().unwrap_or_else(|p| p.into_inner()) = addr;
    }

    fn http_addr(&self) -> Option<std::net::SocketAddr> {
        *self.http_addr.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn stop_network(&self) {
        let net = self.net.lock().await.take();
        if let Some(net) = net {
            net.shutdown().await;
        }
    }

    pub fn dir(&self) -> &DataDir {
        &self.dir
    }

    /// The node, opened on first use. [`NodeError::NotInitialised`] before `init`.
    pub async fn node(&self) -> Result<Arc<Node>, NodeError> {
        let mut slot = self.node.lock().await;
        if self.cancel.is_cancelled() {
            return Err(NodeError::ShuttingDown);
        }
        if let Some(node) = slot.as_ref() {
            return Ok(node.clone());
        }
        let node = Arc::new(Node::open(self.dir.clone(), self.lock.clone()).await?);
        *slot = Some(node.clone());
        Ok(node)
    }

    /// The current store's name for a shell prompt (`None` before `init`).
    pub async fn prompt_store(&self) -> Option<String> {
        if !self.dir.is_initialised() {
            return None;
        }
        let node = self.node().await.ok()?;
        Some(match node.current_store().await {
            Ok(Some(store)) => store.name,
            _ => "(none)".into(),
        })
    }

    /// Ends running watches, leaves the network and closes every open store.
    pub async fn shutdown(&self) -> Result<(), NodeError> {
        self.cancel.cancel();
        self.stop_network().await;
        let node = self.node.lock().await.take();
        match node {
            Some(node) => node.shutdown().await,
            None => Ok(()),
        }
    }

    /// Runs one command; returns its exit code. Output and errors go to `out`.
    pub async fn run(&self, cli: &Cli, stdin: Option<Vec<u8>>, opts: RunOptions, out: &Out) -> i32 {
        let Some(command) = &cli.command else {
            out.err("error: no command given (try `help`)");
            return 2;
        };
        match self.dispatch(cli, command, stdin, opts, out).await {
            Ok(code) => code,
            Err(failure) => {
                out.err(failure.line());
                failure.code()
            }
        }
    }

    async fn dispatch(
        &self,
        cli: &Cli,
        command: &Command,
        stdin: Option<Vec<u8>>,
        opts: RunOptions,
        out: &Out,
    ) -> Result<i32, Failure> {
        let json = cli.json;
        match command {
            Command::Init { name } => self.init(name.clone(), json, out).await,
            Command::Serve { .. } => Err(Failure::other(format!(
                "this data dir is already owned by {} (pid {}); `serve` runs from the command line",
                self.role_name(),
                std::process::id()
            ))),
            Command::Status => self.status(json, out).await,
            Command::CreateStore { name } => {
                let info = self.node().await?.create_store(name).await?;
                if json {
                    out.json(&store_info_json(&info));
                } else {
                    out.line(format_args!("created store {} ({})", info.name, info.id));
                }
                Ok(0)
            }
            Command::ListStores { all } => {
                let stores = self.node().await?.list_stores(*all).await?;
                if json {
                    out.json(&json!({ "stores": stores.iter().map(store_info_json).collect::<Vec<_>>() }));
                } else if stores.is_empty() {
                    out.line("(no stores)");
                } else {
                    let rows: Vec<Vec<String>> = stores
                        .iter()
                        .map(|s| {
                            vec![
                                s.name.clone(),
                                s.id.to_string(),
                                s.state.as_str().into(),
                                s.created_at.clone(),
                                s.created_by.clone(),
                            ]
                        })
                        .collect();
                    out.bytes(table(&["NAME", "UUID", "STATE", "CREATED AT", "CREATED BY"], &rows));
                }
                Ok(0)
            }
            Command::DeleteStore { store } => {
                let node = self.node().await?;
                let info = node.delete_store(store).await?;
                let archive = node.data_dir().archived_store(info.id);
                if json {
                    let mut value = store_info_json(&info);
                    value["archive"] = json!(archive.display().to_string());
                    out.json(&value);
                } else {
                    out.line(format_args!(
                        "deleted store {} ({}); local data kept in {}",
                        info.name,
                        info.id,
                        archive.display()
                    ));
                }
                Ok(0)
            }
            Command::Use { store } => {
                let store = self.node().await?.use_store(store).await?;
                if json {
                    out.json(&json!({ "current_store": store.name, "uuid": store.id.to_string() }));
                } else {
                    out.line(format_args!("using store {} ({})", store.name, store.id));
                }
                Ok(0)
            }
            Command::Put { key, value } => {
                let (node, store) = self.target(cli).await?;
                let value = if value == "-" {
                    stdin.ok_or_else(|| {
                        Failure::usage(
                            "VALUE \"-\" reads stdin, which a shell line does not have; give the value inline",
                        )
                    })?
                } else {
                    value.clone().into_bytes()
                };
                let receipt = node.put(&store, key.clone().into_bytes(), value).await?;
                if json {
                    out.json(&json!({
                        "key": key, "store": store.name, "hash": receipt.hash.to_hex(),
                        "hlc": receipt.hlc.to_string(), "seq": receipt.seq,
                    }));
                } else {
                    out.line("ok");
                }
                Ok(0)
            }
            Command::Get { key, verbose } => self.get(cli, key, *verbose, opts, out).await,
            Command::Delete { key } => {
                let (node, store) = self.target(cli).await?;
                match node.delete(&store, key.clone().into_bytes()).await? {
                    None => {
                        out.err("not found");
                        Ok(1)
                    }
                    Some(receipt) => {
                        if json {
                            out.json(&json!({
                                "key": key, "store": store.name, "deleted": true,
                                "hash": receipt.hash.to_hex(), "hlc": receipt.hlc.to_string(), "seq": receipt.seq,
                            }));
                        } else {
                            out.line("deleted");
                        }
                        Ok(0)
                    }
                }
            }
            Command::List { prefix } => {
                let (node, store) = self.target(cli).await?;
                let prefix = prefix.clone().unwrap_or_default().into_bytes();
                let mut items = Vec::new();
                let mut after = None;
                loop {
                    let page = node.list(&store, &prefix, after, LIST_PAGE).await?;
                    let full = page.len() == LIST_PAGE;
                    after = page.last().map(|(k, _)| k.clone());
                    if json {
                        items.extend(page.iter().map(|(k, v)| render::item(k, v)));
                    } else {
                        let mut text = String::new();
                        for (k, v) in &page {
                            text.push_str(&format!("{}\t{}\n", render::text(k), render::text(v)));
                        }
                        out.bytes(text);
                    }
                    if !full {
                        break;
                    }
                }
                if json {
                    out.json(&json!({ "items": items }));
                }
                Ok(0)
            }
            Command::Watch { pattern } => self.watch(cli, pattern, opts, out).await,
            Command::Invite { pubkey } => {
                let peer = parse_node_id(pubkey)?;
                self.node().await?.invite(peer).await?;
                if json {
                    out.json(&json!({ "node_id": peer.to_hex(), "status": MemberStatus::Invited.as_str() }));
                } else {
                    out.line(format_args!(
                        "invited {peer}; it can now run `lattice join {}@HOST:PORT`",
                        self.node().await?.node_id()
                    ));
                }
                Ok(0)
            }
            Command::Remove { pubkey } => {
                let peer = parse_node_id(pubkey)?;
                self.node().await?.remove_peer(peer).await?;
                if json {
                    out.json(&json!({ "node_id": peer.to_hex(), "status": MemberStatus::Removed.as_str() }));
                } else {
                    out.line(format_args!("removed {peer}"));
                }
                Ok(0)
            }
            Command::Peers => self.peers(json, out).await,
            Command::Join { peer, name } => self.join(peer, name.clone(), json, opts, out).await,
            Command::Sync { peer } => self.sync(peer.as_deref(), json, opts, out).await,
            Command::CreateToken { store, name, permissions, expires } => {
                let permissions: Permissions = permissions.parse()?;
                let expires = expires.as_deref().map(tokens::parse_duration).transpose()?;
                let (record, secret) =
                    self.node().await?.create_token(store, name.clone(), permissions, expires).await?;
                let token = format!("{}:{secret}", record.id);
                if json {
                    let mut value = token_json(&record);
                    value["secret"] = json!(secret);
                    value["token"] = json!(token);
                    out.json(&value);
                } else {
                    out.line(token);
                }
                Ok(0)
            }
            Command::ListTokens => {
                let tokens = self.node().await?.list_tokens().await?;
                if json {
                    out.json(&json!({ "tokens": tokens.iter().map(token_json).collect::<Vec<_>>() }));
                } else if tokens.is_empty() {
                    out.line("(no tokens)");
                } else {
                    let now = lattice_node::time::now_ms();
                    let rows: Vec<Vec<String>> = tokens
                        .iter()
                        .map(|t| {
                            vec![
                                t.id.clone(),
                                if t.name.is_empty() { "-".into() } else { t.name.clone() },
                                t.store_id.map_or_else(|| "-".into(), |s| s.to_string()),
                                t.permissions.map_or("-", |p| p.as_str()).into(),
                                t.state(now).into(),
                                t.expires_at.clone().unwrap_or_else(|| "never".into()),
                            ]
                        })
                        .collect();
                    out.bytes(table(&["ID", "NAME", "STORE", "PERMISSIONS", "STATE", "EXPIRES"], &rows));
                }
                Ok(0)
            }
            Command::RevokeToken { id } => {
                let record = self.node().await?.revoke_token(id).await?;
                if json {
                    out.json(&token_json(&record));
                } else {
                    out.line(format_args!("revoked token {}", record.id));
                }
                Ok(0)
            }
        }
    }

    async fn peers(&self, json: bool, out: &Out) -> Result<i32, Failure> {
        let node = self.node().await?;
        let me = node.node_id();
        let health = match self.net.lock().await.as_ref() {
            Some(net) => net.server().peer_health(),
            None => Default::default(),
        };
        let mut rows = Vec::new();
        let mut items = Vec::new();
        for (id, record) in node.node_records().await? {
            let local = node.meta().peer(id)?;
            let info = record.info.unwrap_or_default();
            let status = record.status.map_or("unknown", MemberStatus::as_str);
            let name = if id == me { format!("{} (this node)", info.name) } else { info.name.clone() };
            let backoff = health.get(&id).filter(|h| h.failures > 0).map(|h| h.failures);
            items.push(json!({
                "node_id": id.to_hex(), "name": info.name, "status": status,
                "hostname": info.hostname, "added_at": info.added_at, "added_by": info.added_by,
                "addrs": if local.addrs.is_empty() { info.addrs.clone() } else { local.addrs.clone() },
                "last_seen": local.last_seen, "last_sync": local.last_sync, "last_sync_ok": local.last_sync_ok,
                "consecutive_failures": backoff,
            }));
            rows.push(vec![
                id.to_hex(),
                name,
                status.to_string(),
                local.last_seen.clone().unwrap_or_else(|| "-".into()),
                local.last_sync.clone().unwrap_or_else(|| "-".into()),
            ]);
        }
        if json {
            out.json(&json!({ "peers": items }));
        } else {
            out.bytes(table(&["NODE ID", "NAME", "STATUS", "LAST SEEN", "LAST SYNC"], &rows));
        }
        Ok(0)
    }

    async fn join(
        &self,
        peer: &str,
        name: Option<String>,
        json: bool,
        opts: RunOptions,
        out: &Out,
    ) -> Result<i32, Failure> {
        let peer: PeerAddr = peer.parse().map_err(|e: lattice_net::NetError| Failure::usage(e.to_string()))?;
        let mut slot = self.node.lock().await;
        let node = match slot.take() {
            Some(node) => node,
            None if self.dir.is_initialised() => Arc::new(Node::open(self.dir.clone(), self.lock.clone()).await?),
            None => Arc::new(Node::init(self.dir.clone(), self.lock.clone(), name.clone()).await?),
        };
        self.stop_network().await;
        let (progress, bar) = SyncBar::start(opts.local);
        let joined = lattice_node::network::join(node, peer.clone(), name, self.net_config.clone(), progress).await;
        SyncBar::finish(bar);
        let node = joined?;
        let root = node.root_store().id;
        let current = node.current_store().await?;
        *slot = Some(node);
        drop(slot);
        if self.role != Role::OneShot {
            self.network().await?;
        }
        if json {
            out.json(&json!({
                "joined": peer.id.to_hex(), "root_store": root.to_string(),
                "current_store": current.as_ref().map(|s| s.name.clone()),
            }));
        } else {
            out.line(format_args!("joined the mesh of {} (root store {root})", peer.id));
            if let Some(store) = current {
                out.line(format_args!("current store: {} ({})", store.name, store.id));
            }
        }
        Ok(0)
    }

    async fn sync(&self, peer: Option<&str>, json: bool, opts: RunOptions, out: &Out) -> Result<i32, Failure> {
        let peer = peer.map(parse_node_id).transpose()?;
        let net = self.network().await?;
        let (progress, bar) = SyncBar::start(opts.local);
        let results = net.sync(peer, progress).await;
        SyncBar::finish(bar);
        let results = results?;
        let node = self.node().await?;
        let mut names = std::collections::HashMap::new();
        for info in node.list_stores(true).await? {
            names.insert(info.id, info.name);
        }
        names.insert(node.root_store().id, "root".to_string());
        let failed = results
            .iter()
            .filter(|r| r.result.is_err() || r.result.as_ref().is_ok_and(|v| v.iter().any(|(_, s)| s.is_err())))
            .count();
        if json {
            let peers: Vec<Value> = results
                .iter()
                .map(|r| match &r.result {
                    Ok(stores) => json!({
                        "node_id": r.peer.to_hex(), "ok": stores.iter().all(|(_, s)| s.is_ok()),
                        "stores": stores.iter().map(|(id, s)| match s {
                            Ok(o) => json!({"uuid": id.to_string(), "name": names.get(id), "received": o.received,
                                "applied": o.applied, "sent": o.sent, "rejected": o.rejected,
                                "unauthorised": o.unauthorised}),
                            Err(e) => json!({"uuid": id.to_string(), "name": names.get(id), "error": e}),
                        }).collect::<Vec<_>>(),
                    }),
                    Err(e) => json!({ "node_id": r.peer.to_hex(), "ok": false, "error": e }),
                })
                .collect();
            out.json(&json!({ "peers": peers }));
        } else if results.is_empty() {
            out.line("no peers to sync with (invite one, or join a mesh)");
        } else {
            for r in &results {
                match &r.result {
                    Ok(stores) => {
                        let total = |count: fn(&lattice_net::SyncOutcome) -> u64| -> u64 {
                            stores.iter().filter_map(|(_, s)| s.as_ref().ok()).map(count).sum()
                        };
                        let (received, sent, held) =
                            (total(|o| o.received), total(|o| o.sent), total(|o| o.unauthorised));
                        let errors: Vec<String> = stores
                            .iter()
                            .filter_map(|(id, s)| {
                                let name = names.get(id).cloned().unwrap_or_else(|| id.to_string());
                                s.as_ref().err().map(|e| format!("store {name}: {e}"))
                            })
                            .collect();
                        if errors.is_empty() {
                            out.line(format_args!("synced with {}: {received} entries received, {sent} sent", r.peer));
                            if held > 0 {
                                out.err(format_args!(
                                    "warning: {held} entries from {} are held: their authors are not members of this mesh",
                                    r.peer
                                ));
                            }
                        } else {
                            // One line per peer, whatever the number of stores.
                            out.err(format_args!("sync with {} failed: {}", r.peer, errors.join("; ")));
                        }
                    }
                    Err(e) => out.err(format_args!("sync with {} failed: {e}", r.peer)),
                }
            }
        }
        Ok(if failed > 0 && (peer.is_some() || failed == results.len()) { 1 } else { 0 })
    }

    fn role_name(&self) -> &'static str {
        match self.role {
            Role::OneShot => "a lattice command",
            Role::Serve => "`lattice serve`",
            Role::Shell => "a lattice shell",
            Role::Watch => "`lattice watch`",
        }
    }

    /// The node and the store a key-value command acts on (`--store`, else the current store).
    async fn target(&self, cli: &Cli) -> Result<(Arc<Node>, StoreRef), Failure> {
        let node = self.node().await?;
        let store = node.resolve(cli.store.as_deref()).await?;
        Ok((node, store))
    }

    async fn init(&self, name: Option<String>, json: bool, out: &Out) -> Result<i32, Failure> {
        let mut slot = self.node.lock().await;
        if slot.is_some() || self.dir.is_initialised() {
            return Err(NodeError::AlreadyInitialised(self.dir.path().to_path_buf()).into());
        }
        let node = Arc::new(Node::init(self.dir.clone(), self.lock.clone(), name).await?);
        *slot = Some(node.clone());
        let current = node.current_store().await?;
        let (store_name, store_id) = current.map(|s| (s.name, s.id.to_string())).unwrap_or_default();
        if json {
            out.json(&json!({
                "node_id": node.node_id().to_hex(),
                "data_dir": self.dir.path().display().to_string(),
                "root_store": node.root_store().id.to_string(),
                "current_store": store_name,
                "current_store_uuid": store_id,
            }));
        } else {
            out.line(format_args!("initialised {}", self.dir.path().display()));
            out.line(format_args!("node id:       {}", node.node_id()));
            out.line(format_args!("current store: {store_name} ({store_id})"));
        }
        Ok(0)
    }

    async fn status(&self, json: bool, out: &Out) -> Result<i32, Failure> {
        let node = self.node().await?;
        let status = node.status().await?;
        let listen = self.listen_addrs().await;
        let me = node.node_id();
        let peer_list: Vec<(AuthorId, String, String)> = node
            .node_records()
            .await?
            .into_iter()
            .filter(|(id, _)| *id != me)
            .map(|(id, r)| {
                (
                    id,
                    r.info.map(|i| i.name).unwrap_or_default(),
                    r.status.map(MemberStatus::as_str).unwrap_or_default().to_string(),
                )
            })
            .collect();
        let peers_json: Vec<Value> = peer_list
            .iter()
            .map(|(id, name, st)| json!({"node_id": id.to_hex(), "name": name, "status": st}))
            .collect();
        let daemon = (self.role != Role::OneShot).then(std::process::id);
        if json {
            let stores: Vec<Value> = status
                .stores
                .iter()
                .map(|(s, f)| {
                    json!({
                        "name": s.name, "uuid": s.id.to_string(), "entries": f.entries, "authors": f.authors,
                        "keys": f.keys, "orphans": f.orphans, "conflicts": f.conflicts,
                    })
                })
                .collect();
            out.json(&json!({
                "node_id": status.node_id.to_hex(),
                "data_dir": status.data_dir.display().to_string(),
                "current_store": status.current.as_ref().map(|s| s.name.clone()),
                "current_store_uuid": status.current.as_ref().map(|s| s.id.to_string()),
                "daemon": daemon.is_some(),
                "daemon_pid": daemon,
                "stores": stores,
                "peers": peers_json,
                "listen_addrs": listen.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
                "http_addr": self.http_addr().map(|a| a.to_string()),
            }));
            return Ok(0);
        }
        let current = match &status.current {
            Some(s) => format!("{} ({})", s.name, s.id),
            None => "none (pick one with `lattice use NAME`)".into(),
        };
        let daemon = match daemon {
            Some(pid) => format!("{} (pid {pid})", self.role_name()),
            None => "none".into(),
        };
        out.line(format_args!("node id:       {}", status.node_id));
        out.line(format_args!("data dir:      {}", status.data_dir.display()));
        out.line(format_args!("current store: {current}"));
        out.line(format_args!("daemon:        {daemon}"));
        if listen.is_empty() {
            out.line("listening:     not on the network (run `lattice serve`)");
        } else {
            let addrs: Vec<String> = listen.iter().map(|a| a.to_string()).collect();
            out.line(format_args!("listening:     {}", addrs.join(", ")));
        }
        if let Some(addr) = self.http_addr() {
            out.line(format_args!("http api:      http://{addr}"));
        }
        if peer_list.is_empty() {
            out.line("peers:         none");
        } else {
            out.line("peers:");
            for (id, name, st) in &peer_list {
                out.line(format_args!("  {id}  {st}  {name}"));
            }
        }
        out.line("stores:");
        let rows: Vec<Vec<String>> = status
            .stores
            .iter()
            .map(|(s, f)| {
                vec![
                    s.name.clone(),
                    s.id.to_string(),
                    f.entries.to_string(),
                    f.authors.to_string(),
                    f.keys.to_string(),
                    f.orphans.to_string(),
                    f.conflicts.to_string(),
                ]
            })
            .collect();
        let text = table(&["NAME", "UUID", "ENTRIES", "AUTHORS", "KEYS", "ORPHANS", "CONFLICTS"], &rows);
        out.bytes(text.lines().map(|l| format!("  {l}\n")).collect::<String>());
        Ok(0)
    }

    async fn get(&self, cli: &Cli, key: &str, verbose: bool, opts: RunOptions, out: &Out) -> Result<i32, Failure> {
        let (node, store) = self.target(cli).await?;
        let heads = node.get_heads(&store, key.as_bytes()).await?;
        let visible = winner(&heads).filter(|h| !h.tombstone).map(|h| h.value.clone());
        if heads.is_empty() || (visible.is_none() && !verbose) {
            out.err("not found");
            return Ok(1);
        }
        if cli.json {
            let mut obj = Map::new();
            obj.insert("key".into(), json!(key));
            match &visible {
                Some(v) => render::put_bytes(&mut obj, "value", "encoding", v),
                None => drop(obj.insert("value".into(), Value::Null)),
            }
            let heads: Vec<Value> = heads
                .iter()
                .map(|h| {
                    let mut head = Map::new();
                    if h.tombstone {
                        head.insert("value".into(), Value::Null);
                    } else {
                        render::put_bytes(&mut head, "value", "encoding", &h.value);
                    }
                    head.insert("hlc".into(), json!(h.hlc.to_string()));
                    head.insert("author".into(), json!(h.author.to_hex()));
                    head.insert("hash".into(), json!(h.hash.to_hex()));
                    head.insert("tombstone".into(), json!(h.tombstone));
                    Value::Object(head)
                })
                .collect();
            obj.insert("heads".into(), json!(heads));
            out.json(&Value::Object(obj));
            return Ok(0);
        }
        if verbose {
            let best = winner(&heads).map(|h| h.hash);
            let mut text = String::new();
            for h in &heads {
                let mark = if Some(h.hash) == best { "*" } else { " " };
                let value = if h.tombstone { "(deleted)".to_string() } else { render::text(&h.value) };
                text.push_str(&format!("{mark} {value}  author {}  hlc {}  hash {}\n", h.author, h.hlc, h.hash));
            }
            out.bytes(text);
            return Ok(0);
        }
        // Plain get: the raw value bytes, so `get k > file` round-trips binary exactly.
        let mut bytes = visible.unwrap_or_default();
        if heads.len() > 1 {
            bytes.extend_from_slice(format!("  ({} heads)\n", heads.len()).as_bytes());
        } else if opts.terminal && !bytes.ends_with(b"\n") {
            bytes.push(b'\n');
        }
        out.bytes(bytes);
        Ok(0)
    }

    async fn watch(&self, cli: &Cli, pattern: &str, opts: RunOptions, out: &Out) -> Result<i32, Failure> {
        let (node, store) = self.target(cli).await?;
        let (_current, mut events) = node.watch(&store, pattern).await?;
        // Printed once the subscription is live: everything written from now on is reported.
        out.err(format_args!("watching {pattern:?} in store {} (Ctrl-C to stop)", store.name));
        loop {
            tokio::select! {
                event = events.recv() => match event {
                    Some(event) => out.bytes(watch_line(&event, cli.json)),
                    None => return Err(Failure::other("the watch ended: the store closed or this watcher fell behind")),
                },
                _ = out.closed() => return Ok(0),
                _ = self.cancel.cancelled() => return Ok(0),
                _ = interrupted(opts.local) => return Ok(0),
                _ = stopped(opts.stop.as_ref()) => return Ok(0),
            }
        }
    }
}

fn parse_node_id(text: &str) -> Result<AuthorId, Failure> {
    AuthorId::from_hex(text).map_err(|e| Failure::usage(format!("invalid node id {text:?}: {e}")))
}

/// A progress bar on stderr for a long sync, shown when a person watches this process. The task
/// that draws it is owned here and stopped by [`finish`](Self::finish).
struct SyncBar {
    bar: indicatif::ProgressBar,
    drawer: tokio::task::JoinHandle<()>,
}

impl SyncBar {
    /// The sender to hand to the sync, and the bar (none when not on a terminal).
    fn start(local: bool) -> (Option<tokio::sync::watch::Sender<SyncProgress>>, Option<SyncBar>) {
        use std::io::IsTerminal;
        if !local || !std::io::stderr().is_terminal() {
            return (None, None);
        }
        let (tx, mut rx) = tokio::sync::watch::channel(SyncProgress::default());
        let bar = indicatif::ProgressBar::new(0);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{spinner} syncing {pos}/{len} entries ({per_sec}, eta {eta})")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        let b = bar.clone();
        let drawer = tokio::spawn(async move {
            while rx.changed().await.is_ok() {
                let p = *rx.borrow();
                b.set_length(p.expected.max(p.received));
                b.set_position(p.received);
            }
        });
        (Some(tx), Some(SyncBar { bar, drawer }))
    }

    fn finish(bar: Option<SyncBar>) {
        if let Some(SyncBar { bar, drawer }) = bar {
            drawer.abort();
            bar.finish_and_clear();
        }
    }
}

/// Resolves on Ctrl-C when `enabled`, never otherwise.
async fn interrupted(enabled: bool) {
    if enabled && tokio::signal::ctrl_c().await.is_ok() {
        return;
    }
    std::future::pending::<()>().await
}

/// Resolves when `token` is cancelled; never without one.
async fn stopped(token: Option<&CancellationToken>) {
    match token {
        Some(token) => token.cancelled().await,
        None => std::future::pending().await,
    }
}

fn watch_line(event: &lattice_store::WatchEvent, json: bool) -> String {
    use lattice_store::WatchEvent;
    match (event, json) {
        (WatchEvent::Put { key, value }, false) => format!("put {} {}\n", render::text(key), render::text(value)),
        (WatchEvent::Delete { key }, false) => format!("delete {}\n", render::text(key)),
        (WatchEvent::Put { key, value }, true) => {
            let mut item = render::item(key, value);
            item["event"] = json!("put");
            format!("{item}\n")
        }
        (WatchEvent::Delete { key }, true) => {
            let mut obj = Map::new();
            obj.insert("event".into(), json!("delete"));
            render::put_bytes(&mut obj, "key", "key_encoding", key);
            format!("{}\n", Value::Object(obj))
        }
    }
}

fn store_info_json(info: &lattice_node::StoreInfo) -> Value {
    json!({
        "name": info.name, "uuid": info.id.to_string(), "created_by": info.created_by,
        "created_at": info.created_at, "state": info.state.as_str(),
    })
}

/// Left-aligned columns separated by two spaces.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut text = String::new();
    let all = std::iter::once(header.iter().map(|s| s.to_string()).collect::<Vec<_>>()).chain(rows.iter().cloned());
    for row in all {
        let cells: Vec<String> = row.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        text.push_str(cells.join("  ").trim_end());
        text.push('\n');
    }
    text
}

/// A token as `create-token`, `list-tokens` and `revoke-token` show it in `--json` (never the
/// secret's hash).
fn token_json(t: &TokenRecord) -> Value {
    json!({
        "id": t.id, "name": t.name, "store_id": t.store_id.map(|s| s.to_string()),
        "permissions": t.permissions.map(|p| p.as_str()), "created_at": t.created_at,
        "expires_at": t.expires_at, "revoked_at": t.revoked_at,
        "state": t.state(lattice_node::time::now_ms()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns() {
        let t = table(&["A", "BB"], &[vec!["xyz".into(), "1".into()]]);
        assert_eq!(t, "A    BB\nxyz  1\n");
    }

    #[test]
    fn exit_codes() {
        assert_eq!(exit_code(ErrorKind::NotFound), 1);
        assert_eq!(exit_code(ErrorKind::Usage), 2);
        assert_eq!(exit_code(ErrorKind::Other), 1);
    }
}
