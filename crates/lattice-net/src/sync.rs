//! One sync session for one store over one bidirectional stream.
//!
//! ```text
//! initiator                                           responder
//!   SyncRequest { store, state_I, attestation_I }  ───────▶
//!                                  ◀───────   SyncRequest { store, state_R, sending, attestation_R }
//!   SyncEntries … SyncDone          ───────▶  (concurrently)
//!                                  ◀───────   SyncEntries … SyncDone
//! ```
//!
//! The attestations are each side's signed Merkle root and frontier (DESIGN.md §10). When the
//! initiator's describes the responder's own state, the responder answers
//! `SyncRequest { in_sync: true, attestation_R }` instead, and the session ends there: one
//! round trip of two small frames, whatever the size of the store.
//!
//! Each side streams what the other lacks (per author in seq order, merged across authors in
//! HLC order) in frames of at most [`BATCH_BYTES`], and ingests what it receives batch by batch,
//! so an interrupted session keeps everything received so far. Memory is bounded by a few
//! batches in flight on each side, whatever the size of the store.

use std::time::Duration;

use lattice_core::proto::{self, peer_message::Message as Msg};
use lattice_core::{Attestation, AuthorId, StoreId, SyncState};
use lattice_store::{EntrySource, IngestError, IngestOutcome, SyncStore};
use tokio::sync::{mpsc, watch};

use crate::error::NetError;
use crate::framing::{FrameReceiver, FrameSender};

/// Target size of one `SyncEntries` frame.
pub const BATCH_BYTES: usize = 1024 * 1024;
/// Batches buffered between the log reader and the socket, and between socket and ingest.
const PIPELINE_DEPTH: usize = 2;

/// Knobs of a session.
#[derive(Clone, Debug)]
pub struct SyncConfig {
    /// Longest silence tolerated while waiting for the peer.
    pub idle_timeout: Duration,
    /// Fault injection: the sender stops (without `SyncDone`) after this many batches.
    #[cfg(feature = "fault-injection")]
    pub cut_after_batches: Option<u64>,
}

impl Default for SyncConfig {
    fn default() -> Self {
        SyncConfig {
            idle_timeout: Duration::from_secs(30),
            #[cfg(feature = "fault-injection")]
            cut_after_batches: None,
        }
    }
}

/// What one session did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SyncOutcome {
    /// Entries we streamed to the peer.
    pub sent: u64,
    /// Entries the peer streamed to us.
    pub received: u64,
    /// Received entries applied, with the orphans they released.
    pub applied: u64,
    /// Received entries we already held.
    pub duplicates: u64,
    /// Received entries parked until what they depend on arrives.
    pub orphaned: u64,
    /// Entries held back because their author is not admitted to the mesh (yet).
    pub unauthorised: u64,
    /// Received entries stored but not applied: their author is removed or equivocated in this
    /// store (DESIGN.md §7.2, §7.4).
    pub refused: u64,
    /// Received entries refused (bad signature, wrong store, broken chain, …).
    pub rejected: u64,
    /// The two sides' attestations agreed: the session ended after its first round trip.
    pub in_sync: bool,
}

/// Live progress of the receiving side: entries received so far and (once the responders have
/// said so) how many to expect. Sessions add to it, so one sender can follow several sessions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SyncProgress {
    /// Entries received so far.
    pub received: u64,
    /// Entries the responders said they would send.
    pub expected: u64,
}

fn protocol(peer: AuthorId, reason: impl Into<String>) -> NetError {
    NetError::Protocol { peer, reason: reason.into() }
}

