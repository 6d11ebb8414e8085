//! The physical limits of this machine, measured in the same run as the scenarios so that every
//! figure can be stated as a share of what the hardware allows:
//!
//! - [`fsync_rate`]: small appends to a file on the data dir's disk, each followed by
//!   `sync_data()`. A durable commit needs one such fsync (DESIGN.md section 3), so this bounds
//!   single-writer durable puts.
//! - [`ed25519_verify_single`], [`ed25519_verify_batch`], [`ed25519_sign`]: signature work on
//!   messages the size of real entries. Every received entry is verified, every write signed.
//! - [`blake3_large`], [`blake3_small`]: hashing throughput, and hashes/s of entry-sized inputs
//!   (entry hashes, log record checksums).
//!
//! Each function returns a [`Row`] whose name starts with `limit.`; [`Limits::measure`] takes
//! them all.

use std::fs::OpenOptions;
use std::hint::black_box;
use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};

use crate::measure::{Budget, measure};
use crate::report::Row;

/// Size of one fsync probe record: about one small entry plus its log framing.
pub const FSYNC_RECORD_BYTES: usize = 200;
/// Cap on fsync probes, so a disk that ignores fsync (tmpfs) does not fill up within the budget.
pub const FSYNC_MAX_OPS: u64 = 200_000;
/// Size of the signed messages: about the `entry_bytes` of a one-key entry.
pub const SIGNED_MESSAGE_BYTES: usize = 150;
/// Signatures per batch verification.
pub const VERIFY_BATCH_SIZE: usize = 64;
/// Buffer hashed by the throughput figure: large enough that per-call overhead vanishes.
pub const BLAKE3_LARGE_BYTES: usize = 16 * 1024 * 1024;
/// Input of the small-hash figure: about one encoded entry.
pub const BLAKE3_SMALL_BYTES: usize = 200;
/// Small hashes per timed step, so reading the clock does not weigh on the figure.
const BLAKE3_SMALL_PER_STEP: usize = 256;

/// Every limit, each as a row of the report.
#[derive(Clone, Debug, PartialEq)]
pub struct Limits {
    pub fsync: Row,
    pub verify: Row,
    pub verify_batch: Row,
    pub sign: Row,
    pub blake3_large: Row,
    pub blake3_small: Row,
}

impl Limits {
    /// Measures every limit, each within `budget`; the fsync probe file lives in `dir`.
    pub fn measure(dir: &Path, budget: Budget) -> Result<Self> {
        Ok(Limits {
            fsync: fsync_rate(dir, budget)?,
            verify: ed25519_verify_single(budget)?,
            verify_batch: ed25519_verify_batch(budget)?,
            sign: ed25519_sign(budget)?,
            blake3_large: blake3_large(budget)?,
            blake3_small: blake3_small(budget)?,
        })
    }

    /// The limits as report rows, in a fixed order.
    pub fn rows(&self) -> Vec<Row> {
        vec![
            self.fsync.clone(),
            self.verify.clone(),
            self.verify_batch.clone(),
            self.sign.clone(),
            self.blake3_large.clone(),
            self.blake3_small.clone(),
        ]
    }
}

/// Appends [`FSYNC_RECORD_BYTES`]-byte records to a fresh file in `dir`, calling `sync_data()`
/// after each, as a log append does. The file grows with every record, as a log does, so the
/// file system must persist the new length too. The file is removed afterwards.
pub fn fsync_rate(dir: &Path, budget: Budget) -> Result<Row> {
    let path = dir.join("fsync-probe.log");
    let mut file = OpenOptions::new()
        .create_new(true)
        .append(true)
        .open(&path)
        .with_context(|| format!("creating fsync probe {}", path.display()))?;
    let record = [0xa5u8; FSYNC_RECORD_BYTES];
    let rate = measure(budget.capped(FSYNC_MAX_OPS), || {
        file.write_all(&record).with_context(|| format!("appending to {}", path.display()))?;
        file.sync_data().with_context(|| format!("fsync of {}", path.display()))?;
        Ok(1)
    })?;
    drop(file);
    std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
    Ok(Row::from_rate("limit.fsync", "fsync/s", rate)
        .param("record_bytes", FSYNC_RECORD_BYTES)
        .param("call", "append + sync_data")
        .param("dir", dir.display().to_string()))
}

/// Distinct keys, each with a random [`SIGNED_MESSAGE_BYTES`]-byte message and its signature.
struct Signed {
    keys: Vec<VerifyingKey>,
    messages: Vec<Vec<u8>>,
    signatures: Vec<Signature>,
}

fn signing_keys(n: usize) -> Vec<SigningKey> {
    (0..n)
        .map(|_| {
            let mut seed = [0u8; 32];
            rand::fill(&mut seed);
            SigningKey::from_bytes(&seed)
        })
        .collect()
}

