//! The author log: one append-only file per author per store, the source of truth.
//!
//! Record layout (all records back to back, no file header):
//!
//! ```text
//! offset  size  field
//! 0       4     payload length, u32 little-endian
//! 4       32    blake3(payload)
//! 36      len   payload: one encoded SignedEntry
//! ```
//!
//! [`AuthorLog::append`] buffers records in memory; [`AuthorLog::sync`] writes them with one
//! write and fsyncs. A record is durable once `sync` returns after it was appended. At open, records
//! past the indexed prefix are re-read: a short or checksum-failing record at the end of the
//! file is a torn write from a crash and is truncated with a warning; a bad record followed by a
//! valid one is corruption in the middle and is an error naming the file and offset.

use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use lattice_core::entry::MAX_ENTRY_BYTES;

/// Bytes before the payload: length (4) + checksum (32).
pub const HEADER_LEN: u64 = 36;
/// Largest payload a record may claim; anything larger is garbage, never an allocation.
pub const MAX_PAYLOAD: u32 = MAX_ENTRY_BYTES as u32;

/// Why an author log could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The log file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The author log.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// A record is damaged where it cannot be a torn tail (it is followed by a valid record, or
    /// lies in a range that was whole when it was chosen).
    #[error("{path}: corrupt record at byte offset {offset}: {reason}")]
    Corrupt {
        /// The author log.
        path: PathBuf,
        /// Where the record starts.
        offset: u64,
        /// What is wrong with it.
        reason: &'static str,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> LogError + '_ {
    move |source| LogError::Io { path: path.to_path_buf(), source }
}

/// Appends the encoding of one record (header + payload) to `out`.
fn encode_record_into(payload: &[u8], out: &mut Vec<u8>) {
    debug_assert!(payload.len() <= MAX_PAYLOAD as usize);
    out.reserve(HEADER_LEN as usize + payload.len());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(blake3::hash(payload).as_bytes());
    out.extend_from_slice(payload);
}

/// Buffered appends beyond this many bytes are written out early (still fsynced only by `sync`).
const MAX_PENDING: usize = 4 << 20;

/// An author log opened for appending. Appends are buffered in memory and written with one
/// write by [`AuthorLog::flush`] (or [`AuthorLog::sync`]).
#[derive(Debug)]
pub struct AuthorLog {
    path: PathBuf,
    file: File,
    /// Bytes in the file.
    written: u64,
    /// Records appended after `written`, not yet written to the file.
    pending: Vec<u8>,
}

impl AuthorLog {
    /// Opens (creating if absent) a log whose valid length is known, e.g. after [`recover`].
    /// A new log's name is made durable (its directory fsynced) before this returns, so a
    /// record acknowledged after [`sync`](Self::sync) cannot vanish with its file in a crash.
    pub fn open_at(path: &Path, len: u64) -> Result<Self, LogError> {
        // 0600 whatever the umask: a log holds the store's data (docs/design.md, Data directory).
        let file = match OpenOptions::new().read(true).write(true).create_new(true).mode(0o600).open(path) {
            Ok(file) => {
                crate::durable::created(path).map_err(io(path))?;
                file
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                OpenOptions::new().read(true).write(true).open(path).map_err(io(path))?
            }
            Err(e) => return Err(io(path)(e)),
        };
        let actual = file.metadata().map_err(io(path))?.len();
        if actual != len {
            file.set_len(len).map_err(io(path))?;
        }
        Ok(AuthorLog { path: path.to_path_buf(), file, written: len, pending: Vec::new() })
    }

    /// Length of the log, counting appended records not yet written to the file.
    pub fn len(&self) -> u64 {
        self.written + self.pending.len() as u64
    }

    /// Appends one record (buffered: not yet written, not yet durable) and returns its offset.
    pub fn append(&mut self, payload: &[u8]) -> Result<u64, LogError> {
        let offset = self.len();
        encode_record_into(payload, &mut self.pending);
        if self.pending.len() >= MAX_PENDING {
            self.flush()?;
        }
        Ok(offset)
    }

    /// Writes the buffered records to the file (one write; not yet durable).
    pub fn flush(&mut self) -> Result<(), LogError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        self.file.write_all_at(&self.pending, self.written).map_err(io(&self.path))?;
        self.written += self.pending.len() as u64;
        if self.pending.capacity() > MAX_PENDING {
            self.pending = Vec::new();
        } else {
            self.pending.clear();
        }
        Ok(())
    }

    /// Writes the buffered records and makes every appended record durable.
    pub fn sync(&mut self) -> Result<(), LogError> {
        self.flush()?;
        self.file.sync_data().map_err(io(&self.path))
    }

    /// Drops everything from `len` on, buffered or written (used to undo a group commit whose
    /// write or fsync failed).
    pub fn truncate(&mut self, len: u64) -> Result<(), LogError> {
        self.pending.clear();
        self.file.set_len(len).map_err(io(&self.path))?;
        self.written = len;
        Ok(())
    }

    /// Reads the record at `offset`, checking its checksum (buffered records included). The
    /// store never reads a record back by offset; the tests check appends and undo with it.
    #[cfg(test)]
    pub fn read_at(&self, offset: u64) -> Result<Vec<u8>, LogError> {
        match offset.checked_sub(self.written) {
            Some(at) => {
                let at = at as usize;
                let corrupt = |reason| LogError::Corrupt { path: self.path.clone(), offset, reason };
                let header: &[u8; HEADER_LEN as usize] = self
                    .pending
                    .get(at..at + HEADER_LEN as usize)
                    .and_then(|h| h.try_into().ok())
                    .ok_or_else(|| corrupt("record header cut short"))?;
                let (len, sum) = parse_header(header);
                let start = at + HEADER_LEN as usize;
                let payload =
                    self.pending.get(start..start + len as usize).ok_or_else(|| corrupt("record cut short"))?;
                if blake3::hash(payload).as_bytes() != &sum {
                    return Err(corrupt("checksum mismatch"));
                }
                Ok(payload.to_vec())
            }
            None => read_record_at(&self.file, &self.path, offset),
        }
    }
}

