//! What the API tests share: a node with an HTTP API on 127.0.0.1, and a minimal HTTP/1.1
//! client on raw sockets, so the tests see exactly what the server sends and can send half a
//! request and stall.

#![allow(dead_code)]

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use lattice_http::{HttpConfig, HttpServer};
use lattice_net::{NetConfig, PeerAddr};
use lattice_node::Permissions;
use lattice_node::{DataDir, DirLock, Network, Node};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn loopback() -> NetConfig {
    NetConfig { bind: "127.0.0.1:0".parse().unwrap(), ..Default::default() }
}

/// A new node (`init`) in `dir`, with its network up on 127.0.0.1.
pub async fn networked(dir: &tempfile::TempDir, name: &str) -> (Arc<Node>, Network) {
    let data = DataDir::new(dir.path()).unwrap();
    let lock = Arc::new(DirLock::try_acquire(&data).unwrap());
    let node = Arc::new(Node::init(data, lock, Some(name.into())).await.unwrap());
    let net = Network::start(node.clone(), loopback()).await.unwrap();
    (node, net)
}

/// A new node in `dir`, invited by `a` and joined to its mesh, with its network up.
pub async fn joined(a: &Node, net_a: &Network, dir: &tempfile::TempDir, name: &str) -> (Arc<Node>, Network) {
    let data = DataDir::new(dir.path()).unwrap();
    let lock = Arc::new(DirLock::try_acquire(&data).unwrap());
    let node = Arc::new(Node::init(data, lock, Some(name.into())).await.unwrap());
    a.invite(node.node_id(), lattice_node::Role::Member).await.unwrap();
    let addr_a: PeerAddr = format!("{}@{}", a.node_id(), net_a.listen_addrs()[0]).parse().unwrap();
    let node = lattice_node::join(node, addr_a, Some(name.into()), loopback(), None).await.unwrap();
    let net = Network::start(node.clone(), loopback()).await.unwrap();
    (node, net)
}

/// A node with stores `app` and `other`, and its HTTP API.
pub struct Fixture {
    _dir: tempfile::TempDir,
    pub node: Arc<Node>,
    pub server: HttpServer,
}

impl Fixture {
    pub async fn start(config: HttpConfig) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let data = DataDir::new(dir.path()).unwrap();
        let lock = Arc::new(DirLock::try_acquire(&data).unwrap());
        let node = Arc::new(Node::init(data, lock, Some("http-test".into())).await.unwrap());
        node.create_store("app").await.unwrap();
        node.create_store("other").await.unwrap();
        let server = HttpServer::start(node.clone(), "127.0.0.1:0".parse().unwrap(), config).await.unwrap();
        Fixture { _dir: dir, node, server }
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    pub async fn token(&self, store: &str, permissions: Permissions) -> String {
        let (record, secret) = self.node.create_token(store, None, permissions, None).await.unwrap();
        format!("{}:{secret}", record.id)
    }

    pub async fn stop(self) {
        self.server.shutdown().await;
        self.node.shutdown().await.unwrap();
    }
}

pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }
    pub fn error(&self) -> String {
        self.json()["error"].as_str().unwrap_or_else(|| panic!("no error field: {:?}", self.json())).to_string()
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// The head of a request (`Content-Length` as given, `Connection: close` unless `keep_alive`).
pub fn head(method: &str, path: &str, token: Option<&str>, content_length: usize, keep_alive: bool) -> String {
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: lattice\r\nContent-Length: {content_length}\r\n");
    if !keep_alive {
        head.push_str("Connection: close\r\n");
    }
    if let Some(token) = token {
        head.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    head.push_str("\r\n");
    head
}

/// One HTTP/1.1 request over a fresh connection (`Connection: close`).
pub async fn request(addr: SocketAddr, method: &str, path: &str, token: Option<&str>, body: &[u8]) -> Reply {
    try_request(addr, method, path, token, body).await.unwrap_or_else(|e| panic!("{method} {path}: {e}"))
}

/// [`request`], with a failure to connect or to read a whole answer returned.
pub async fn try_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &[u8],
) -> io::Result<Reply> {
    let mut raw = head(method, path, token, body.len(), false).into_bytes();
    raw.extend_from_slice(body);
    send_raw(addr, &raw).await
}

/// Sends `raw` over a fresh connection and reads the answer until the server closes.
pub async fn send_raw(addr: SocketAddr, raw: &[u8]) -> io::Result<Reply> {
    let mut stream = TcpStream::connect(addr).await?;
    stream.write_all(raw).await?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await?;
    let (mut reply, rest) = parse_head(&answer)?;
    reply.body = if reply.header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        dechunk(rest)
    } else {
        rest.to_vec()
    };
    Ok(reply)
}

/// A connection that has sent `partial` (say, half a request head) and waits.
pub async fn open(addr: SocketAddr, partial: &[u8]) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(partial).await.unwrap();
    stream
}

/// Reads one answer (framed by `Content-Length`) from a connection that may stay open.
pub async fn read_one(stream: &mut TcpStream) -> io::Result<Reply> {
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Ok((mut reply, rest)) = parse_head(&answer) {
            let length: usize = reply.header("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
            if rest.len() >= length {
                reply.body = rest[..length].to_vec();
                return Ok(reply);
            }
        }
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        answer.extend_from_slice(&buf[..n]);
    }
}

/// Whether the server closes `stream` within `deadline` (whatever it sends before closing is
/// discarded).
pub async fn closed_within(stream: &mut TcpStream, deadline: Duration) -> bool {
    let mut buf = [0u8; 4096];
    let drained = async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(deadline, drained).await.is_ok()
}

/// `text` percent-encoded for a query string.
pub fn query_escape(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The head of an answer and the bytes after it; an error if the head is not complete.
fn parse_head(raw: &[u8]) -> io::Result<(Reply, &[u8])> {
    let incomplete = || io::Error::new(io::ErrorKind::InvalidData, "no complete response head");
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").ok_or_else(incomplete)?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines.next().and_then(|l| l.split(' ').nth(1)).and_then(|s| s.parse().ok()).ok_or_else(incomplete)?;
    let headers =
        lines.filter_map(|l| l.split_once(':')).map(|(k, v)| (k.trim().to_string(), v.trim().to_string())).collect();
    Ok((Reply { status, headers, body: Vec::new() }, &raw[split + 4..]))
}

fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = raw.windows(2).position(|w| w == b"\r\n").unwrap();
        let size = usize::from_str_radix(std::str::from_utf8(&raw[..line_end]).unwrap().trim(), 16).unwrap();
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&raw[line_end + 2..line_end + 2 + size]);
        raw = &raw[line_end + 4 + size..];
    }
}