fn random_message() -> Vec<u8> {
    let mut message = vec![0u8; SIGNED_MESSAGE_BYTES];
    rand::fill(message.as_mut_slice());
    message
}

fn signed(n: usize) -> Signed {
    let signers = signing_keys(n);
    let messages: Vec<Vec<u8>> = (0..n).map(|_| random_message()).collect();
    let signatures = signers.iter().zip(&messages).map(|(k, m)| k.sign(m)).collect();
    Signed { keys: signers.iter().map(SigningKey::verifying_key).collect(), messages, signatures }
}

/// Ed25519 verifications/s, one at a time with `verify_strict` (what `VerifiedEntry::decode`
/// does), cycling over [`VERIFY_BATCH_SIZE`] authors.
pub fn ed25519_verify_single(budget: Budget) -> Result<Row> {
    let s = signed(VERIFY_BATCH_SIZE);
    let mut i = 0;
    let rate = measure(budget, || {
        s.keys[i].verify_strict(&s.messages[i], &s.signatures[i]).context("a valid signature failed to verify")?;
        i = (i + 1) % s.keys.len();
        Ok(1)
    })?;
    Ok(Row::from_rate("limit.ed25519_verify", "verify/s", rate)
        .param("message_bytes", SIGNED_MESSAGE_BYTES)
        .param("call", "verify_strict"))
}

/// Ed25519 verifications/s in batches of [`VERIFY_BATCH_SIZE`] with `verify_batch` (what
/// `VerifiedEntry::decode_batch` does), counting each signature of a batch.
pub fn ed25519_verify_batch(budget: Budget) -> Result<Row> {
    let s = signed(VERIFY_BATCH_SIZE);
    let messages: Vec<&[u8]> = s.messages.iter().map(Vec::as_slice).collect();
    let rate = measure(budget, || {
        ed25519_dalek::verify_batch(&messages, &s.signatures, &s.keys)
            .context("a batch of valid signatures failed to verify")?;
        Ok(VERIFY_BATCH_SIZE as u64)
    })?;
    Ok(Row::from_rate("limit.ed25519_verify_batch", "verify/s", rate)
        .param("message_bytes", SIGNED_MESSAGE_BYTES)
        .param("batch", VERIFY_BATCH_SIZE)
        .param("call", "verify_batch"))
}

/// Ed25519 signatures/s over [`SIGNED_MESSAGE_BYTES`]-byte messages with one key, as a node
/// signs its own writes.
pub fn ed25519_sign(budget: Budget) -> Result<Row> {
    let key = signing_keys(1).remove(0);
    let mut message = random_message();
    let mut n = 0u8;
    let rate = measure(budget, || {
        // A different message each time, as each entry differs.
        message[0] = n;
        n = n.wrapping_add(1);
        black_box(key.sign(black_box(&message)));
        Ok(1)
    })?;
    Ok(Row::from_rate("limit.ed25519_sign", "sign/s", rate)
        .param("message_bytes", SIGNED_MESSAGE_BYTES)
        .param("call", "SigningKey::sign"))
}

/// blake3 throughput in MB/s (10^6 bytes) over a [`BLAKE3_LARGE_BYTES`] buffer, one thread.
pub fn blake3_large(budget: Budget) -> Result<Row> {
    let buffer: Vec<u8> = (0..BLAKE3_LARGE_BYTES).map(|i| (i % 251) as u8).collect();
    let rate = measure(budget, || {
        black_box(blake3::hash(black_box(&buffer)));
        Ok(1)
    })?;
    // `ops` counts whole buffers; the figure is bytes.
    let row = Row::from_rate("limit.blake3_large", "MB/s", rate)
        .param("buffer_bytes", BLAKE3_LARGE_BYTES)
        .param("threads", 1)
        .param("call", "blake3::hash");
    Ok(Row { value: rate.per_sec() * BLAKE3_LARGE_BYTES as f64 / 1e6, ..row })
}

/// blake3 hashes/s of [`BLAKE3_SMALL_BYTES`]-byte inputs, one thread.
pub fn blake3_small(budget: Budget) -> Result<Row> {
    let mut input = random_message();
    input.resize(BLAKE3_SMALL_BYTES, 0x5a);
    let mut n = 0u8;
    let rate = measure(budget, || {
        for _ in 0..BLAKE3_SMALL_PER_STEP {
            input[0] = n;
            n = n.wrapping_add(1);
            black_box(blake3::hash(black_box(&input)));
        }
        Ok(BLAKE3_SMALL_PER_STEP as u64)
    })?;
    Ok(Row::from_rate("limit.blake3_small", "hash/s", rate)
        .param("input_bytes", BLAKE3_SMALL_BYTES)
        .param("threads", 1)
        .param("call", "blake3::hash"))
}
