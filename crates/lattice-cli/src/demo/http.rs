//! Just enough of an HTTP/1.1 client for the demo's requests to its own API on 127.0.0.1: one
//! request per connection (`Connection: close`), the body read to the end.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A response: status code, body, and how long the request took (connect to last byte).
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
    pub took: Duration,
}

/// Sends `method path` with a bearer token and `body`; the whole response, within 10 s.
pub async fn request(addr: SocketAddr, method: &str, path: &str, token: &str, body: &[u8]) -> anyhow::Result<Response> {
    let started = Instant::now();
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await?;
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(body).await?;
        let mut reply = Vec::new();
        stream.read_to_end(&mut reply).await?;
        Ok::<_, std::io::Error>(reply)
    };
    let reply = tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .map_err(|_| anyhow!("{method} {path}: no answer within 10 s"))?
        .with_context(|| format!("{method} {path}"))?;
    let (status, body) = parse(&reply).with_context(|| format!("{method} {path}: a malformed response"))?;
    Ok(Response { status, body, took: started.elapsed() })
}

/// The status code and body of a complete response (plain or chunked body).
fn parse(reply: &[u8]) -> anyhow::Result<(u16, Vec<u8>)> {
    let end = reply.windows(4).position(|w| w == b"\r\n\r\n").ok_or_else(|| anyhow!("no end of headers"))?;
    let head = std::str::from_utf8(&reply[..end])?;
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).ok_or_else(|| anyhow!("no status code"))?;
    let body = &reply[end + 4..];
    let chunked = head.lines().any(|l| l.to_ascii_lowercase().starts_with("transfer-encoding: chunked"));
    Ok((status, if chunked { unchunk(body)? } else { body.to_vec() }))
}

fn unchunk(mut body: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line = body.windows(2).position(|w| w == b"\r\n").ok_or_else(|| anyhow!("a chunk without its size"))?;
        let size = usize::from_str_radix(std::str::from_utf8(&body[..line])?.trim(), 16)?;
        let start = line + 2;
        if size == 0 {
            return Ok(out);
        }
        let chunk = body.get(start..start + size).ok_or_else(|| anyhow!("a chunk cut short"))?;
        out.extend_from_slice(chunk);
        body = body.get(start + size + 2..).ok_or_else(|| anyhow!("a chunk cut short"))?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_and_chunked_bodies() {
        assert_eq!(parse(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nteal").unwrap(), (200, b"teal".to_vec()));
        let chunked =
            b"HTTP/1.1 401 Unauthorized\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        assert_eq!(parse(chunked).unwrap(), (401, b"abcde".to_vec()));
        assert!(parse(b"HTTP/1.1 200 OK\r\n").is_err());
        assert!(parse(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab").is_err());
    }
}