/// Runs the initiator side for `store`.
pub async fn initiate<S: SyncStore>(
    store: &S,
    peer: AuthorId,
    mut tx: FrameSender,
    mut rx: FrameReceiver,
    config: &SyncConfig,
    progress: Option<watch::Sender<SyncProgress>>,
) -> Result<SyncOutcome, NetError> {
    let (attestation, ours) = store.attestation().await?;
    tx.send(Msg::SyncRequest(proto::SyncRequest {
        store_id: store.store_id().as_bytes().to_vec(),
        state: Some(ours.to_proto()),
        sending: 0,
        attestation: Some(attestation.to_proto()),
        in_sync: false,
    }))
    .await?;
    let Msg::SyncRequest(reply) = rx.expect().await? else {
        return Err(protocol(peer, "expected the peer's sync state"));
    };
    if reply.in_sync {
        // The peer signed the state we hold: nothing to exchange.
        requested_store(peer, &reply)
            .ok()
            .filter(|id| *id == store.store_id())
            .ok_or_else(|| protocol(peer, "in-sync answer for another store"))?;
        store.peer_state(peer, &ours).await;
        return end_in_sync(peer, tx, rx).await;
    }
    // The responder took the session (it answered with its state): batches of entries follow.
    rx.admit_full_frames();
    let theirs = parse_state(peer, store.store_id(), &reply)?;
    store.peer_state(peer, &theirs).await;
    if let Some(p) = &progress {
        p.send_modify(|p| p.expected += reply.sending);
    }
    let missing = store.missing_entries(theirs).await?;
    exchange(store, peer, tx, rx, missing, config, progress).await
}

/// Runs the responder side, once the initiator's `SyncRequest` was read and admitted.
pub async fn respond<S: SyncStore>(
    store: &S,
    peer: AuthorId,
    request: proto::SyncRequest,
    mut tx: FrameSender,
    mut rx: FrameReceiver,
    config: &SyncConfig,
) -> Result<SyncOutcome, NetError> {
    rx.admit_full_frames();
    let theirs = parse_state(peer, store.store_id(), &request)?;
    store.peer_state(peer, &theirs).await;
    let (attestation, ours) = store.attestation().await?;
    let store_id = store.store_id().as_bytes().to_vec();
    if attests_our_state(peer, request.attestation.as_ref(), &attestation) {
        tx.send(Msg::SyncRequest(proto::SyncRequest {
            store_id,
            state: None,
            sending: 0,
            attestation: Some(attestation.to_proto()),
            in_sync: true,
        }))
        .await?;
        return end_in_sync(peer, tx, rx).await;
    }
    let missing = store.missing_entries(theirs).await?;
    tx.send(Msg::SyncRequest(proto::SyncRequest {
        store_id,
        state: Some(ours.to_proto()),
        sending: missing.total(),
        attestation: Some(attestation.to_proto()),
        in_sync: false,
    }))
    .await?;
    exchange(store, peer, tx, rx, missing, config, None).await
}

/// Whether the peer's attestation is its own, validly signed, and describes exactly the state
/// ours does (same root, same frontier).
fn attests_our_state(peer: AuthorId, theirs: Option<&proto::Attestation>, ours: &Attestation) -> bool {
    let Some(theirs) = theirs.and_then(Attestation::from_proto) else { return false };
    theirs.signer == peer && theirs.same_state(ours) && theirs.verify().is_ok()
}

/// Ends a session whose two sides hold the same state: each finishes its half of the stream.
async fn end_in_sync(peer: AuthorId, mut tx: FrameSender, mut rx: FrameReceiver) -> Result<SyncOutcome, NetError> {
    tx.finish().await;
    if let Some(msg) = rx.recv().await? {
        return Err(protocol(peer, format!("unexpected {} after an in-sync answer", message_name(&msg))));
    }
    tracing::debug!(%peer, "in sync: the attestations agree");
    Ok(SyncOutcome { in_sync: true, ..SyncOutcome::default() })
}

fn message_name(msg: &Msg) -> &'static str {
    match msg {
        Msg::JoinRequest(_) => "join request",
        Msg::JoinResponse(_) => "join response",
        Msg::SyncRequest(_) => "sync request",
        Msg::SyncEntries(_) => "entries",
        Msg::SyncDone(_) => "sync done",
        Msg::Error(_) => "error",
    }
}

