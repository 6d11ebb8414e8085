//! Length-delimited `PeerMessage` frames on a QUIC bidirectional stream.
//!
//! Frame: `u32 big-endian length | PeerMessage bytes` (tokio-util's `LengthDelimitedCodec`).
//! A frame longer than the receiver's cap fails the stream before anything of that size is
//! allocated: the cap is [`FIRST_FRAME`] for the first frame of a stream from a peer not known
//! to be an active member (whatever the frame is), and [`MAX_FRAME`] once the side reading it
//! has admitted the session, or from the start if the gate saw an active member.

use futures::{SinkExt, StreamExt};
use iroh::endpoint::{RecvStream, SendStream};
use lattice_core::AuthorId;
use lattice_core::proto::{PeerMessage, peer_message::Message as Msg};
use prost::Message;
use std::time::Duration;
use tokio_util::codec::{FramedRead, FramedWrite, LengthDelimitedCodec};

use crate::error::NetError;

/// Largest frame: one maximal entry (4 MiB) plus framing slack.
pub(crate) const MAX_FRAME: usize = lattice_core::entry::MAX_ENTRY_BYTES + 64 * 1024;

/// Cap on the first frame of a stream from a peer not known to be an active member: a join
/// request, an invited node's root-store sync request (a state of up to ~800 authors), or a
/// refusal. Until such a peer's session is admitted, nothing it sends may cost more.
pub(crate) const FIRST_FRAME: usize = 64 * 1024;

fn codec(max_frame: usize) -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder().big_endian().length_field_length(4).max_frame_length(max_frame).new_codec()
}

/// The sending half of a peer stream.
pub struct FrameSender {
    inner: FramedWrite<SendStream, LengthDelimitedCodec>,
    peer: AuthorId,
}

/// The receiving half of a peer stream.
pub struct FrameReceiver {
    inner: FramedRead<RecvStream, LengthDelimitedCodec>,
    peer: AuthorId,
    idle_timeout: Duration,
}

/// Frames both halves of a stream with `peer` (named in errors).
pub(crate) fn split(
    send: SendStream,
    recv: RecvStream,
    peer: AuthorId,
    idle_timeout: Duration,
) -> (FrameSender, FrameReceiver) {
    (
        FrameSender { inner: FramedWrite::new(send, codec(MAX_FRAME)), peer },
        FrameReceiver { inner: FramedRead::new(recv, codec(FIRST_FRAME)), peer, idle_timeout },
    )
}

impl FrameSender {
    /// Sends one message.
    pub async fn send(&mut self, msg: Msg) -> Result<(), NetError> {
        let bytes = PeerMessage { message: Some(msg) }.encode_to_vec();
        let frame: bytes::Bytes = bytes.into();
        self.inner
            .send(frame)
            .await
            .map_err(|e: std::io::Error| NetError::Connection { peer: self.peer, reason: e.to_string() })
    }

    /// Sends an error message and finishes the stream (best effort).
    pub async fn refuse(&mut self, message: String) {
        let _ = self.send(Msg::Error(lattice_core::proto::Error { message })).await;
        self.finish().await;
    }

    /// Flushes and finishes the stream.
    pub async fn finish(&mut self) {
        let _ = SinkExt::<bytes::Bytes>::flush(&mut self.inner).await;
        let _ = self.inner.get_mut().finish();
    }
}

impl FrameReceiver {
    /// Lifts the cap from [`FIRST_FRAME`] to [`MAX_FRAME`]: the peer is an active member, or
    /// the session is admitted (the responder checked the peer's membership for this store; the
    /// initiator got the responder's state), so entry batches may follow.
    pub(crate) fn admit_full_frames(&mut self) {
        self.inner.decoder_mut().set_max_frame_length(MAX_FRAME);
    }

    /// The next message; `Ok(None)` when the peer finished the stream cleanly.
    pub async fn recv(&mut self) -> Result<Option<Msg>, NetError> {
        let peer = self.peer;
        let next = tokio::time::timeout(self.idle_timeout, self.inner.next()).await.map_err(|_| NetError::Timeout {
            peer,
            what: "waiting for a message",
            secs: self.idle_timeout.as_secs(),
        })?;
        match next {
            None => Ok(None),
            // The codec says InvalidData for a frame past the cap; anything else is the stream.
            Some(Err(e)) if e.kind() == std::io::ErrorKind::InvalidData => {
                Err(NetError::Protocol { peer, reason: format!("bad frame: {e}") })
            }
            Some(Err(e)) => Err(NetError::Connection { peer, reason: e.to_string() }),
            Some(Ok(bytes)) => {
                let msg = PeerMessage::decode(bytes.freeze())
                    .map_err(|e| NetError::Protocol { peer, reason: format!("undecodable message: {e}") })?;
                msg.message.map(Some).ok_or_else(|| NetError::Protocol { peer, reason: "empty message".into() })
            }
        }
    }

    /// Waits until the peer finishes the stream (or it breaks, or the idle timeout passes),
    /// discarding anything else it sends.
    pub async fn wait_end(&mut self) {
        while let Ok(Some(_)) = self.recv().await {}
    }

    /// The next message, which must exist.
    pub async fn expect(&mut self) -> Result<Msg, NetError> {
        match self.recv().await? {
            Some(Msg::Error(e)) => Err(NetError::Refused { peer: self.peer, message: e.message }),
            Some(m) => Ok(m),
            None => Err(NetError::Connection { peer: self.peer, reason: "stream closed early".into() }),
        }
    }
}
