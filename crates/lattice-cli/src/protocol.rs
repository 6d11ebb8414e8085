//! The control socket protocol (`DATA_DIR/lattice.sock`) and the output sink commands write to.
//!
//! Frames: `u32` big-endian length, then one JSON document (tokio-util's
//! `LengthDelimitedCodec`). A client sends one [`Request`] per connection; the owner answers with
//! any number of [`Reply::Stdout`] / [`Reply::Stderr`] frames and ends with [`Reply::Exit`] (or
//! one [`Reply::Prompt`]). Output is streamed as it is produced, which is how `watch` works over
//! the socket; the owner stops a command whose client has gone.
//!
//! ```text
//! -> {"type":"run","version":1,"argv":["put","k","-"],"stdin":"AAEC","terminal":false,"color":false}
//! <- {"type":"stdout","data":"b2sK"}            (base64: output is bytes)
//! <- {"type":"stderr","line":"error: ..."}
//! <- {"type":"alive"}                          (only if the request set keepalive_ms)
//! <- {"type":"exit","code":0}
//! ```
//!
//! An argument that is not UTF-8 (a key's raw bytes) travels as `{"b64":"..."}` in `argv`.

use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use futures::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use tokio::net::UnixStream;
use tokio::sync::mpsc;
use tokio_util::codec::{Framed, LengthDelimitedCodec};

/// Bumped on any incompatible change; a mismatch is reported, not guessed around.
pub const PROTOCOL_VERSION: u32 = 1;
/// Largest frame either side accepts: a 1 MiB value, base64-encoded, fits with room to spare.
pub const MAX_FRAME_BYTES: usize = 8 * 1024 * 1024;
/// Output is sent in pieces of at most this many bytes (before base64).
pub const STDOUT_CHUNK_BYTES: usize = 1024 * 1024;

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Request {
    /// Run one command. `argv` excludes the program name; `stdin` carries the value of
    /// `put KEY -`, read by the client.
    Run {
        version: u32,
        #[serde(with = "os_words")]
        argv: Vec<OsString>,
        #[serde(default, skip_serializing_if = "Option::is_none", with = "opt_b64")]
        stdin: Option<Vec<u8>>,
        /// The client shows output line by line (a shell or a terminal), see `RunOptions`.
        #[serde(default)]
        terminal: bool,
        /// While the command runs, send [`Reply::Alive`] at least this often (milliseconds),
        /// so a client that gives up on a silent owner does not give up on a busy one. Absent:
        /// never (an older client, which would not know the frame).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        keepalive_ms: Option<u64>,
        /// The client's stdout takes colour (a terminal, no `NO_COLOR`). Absent (an older
        /// client): no colour.
        #[serde(default)]
        color: bool,
    },
    /// Which store a shell prompt should show.
    Prompt { version: u32 },
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Reply {
    Stdout {
        #[serde(with = "b64")]
        data: Vec<u8>,
    },
    Stderr {
        line: String,
    },
    Exit {
        code: i32,
    },
    Prompt {
        store: Option<String>,
    },
    /// The owner is still running the command (sent only when the request asked for it).
    Alive,
}

/// A framed control connection.
pub type Conn = Framed<UnixStream, LengthDelimitedCodec>;

pub fn framed(stream: UnixStream) -> Conn {
    Framed::new(stream, LengthDelimitedCodec::builder().max_frame_length(MAX_FRAME_BYTES).new_codec())
}

pub async fn send<T: Serialize>(conn: &mut Conn, msg: &T) -> std::io::Result<()> {
    let bytes = serde_json::to_vec(msg).map_err(std::io::Error::other)?;
    conn.send(tokio_util::bytes::Bytes::from(bytes)).await
}

/// The next message, `Ok(None)` at a clean end of stream.
pub async fn recv<T: for<'de> Deserialize<'de>>(conn: &mut Conn) -> std::io::Result<Option<T>> {
    match conn.next().await {
        None => Ok(None),
        Some(frame) => {
            let frame = frame?;
            serde_json::from_slice(&frame)
                .map(Some)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
        }
    }
}

/// Where a command writes: stdout bytes and stderr lines, in order, as [`Reply`] frames.
/// Cloning is cheap; the consumer (a terminal or a socket) sees the sink close when every clone
/// is dropped, and a command can wait for the consumer to go away with [`Out::closed`].
#[derive(Clone)]
pub struct Out {
    tx: mpsc::UnboundedSender<Reply>,
}

impl Out {
    pub fn channel() -> (Out, mpsc::UnboundedReceiver<Reply>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Out { tx }, rx)
    }
    /// Raw bytes to stdout. A consumer that has gone is not an error: output is dropped.
    pub fn bytes(&self, data: impl Into<Vec<u8>>) {
        let data = data.into();
        for chunk in data.chunks(STDOUT_CHUNK_BYTES) {
            let _ = self.tx.send(Reply::Stdout { data: chunk.to_vec() });
        }
    }
    /// One line of text to stdout.
    pub fn line(&self, text: impl std::fmt::Display) {
        self.bytes(format!("{text}\n"));
    }
    /// A JSON document (pretty) to stdout.
    pub fn json(&self, value: &serde_json::Value) {
        // Serialising a `Value` cannot fail.
        self.line(serde_json::to_string_pretty(value).unwrap_or_default());
    }
    /// One line to stderr.
    pub fn err(&self, line: impl std::fmt::Display) {
        let _ = self.tx.send(Reply::Stderr { line: line.to_string() });
    }
    /// Resolves when the consumer has stopped listening (e.g. a socket client went away).
    pub async fn closed(&self) {
        self.tx.closed().await
    }
}