/// The store a `SyncRequest` names.
pub fn requested_store(peer: AuthorId, request: &proto::SyncRequest) -> Result<StoreId, NetError> {
    StoreId::from_bytes(&request.store_id).map_err(|e| protocol(peer, format!("bad store id: {e}")))
}

fn parse_state(peer: AuthorId, store: StoreId, request: &proto::SyncRequest) -> Result<SyncState, NetError> {
    if requested_store(peer, request)? != store {
        return Err(protocol(peer, "sync state is for another store"));
    }
    let state = request.state.as_ref().ok_or_else(|| protocol(peer, "sync request without a state"))?;
    SyncState::from_proto(state).map_err(|e| protocol(peer, e.to_string()))
}

/// The equivocation proofs `store` holds, as many as fit in one batch's bytes (a proof is two
/// entries of up to 4 MiB each; one that does not fit is left for gossip and later sessions
/// rather than failing the session on the frame cap).
async fn proofs_to_send<S: SyncStore>(store: &S) -> Result<Vec<proto::EquivocationProof>, NetError> {
    let mut out = Vec::new();
    let mut bytes = 0;
    for (first, second) in store.proofs().await? {
        let size = first.len() + second.len() + 16;
        if bytes + size > BATCH_BYTES {
            tracing::debug!(size, "an equivocation proof does not fit in this session's SyncDone");
            continue;
        }
        bytes += size;
        out.push(proto::EquivocationProof { first, second });
    }
    Ok(out)
}

