//! JSON for the errors hyper answers by itself. A request hyper cannot parse (400), whose URI
//! is over hyper's limit (414) or whose head is too large (431) never reaches the router: hyper
//! writes a bare head with an empty body and closes. Every error of this API is JSON, so the
//! connection's socket is wrapped, and such a head is replaced on its way out.
//!
//! The test is exact: a response whose status is one of those and whose body is empty
//! (`content-length: 0`). No response of the router looks like that, since every error it
//! sends has a JSON body.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::reply::error_body;

/// A socket whose writes pass through, except hyper's own error heads (see the module).
pub(crate) struct JsonErrors<T> {
    inner: T,
    /// A rewritten answer still being written, and how much of it has been.
    pending: Vec<u8>,
    written: usize,
}

impl<T> JsonErrors<T> {
    pub(crate) fn new(inner: T) -> JsonErrors<T> {
        JsonErrors { inner, pending: Vec::new(), written: 0 }
    }
}

/// The JSON answer in place of `head` when it is one of hyper's own error heads.
fn rewrite(head: &[u8]) -> Option<Vec<u8>> {
    let message = match head.get(..13)? {
        b"HTTP/1.1 400 " => "malformed request",
        b"HTTP/1.1 414 " => "URI too long",
        b"HTTP/1.1 431 " => "request headers too large",
        _ => return None,
    };
    // The whole head and nothing after it: hyper writes its error heads in one piece.
    let text = std::str::from_utf8(head).ok()?.strip_suffix("\r\n\r\n")?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next()?;
    let mut empty_body = false;
    let mut kept = String::new();
    for line in lines {
        let (name, value) = line.split_once(':')?;
        if name.eq_ignore_ascii_case("content-length") {
            empty_body = value.trim() == "0";
        } else if !name.eq_ignore_ascii_case("connection") {
            kept.push_str(line);
            kept.push_str("\r\n");
        }
    }
    if !empty_body {
        return None;
    }
    let body = error_body(message);
    let answer = format!(
        "{status_line}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n{kept}\r\n{body}",
        body.len()
    );
    Some(answer.into_bytes())
}

impl<T: AsyncWrite + Unpin> JsonErrors<T> {
    /// Writes what is left of a rewritten answer.
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.pending.len() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.pending[self.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
        }
        Poll::Ready(Ok(()))
    }

    /// Takes `buf` as written if it is one of hyper's error heads, queueing its JSON answer
    /// instead; `None` if it passes through.
    fn poll_rewrite(&mut self, cx: &mut Context<'_>, buf: &[u8]) -> Option<Poll<io::Result<usize>>> {
        let answer = rewrite(buf)?;
        self.pending = answer;
        self.written = 0;
        // hyper sees its head as written; the answer goes out now or on the flush that follows.
        Some(match self.poll_pending(cx) {
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            _ => Poll::Ready(Ok(buf.len())),
        })
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for JsonErrors<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for JsonErrors<T> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_pending(cx))?;
        if let Some(done) = this.poll_rewrite(cx, buf) {
            return done;
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_pending(cx))?;
        // A head written alone is the first non-empty slice; a short write is allowed.
        if let Some(first) = bufs.iter().find(|b| !b.is_empty())
            && let Some(done) = this.poll_rewrite(cx, first)
        {
            return done;
        }
        Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_pending(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_pending(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_hyper_error_heads_are_rewritten() {
        let head = b"HTTP/1.1 414 URI Too Long\r\ncontent-length: 0\r\ndate: Mon, 01 Dec 2025 00:00:00 GMT\r\n\r\n";
        let answer = String::from_utf8(rewrite(head).unwrap_or_default()).unwrap_or_default();
        let body = "{\"error\":\"URI too long\"}\n";
        assert_eq!(
            answer,
            format!(
                "HTTP/1.1 414 URI Too Long\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
                 connection: close\r\ndate: Mon, 01 Dec 2025 00:00:00 GMT\r\n\r\n{body}",
                body.len()
            )
        );
        for untouched in [
            &b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: 20\r\n\r\n"[..],
            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n{}",
            b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n",
            b"HTTP/1.1 431 Request Header Fields Too Large\r\n",
            b"{\"error\":\"x\"}",
        ] {
            assert_eq!(rewrite(untouched), None, "{:?}", String::from_utf8_lossy(untouched));
        }
    }
}