/// Reads and checks the record at `offset` of an open log file (a version `history` shows).
pub fn read_record_at(file: &File, path: &Path, offset: u64) -> Result<Vec<u8>, LogError> {
    let mut header = [0u8; HEADER_LEN as usize];
    file.read_exact_at(&mut header, offset).map_err(io(path))?;
    let (len, sum) = parse_header(&header);
    if len > MAX_PAYLOAD {
        return Err(LogError::Corrupt { path: path.to_path_buf(), offset, reason: "length over the limit" });
    }
    let mut payload = vec![0u8; len as usize];
    file.read_exact_at(&mut payload, offset + HEADER_LEN).map_err(io(path))?;
    if blake3::hash(&payload).as_bytes() != &sum {
        return Err(LogError::Corrupt { path: path.to_path_buf(), offset, reason: "checksum mismatch" });
    }
    Ok(payload)
}

fn parse_header(header: &[u8; HEADER_LEN as usize]) -> (u32, [u8; 32]) {
    let mut len = [0u8; 4];
    len.copy_from_slice(&header[..4]);
    let mut sum = [0u8; 32];
    sum.copy_from_slice(&header[4..]);
    (u32::from_le_bytes(len), sum)
}

/// Streams the records of a log from an offset up to an end, checking each checksum.
/// Reads through a buffer: memory is one record plus the buffer, whatever the log's size.
pub struct RecordReader {
    path: PathBuf,
    reader: BufReader<File>,
    pos: u64,
    end: u64,
}

/// What a record read yields: its offset and payload.
pub type Record = (u64, Vec<u8>);

