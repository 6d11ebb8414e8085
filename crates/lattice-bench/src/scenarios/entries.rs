//! Entry codec rates from `lattice-core`, each against the Ed25519 limit it is bound by:
//!
//! - `entry.sign_encode`: `EntryBuilder::sign` (encode, sign, re-decode, hash) vs `limit.ed25519_sign`.
//! - `entry.decode_verify`: `VerifiedEntry::decode` vs `limit.ed25519_verify`.
//! - `entry.decode_verify_batch`: `VerifiedEntry::decode_batch` vs `limit.ed25519_verify_batch`.
//! - `entry.decode_trusted`: `VerifiedEntry::from_trusted_log` (replay's decode, no signature
//!   check) vs `limit.blake3_small`, since hashing the record is the one fixed cost left.
//!
//! Entries look like ordinary writes: one put of a 20-byte key and a 32-byte value, citing one
//! parent, chained to the author's previous entry.

use anyhow::{Result, ensure};
use lattice_core::{EntryBuilder, Hash, Hlc, Identity, Op, StoreId, VerifiedEntry};

use super::Ctx;
use crate::limits::VERIFY_BATCH_SIZE;
use crate::measure::measure;
use crate::report::Row;

const VALUE_BYTES: usize = 32;
/// An arbitrary fixed wall clock (2023-11-14), so entry sizes do not depend on the date.
const BASE_WALL_MS: u64 = 1_700_000_000_000;

/// The `seq`-th entry (from 1) of an author, chained to `prev`.
fn builder(store: StoreId, seq: u64, prev: Hash) -> EntryBuilder {
    EntryBuilder::new(store, seq)
        .prev_hash(prev)
        .timestamp(Hlc::new(BASE_WALL_MS + seq, 0))
        .parent_hashes(vec![Hash::of(&seq.to_le_bytes())])
        .op(Op::put(format!("bench/key/{:010}", seq % 1_000_000), vec![b'v'; VALUE_BYTES]))
}

pub fn run(ctx: &Ctx) -> Result<Vec<Row>> {
    let id = Identity::generate();
    let store = StoreId::new_random();
    let limits = &ctx.limits;

    let (mut seq, mut prev) = (0u64, Hash::ZERO);
    let mut sign_next = || -> Result<VerifiedEntry> {
        seq += 1;
        let entry = builder(store, seq, prev).sign(&id)?;
        prev = entry.hash();
        Ok(entry)
    };
    let sign = measure(ctx.budget, || sign_next().map(|_| 1))?;

    // A pool of distinct entries to decode, a whole number of batches.
    let pool_size = ctx.mode.pick(4, 64) * VERIFY_BATCH_SIZE;
    let pool: Vec<Vec<u8>> =
        (0..pool_size).map(|_| sign_next().map(VerifiedEntry::into_bytes)).collect::<Result<_>>()?;
    let entry_bytes = pool.iter().map(Vec::len).sum::<usize>() / pool.len();

    let mut i = 0;
    let decode = measure(ctx.budget, || {
        VerifiedEntry::decode(pool[i].clone())?;
        i = (i + 1) % pool.len();
        Ok(1)
    })?;

    let mut batches = pool.chunks(VERIFY_BATCH_SIZE).cycle();
    let decode_batch = measure(ctx.budget, || {
        let batch = batches.next().map(<[Vec<u8>]>::to_vec).unwrap_or_default();
        let n = batch.len();
        let decoded = VerifiedEntry::decode_batch(batch);
        ensure!(decoded.iter().all(Result::is_ok), "a batch of valid entries failed to decode");
        Ok(n as u64)
    })?;

    let mut i = 0;
    let trusted = measure(ctx.budget, || {
        VerifiedEntry::from_trusted_log(pool[i].clone())?;
        i = (i + 1) % pool.len();
        Ok(1)
    })?;

    let shaped = |row: Row| row.param("entry_bytes", entry_bytes).param("ops_per_entry", 1);
    Ok(vec![
        shaped(Row::from_rate("entry.sign_encode", "entry/s", sign)).ratio_to(&limits.sign),
        shaped(Row::from_rate("entry.decode_verify", "entry/s", decode).param("pool", pool_size))
            .ratio_to(&limits.verify),
        shaped(Row::from_rate("entry.decode_verify_batch", "entry/s", decode_batch))
            .param("pool", pool_size)
            .param("batch", VERIFY_BATCH_SIZE)
            .ratio_to(&limits.verify_batch),
        shaped(Row::from_rate("entry.decode_trusted", "entry/s", trusted).param("pool", pool_size))
            .ratio_to(&limits.blake3_small),
    ])
}