mod b64 {
    use super::*;
    pub fn serialize<S: serde::Serializer>(data: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&B64.encode(data))
    }
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        B64.decode(text).map_err(serde::de::Error::custom)
    }
}

mod opt_b64 {
    use super::*;
    pub fn serialize<S: serde::Serializer>(data: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match data {
            Some(d) => s.serialize_some(&B64.encode(d)),
            None => s.serialize_none(),
        }
    }
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        let text: Option<String> = Option::deserialize(d)?;
        text.map(|t| B64.decode(t).map_err(serde::de::Error::custom)).transpose()
    }
}

/// Words as JSON strings, except one that is not UTF-8: `{"b64": "..."}` of its bytes.
mod os_words {
    use super::*;

    #[derive(Serialize, Deserialize)]
    #[serde(untagged)]
    enum Word {
        Text(String),
        Bytes { b64: String },
    }

    pub fn serialize<S: serde::Serializer>(words: &[OsString], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(words.iter().map(|w| match w.to_str() {
            Some(text) => Word::Text(text.to_owned()),
            None => Word::Bytes { b64: B64.encode(w.as_bytes()) },
        }))
    }
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<OsString>, D::Error> {
        let words: Vec<Word> = Vec::deserialize(d)?;
        words
            .into_iter()
            .map(|w| match w {
                Word::Text(text) => Ok(OsString::from(text)),
                Word::Bytes { b64 } => B64.decode(b64).map(OsString::from_vec).map_err(serde::de::Error::custom),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_shapes() {
        let req = Request::Run {
            version: 1,
            argv: vec!["put".into(), "k".into(), "-".into()],
            stdin: Some(vec![0, 1, 2]),
            terminal: false,
            keepalive_ms: None,
            color: false,
        };
        let text = serde_json::to_string(&req).unwrap();
        assert_eq!(
            text,
            r#"{"type":"run","version":1,"argv":["put","k","-"],"stdin":"AAEC","terminal":false,"color":false}"#
        );
        assert_eq!(serde_json::from_str::<Request>(&text).unwrap(), req);
        let keepalive = Request::Run {
            version: 1,
            argv: vec![],
            stdin: None,
            terminal: true,
            keepalive_ms: Some(500),
            color: true,
        };
        let text = serde_json::to_string(&keepalive).unwrap();
        assert_eq!(text, r#"{"type":"run","version":1,"argv":[],"terminal":true,"keepalive_ms":500,"color":true}"#);
        assert_eq!(serde_json::to_string(&Reply::Alive).unwrap(), r#"{"type":"alive"}"#);
        let reply = Reply::Stdout { data: b"ok\n".to_vec() };
        let text = serde_json::to_string(&reply).unwrap();
        assert_eq!(text, r#"{"type":"stdout","data":"b2sK"}"#);
        assert_eq!(serde_json::from_str::<Reply>(&text).unwrap(), reply);
        let no_stdin: Request = serde_json::from_str(r#"{"type":"run","version":1,"argv":[]}"#).unwrap();
        let bytes = Request::Run {
            version: 1,
            argv: vec!["get".into(), OsString::from_vec(vec![0xff, 0])],
            stdin: None,
            terminal: false,
            keepalive_ms: None,
            color: false,
        };
        let text = serde_json::to_string(&bytes).unwrap();
        assert_eq!(text, r#"{"type":"run","version":1,"argv":["get",{"b64":"/wA="}],"terminal":false,"color":false}"#);
        assert_eq!(serde_json::from_str::<Request>(&text).unwrap(), bytes);
        assert!(matches!(
            no_stdin,
            Request::Run { stdin: None, terminal: false, keepalive_ms: None, color: false, .. }
        ));
    }

    #[tokio::test]
    async fn out_chunks_large_output_and_reports_closure() {
        let (out, mut rx) = Out::channel();
        out.bytes(vec![7u8; STDOUT_CHUNK_BYTES + 1]);
        let mut total = 0;
        for _ in 0..2 {
            match rx.recv().await.unwrap() {
                Reply::Stdout { data } => total += data.len(),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(total, STDOUT_CHUNK_BYTES + 1);
        drop(rx);
        out.closed().await;
    }
}