/// Streams `missing` to the peer while ingesting what the peer streams to us.
async fn exchange<S: SyncStore>(
    store: &S,
    peer: AuthorId,
    mut tx: FrameSender,
    mut rx: FrameReceiver,
    missing: S::Missing,
    #[allow(unused_variables)] config: &SyncConfig,
    progress: Option<watch::Sender<SyncProgress>>,
) -> Result<SyncOutcome, NetError> {
    let send = async {
        let (batches_tx, mut batches) = mpsc::channel::<Result<Vec<Vec<u8>>, NetError>>(PIPELINE_DEPTH);
        let reader = tokio::task::spawn_blocking(move || read_batches(missing, batches_tx));
        let mut sent = 0u64;
        let mut frames = 0u64;
        let mut result = Ok(());
        while let Some(batch) = batches.recv().await {
            let batch = match batch {
                Ok(b) => b,
                Err(e) => {
                    result = Err(e);
                    break;
                }
            };
            #[cfg(feature = "fault-injection")]
            if config.cut_after_batches.is_some_and(|n| frames >= n) {
                tracing::warn!(%peer, frames, "fault injection: cutting the sync short");
                return Err(NetError::Connection { peer, reason: "cut by fault injection".into() });
            }
            sent += batch.len() as u64;
            frames += 1;
            if let Err(e) = tx.send(Msg::SyncEntries(proto::SyncEntries { entries: batch })).await {
                result = Err(e);
                break;
            }
        }
        drop(batches);
        let _ = reader.await;
        result?;
        let proofs = proofs_to_send(store).await?;
        tx.send(Msg::SyncDone(proto::SyncDone { sent, proofs })).await?;
        tracing::debug!(%peer, sent, frames, "sent entries");
        Ok::<u64, NetError>(sent)
    };
    let receive = async {
        let (ingest_tx, mut ingest_rx) = mpsc::channel::<Vec<Vec<u8>>>(PIPELINE_DEPTH);
        let read = async {
            let ingest_tx = ingest_tx;
            loop {
                match rx.recv().await? {
                    Some(Msg::SyncEntries(e)) => {
                        if ingest_tx.send(e.entries).await.is_err() {
                            return Ok(Vec::new());
                        }
                    }
                    Some(Msg::SyncDone(done)) => return Ok(done.proofs),
                    Some(Msg::Error(e)) => return Err(NetError::Refused { peer, message: e.message }),
                    Some(_) => return Err(protocol(peer, "unexpected message during sync")),
                    None => return Err(NetError::Connection { peer, reason: "stream closed before SyncDone".into() }),
                }
            }
        };
        // Verify batch k+1 (all cores) while batch k is applied (the store's actor thread).
        let (verified_tx, mut verified_rx) = mpsc::channel::<lattice_store::Verified>(1);
        let verify = async {
            let verified_tx = verified_tx;
            while let Some(batch) = ingest_rx.recv().await {
                let verified = store.verify(batch).await?;
                if verified_tx.send(verified).await.is_err() {
                    break;
                }
            }
            Ok::<(), NetError>(())
        };
        let ingest = async {
            let mut outcome = SyncOutcome::default();
            while let Some(batch) = verified_rx.recv().await {
                let received = batch.len() as u64;
                outcome.received += received;
                for result in store.ingest_verified(batch).await? {
                    match result {
                        Ok(IngestOutcome::Applied { released }) => outcome.applied += 1 + released as u64,
                        Ok(IngestOutcome::Duplicate) => outcome.duplicates += 1,
                        Ok(IngestOutcome::Orphaned(_)) => outcome.orphaned += 1,
                        Ok(IngestOutcome::Unauthorised) => outcome.unauthorised += 1,
                        Ok(IngestOutcome::Refused) => outcome.refused += 1,
                        Err(IngestError::Store(e)) => return Err(NetError::Store(e)),
                        Err(e) => {
                            outcome.rejected += 1;
                            tracing::warn!(%peer, error = %e, "rejected an entry from peer");
                        }
                    }
                }
                if let Some(p) = &progress {
                    p.send_modify(|p| p.received += received);
                }
            }
            Ok::<SyncOutcome, NetError>(outcome)
        };
        let (read, verified, ingest) = tokio::join!(read, verify, ingest);
        verified?;
        // Whatever was ingested stays ingested, even if the stream broke.
        let outcome = ingest?;
        for proof in read? {
            match store.ingest_proof(proof.first, proof.second).await {
                Ok(true) => tracing::warn!(%peer, "learned of an equivocating author from peer"),
                Ok(false) => {}
                Err(IngestError::Store(e)) => return Err(NetError::Store(e)),
                Err(e) => tracing::warn!(%peer, error = %e, "rejected an equivocation proof from peer"),
            }
        }
        Ok::<SyncOutcome, NetError>(outcome)
    };
    let (sent, received) = tokio::join!(send, receive);
    let mut outcome = received?;
    outcome.sent = sent?;
    tx.finish().await;
    // The peer finishes its side only once it has received and ingested all we sent: waiting
    // for that end means closing the connection afterwards cannot drop our last entries.
    rx.wait_end().await;
    if outcome.rejected > 0 {
        tracing::warn!(%peer, rejected = outcome.rejected, "peer sent entries that were rejected");
    }
    Ok(outcome)
}

/// Reads the missing entries off the logs into batches of about [`BATCH_BYTES`] (blocking).
fn read_batches(missing: impl EntrySource, out: mpsc::Sender<Result<Vec<Vec<u8>>, NetError>>) {
    let mut batch = Vec::new();
    let mut bytes = 0;
    for entry in missing {
        match entry {
            Ok(e) => {
                let e = e.into_bytes();
                if bytes + e.len() > BATCH_BYTES && !batch.is_empty() {
                    if out.blocking_send(Ok(std::mem::take(&mut batch))).is_err() {
                        return;
                    }
                    bytes = 0;
                }
                bytes += e.len();
                batch.push(e);
            }
            Err(e) => {
                let _ = out.blocking_send(Err(NetError::Store(e)));
                return;
            }
        }
    }
    if !batch.is_empty() {
        let _ = out.blocking_send(Ok(batch));
    }
}