impl RecordReader {
    pub fn open(path: &Path, from: u64, end: u64) -> Result<Self, LogError> {
        let mut file = File::open(path).map_err(io(path))?;
        file.seek(SeekFrom::Start(from)).map_err(io(path))?;
        Ok(RecordReader {
            path: path.to_path_buf(),
            reader: BufReader::with_capacity(256 * 1024, file),
            pos: from,
            end,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The next record before `end`, or `None` at `end`. A record that is cut short or fails
    /// its checksum within the range is corruption: the range was known-good when it was chosen.
    pub fn next_record(&mut self) -> Result<Option<Record>, LogError> {
        if self.pos >= self.end {
            return Ok(None);
        }
        let offset = self.pos;
        let corrupt = |reason| LogError::Corrupt { path: self.path.clone(), offset, reason };
        if self.end - offset < HEADER_LEN {
            return Err(corrupt("record header cut short"));
        }
        let mut header = [0u8; HEADER_LEN as usize];
        self.reader.read_exact(&mut header).map_err(io(&self.path))?;
        let (len, sum) = parse_header(&header);
        if len > MAX_PAYLOAD || offset + HEADER_LEN + len as u64 > self.end {
            return Err(corrupt("record length runs past the end"));
        }
        let mut payload = vec![0u8; len as usize];
        self.reader.read_exact(&mut payload).map_err(io(&self.path))?;
        if blake3::hash(&payload).as_bytes() != &sum {
            return Err(corrupt("checksum mismatch"));
        }
        self.pos = offset + HEADER_LEN + len as u64;
        Ok(Some((offset, payload)))
    }
}

impl Iterator for RecordReader {
    type Item = Result<Record, LogError>;
    fn next(&mut self) -> Option<Self::Item> {
        self.next_record().transpose()
    }
}

/// The result of checking a log's unindexed tail at open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recovery {
    /// Length of the valid prefix: records in `[from, valid_len)` are whole and checksummed.
    pub valid_len: u64,
    /// Bytes cut off the end (a torn write), 0 if the file was clean.
    pub truncated: u64,
}

/// Checks the records of `path` from `from` (the end of what is already indexed) to the end of
/// the file; truncates a torn tail (with a warning) and returns the valid length. Corruption that
/// is followed by a valid record is not a torn tail: it is reported, and nothing is truncated.
pub fn recover(path: &Path, from: u64) -> Result<Recovery, LogError> {
    let file = OpenOptions::new().read(true).write(true).open(path).map_err(io(path))?;
    let file_len = file.metadata().map_err(io(path))?.len();
    if file_len < from {
        return Err(LogError::Corrupt {
            path: path.to_path_buf(),
            offset: file_len,
            reason: "log is shorter than its index says",
        });
    }
    // The common case, whole records up to the end, is checked reading sequentially through a
    // buffer; the first bad record (if any) is examined below with positioned reads.
    let mut pos = scan_valid(&file, path, from, file_len)?;
    while pos < file_len {
        match record_end(&file, pos, file_len) {
            Some(next) => pos = next,
            None => {
                // A bad record. If the bytes after its claimed end still start a valid record,
                // the damage is in the middle of the log: refuse rather than cut good data.
                if let Some(claimed_next) = claimed_end(&file, pos, file_len)
                    && claimed_next < file_len
                    && record_end(&file, claimed_next, file_len).is_some()
                {
                    return Err(LogError::Corrupt {
                        path: path.to_path_buf(),
                        offset: pos,
                        reason: "checksum mismatch",
                    });
                }
                let truncated = file_len - pos;
                tracing::warn!(path = %path.display(), offset = pos, bytes = truncated, "truncating torn log tail");
                file.set_len(pos).map_err(io(path))?;
                file.sync_all().map_err(io(path))?;
                return Ok(Recovery { valid_len: pos, truncated });
            }
        }
    }
    Ok(Recovery { valid_len: file_len, truncated: 0 })
}

/// Reads the records from `from` on, in order, through a buffer. Returns the end of the last
/// whole, checksummed record before the first bad one (or `file_len` if all are good).
fn scan_valid(file: &File, path: &Path, from: u64, file_len: u64) -> Result<u64, LogError> {
    let mut reader = BufReader::with_capacity(256 * 1024, file.try_clone().map_err(io(path))?);
    reader.seek(SeekFrom::Start(from)).map_err(io(path))?;
    let mut pos = from;
    let mut payload = Vec::new();
    while file_len - pos >= HEADER_LEN {
        let mut header = [0u8; HEADER_LEN as usize];
        if reader.read_exact(&mut header).is_err() {
            break;
        }
        let (len, sum) = parse_header(&header);
        let end = pos + HEADER_LEN + len as u64;
        if len > MAX_PAYLOAD || end > file_len {
            break;
        }
        payload.resize(len as usize, 0);
        if reader.read_exact(&mut payload).is_err() || blake3::hash(&payload).as_bytes() != &sum {
            break;
        }
        pos = end;
    }
    Ok(pos)
}

/// The claimed end of the record at `pos`, if its header is readable and its length sane.
fn claimed_end(file: &File, pos: u64, file_len: u64) -> Option<u64> {
    if file_len - pos < HEADER_LEN {
        return None;
    }
    let mut header = [0u8; HEADER_LEN as usize];
    file.read_exact_at(&mut header, pos).ok()?;
    let (len, _) = parse_header(&header);
    (len <= MAX_PAYLOAD).then_some(pos + HEADER_LEN + len as u64)
}

/// The end of the record at `pos` if it is whole and its checksum matches.
fn record_end(file: &File, pos: u64, file_len: u64) -> Option<u64> {
    let end = claimed_end(file, pos, file_len)?;
    if end > file_len {
        return None;
    }
    let mut header = [0u8; HEADER_LEN as usize];
    file.read_exact_at(&mut header, pos).ok()?;
    let (len, sum) = parse_header(&header);
    let mut payload = vec![0u8; len as usize];
    file.read_exact_at(&mut payload, pos + HEADER_LEN).ok()?;
    (blake3::hash(&payload).as_bytes() == &sum).then_some(end)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn write_log(path: &Path, payloads: &[Vec<u8>]) -> Vec<u64> {
        let mut log = AuthorLog::open_at(path, 0).unwrap();
        let offsets = payloads.iter().map(|p| log.append(p).unwrap()).collect();
        log.sync().unwrap();
        offsets
    }

    fn read_all(path: &Path) -> Vec<Vec<u8>> {
        let len = std::fs::metadata(path).unwrap().len();
        RecordReader::open(path, 0, len).unwrap().map(|r| r.unwrap().1).collect()
    }

    fn payloads() -> Vec<Vec<u8>> {
        (0..5u8).map(|i| vec![i; 10 + i as usize * 7]).collect()
    }

    #[test]
    fn append_read_and_read_at() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log");
        let p = payloads();
        let offsets = write_log(&path, &p);
        assert_eq!(read_all(&path), p);
        let log = AuthorLog::open_at(&path, std::fs::metadata(&path).unwrap().len()).unwrap();
        assert_eq!(log.read_at(offsets[3]).unwrap(), p[3]);
        let len = log.len();
        assert_eq!(recover(&path, 0).unwrap(), Recovery { valid_len: len, truncated: 0 });
        // Reading from the middle resumes at a record boundary.
        let from: Vec<_> = RecordReader::open(&path, offsets[2], len).unwrap().map(|r| r.unwrap().1).collect();
        assert_eq!(from, p[2..].to_vec());
    }

    #[test]
    fn appends_are_buffered_until_flush_and_undone_by_truncate() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log");
        let p = payloads();
        let mut log = AuthorLog::open_at(&path, 0).unwrap();
        let first = log.append(&p[0]).unwrap();
        log.sync().unwrap();
        let durable = log.len();
        let offsets: Vec<u64> = p[1..].iter().map(|x| log.append(x).unwrap()).collect();
        // Offsets and length count the buffered records; the file does not hold them yet.
        assert_eq!(offsets[0], durable);
        assert_eq!(log.len(), durable + p[1..].iter().map(|x| HEADER_LEN + x.len() as u64).sum::<u64>());
        assert_eq!(std::fs::metadata(&path).unwrap().len(), durable);
        assert_eq!(log.read_at(first).unwrap(), p[0]);
        assert_eq!(log.read_at(offsets[2]).unwrap(), p[3]);
        // Undo: the buffered records are gone, and appends resume at the old end.
        log.truncate(durable).unwrap();
        assert_eq!(log.len(), durable);
        assert_eq!(log.append(&p[4]).unwrap(), durable);
        log.flush().unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), log.len());
        log.sync().unwrap();
        assert_eq!(read_all(&path), vec![p[0].clone(), p[4].clone()]);
    }

    /// Damages the last record of a log at each of its bytes in turn (`damage` gets the whole
    /// log and the position, and returns the damaged file) and checks that recovery cuts exactly
    /// that record and keeps the others. `what` names the damage in failure messages.
    fn damaging_the_last_record_cuts_it(what: &str, damage: impl Fn(&[u8], usize) -> Vec<u8>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log");
        let p = payloads();
        let offsets = write_log(&path, &p);
        let full = std::fs::read(&path).unwrap();
        let last = *offsets.last().unwrap() as usize;
        for at in last..full.len() {
            let damaged = damage(&full, at);
            std::fs::write(&path, &damaged).unwrap();
            let r = recover(&path, 0).unwrap();
            assert_eq!(r.valid_len as usize, last, "{what} at {at}");
            assert_eq!(r.truncated as usize, damaged.len() - last, "{what} at {at}");
            assert_eq!(read_all(&path), p[..p.len() - 1].to_vec(), "{what} at {at}");
        }
    }

    #[test]
    fn truncation_at_every_offset_of_the_last_record_recovers() {
        damaging_the_last_record_cuts_it("cut", |log, at| log[..at].to_vec());
    }

    #[test]
    fn flipped_byte_in_the_tail_record_is_truncated() {
        damaging_the_last_record_cuts_it("flip", |log, at| {
            let mut bytes = log.to_vec();
            bytes[at] ^= 0x20;
            bytes
        });
    }

    #[test]
    fn corruption_in_the_middle_is_an_error_naming_file_and_offset() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log");
        let offsets = write_log(&path, &payloads());
        let mut bytes = std::fs::read(&path).unwrap();
        let target = offsets[1] as usize + HEADER_LEN as usize + 2;
        bytes[target] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        let before = bytes.len();
        let err = recover(&path, 0).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("a.log") && text.contains(&format!("offset {}", offsets[1])), "{text}");
        assert_eq!(std::fs::metadata(&path).unwrap().len() as usize, before, "nothing truncated");
        let len = before as u64;
        let err = RecordReader::open(&path, 0, len).unwrap().find(|r| r.is_err()).unwrap().unwrap_err();
        assert!(matches!(err, LogError::Corrupt { offset, .. } if offset == offsets[1]));
    }

    #[test]
    fn recover_checks_only_from_the_given_offset() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log");
        let offsets = write_log(&path, &payloads());
        let len = std::fs::metadata(&path).unwrap().len();
        assert_eq!(recover(&path, offsets[4]).unwrap().valid_len, len);
        assert!(recover(&path, len + 1).is_err());
    }

    proptest! {
        #![proptest_config(lattice_testkit::proptest_config("log record parsing", 256))]

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("x.log");
            std::fs::write(&path, &bytes).unwrap();
            if let Ok(r) = recover(&path, 0) {
                let records: Vec<_> = RecordReader::open(&path, 0, r.valid_len).unwrap().collect();
                prop_assert!(records.iter().all(|r| r.is_ok()));
            }
        }
    }
}
