//! A blocking HTTP/1.1 client for the tests of `serve --http`: one request per connection.
//! Included with `#[path = "common/web.rs"] mod web;` by the tests that need it.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

/// One blocking HTTP/1.1 request with a bearer token; returns the status and the body.
pub fn http(addr: SocketAddr, method: &str, path: &str, token: &str, body: &[u8]) -> (u16, Vec<u8>) {
    let mut stream = TcpStream::connect(addr).unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nAuthorization: Bearer {token}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let status = std::str::from_utf8(&raw[..split]).unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    (status, raw[split + 4..].to_vec())
}
