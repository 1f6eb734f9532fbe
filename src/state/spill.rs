//! The local append-only spill file: each customer's latest snapshot bytes, off the heap.
//!
//! Entry layout (all integers big-endian):
//!
//! ```text
//! u16 ext_len | ext (UTF-8) | u32 n_rel | n_rel × REL | value
//! REL = u64 relation_key_hash | u64 fingerprint | i64 window since | i64 window before
//! ```
//!
//! The window is the narrowest add-time window the relation was seen in, in Unix seconds;
//! `(0, 0)` when unknown (a state record written before windows were kept).
//!
//! An entry is addressed by a packed location `offset << 24 | len` (40-bit offset: 1 TiB of file;
//! 24-bit length: entries up to 16 MiB). Writes go through an in-memory tail buffer; reads of the
//! tail are served from it, reads of the rest use positioned reads (`FileExt::read_exact_at`), so
//! `&self` suffices to read. The file is a cache, replaced by a new empty file when opened.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::error::StateError;

/// Bits of the packed location that hold the entry length.
const LEN_BITS: u32 = 24;
/// Largest entry, in bytes.
pub const MAX_ENTRY_LEN: usize = (1 << LEN_BITS) - 1;
/// Largest addressable offset (exclusive).
const MAX_OFFSET: u64 = 1 << (64 - LEN_BITS);
/// Flush the tail buffer to the file once it holds this much.
const BUFFER_BYTES: usize = 1 << 20;
/// Fixed bytes of an entry besides ext, relations and value.
const ENTRY_OVERHEAD: usize = 2 + 4;
/// Bytes of one relation in an entry (see the module doc).
pub const REL_BYTES: usize = 32;

/// Packs an entry location.
pub fn pack(offset: u64, len: usize) -> u64 {
    (offset << LEN_BITS) | len as u64
}

/// Unpacks an entry location into `(offset, len)`.
pub fn unpack(loc: u64) -> (u64, usize) {
    (loc >> LEN_BITS, (loc & MAX_ENTRY_LEN as u64) as usize)
}

/// One entry read back from the spill file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpillEntry {
    bytes: Vec<u8>,
    ext_end: usize,
    rel_end: usize,
}

impl SpillEntry {
    /// The customer's externalUserId.
    pub fn ext(&self) -> &[u8] {
        self.bytes.get(2..self.ext_end).unwrap_or_default()
    }

    /// Relation pairs (`relation_key_hash`, `fingerprint`).
    pub fn relations(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.relation_windows().map(|(k, f, _)| (k, f))
    }

    /// Relations with their window: (`relation_key_hash`, `fingerprint`, (since, before));
    /// the window is `(0, 0)` when unknown.
    pub fn relation_windows(&self) -> impl Iterator<Item = (u64, u64, (i64, i64))> + '_ {
        self.relation_bytes().chunks_exact(REL_BYTES).map(|c| {
            (
                be_u64(&c[..8]),
                be_u64(&c[8..16]),
                (be_u64(&c[16..24]) as i64, be_u64(&c[24..32]) as i64),
            )
        })
    }

    /// The relations in entry layout (`REL_BYTES` each).
    pub fn relation_bytes(&self) -> &[u8] {
        self.bytes
            .get(self.ext_end + 4..self.rel_end)
            .unwrap_or_default()
    }

    /// The snapshot value bytes.
    pub fn into_value(mut self) -> Vec<u8> {
        self.bytes.drain(..self.rel_end.min(self.bytes.len()));
        self.bytes
    }
}

/// Reads a big-endian u64 from exactly 8 bytes (shorter input reads as zero-padded).
pub fn be_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    let n = b.len().min(8);
    a[..n].copy_from_slice(&b[..n]);
    u64::from_be_bytes(a)
}

/// The append-only spill file.
#[derive(Debug)]
pub struct Spill {
    path: PathBuf,
    /// `None` until first needed (a detached placeholder never opens it).
    file: Option<File>,
    /// Bytes already written to the file.
    flushed: u64,
    /// Tail not yet written; starts at offset `flushed`.
    buffer: Vec<u8>,
}

impl Spill {
    /// Creates `dir/state.spill` (replacing any previous one), creating `dir` if needed.
    pub fn create(dir: &Path) -> Result<Spill, StateError> {
        std::fs::create_dir_all(dir).map_err(|source| StateError::Spill {
            path: dir.to_path_buf(),
            action: "create directory",
            source,
        })?;
        let path = dir.join("state.spill");
        let file = open_fresh(&path)?;
        Ok(Spill {
            path,
            file: Some(file),
            flushed: 0,
            buffer: Vec::with_capacity(BUFFER_BYTES),
        })
    }

    /// A spill that shares the path but holds no file until it is written to.
    pub fn detached(&self) -> Spill {
        Spill {
            path: self.path.clone(),
            file: None,
            flushed: 0,
            buffer: Vec::new(),
        }
    }

    /// The same spill under a new name (after its file was renamed to `path`).
    pub fn relocated(mut self, path: PathBuf) -> Spill {
        Spill {
            path,
            file: self.file.take(),
            flushed: self.flushed,
            buffer: std::mem::take(&mut self.buffer),
        }
    }

    /// Closes the file without deleting it (its path now names another spill's file).
    pub fn forget(mut self) {
        self.disown();
    }

    /// Closes the file without deleting it on drop; the spill is unusable afterwards.
    pub fn disown(&mut self) {
        self.file = None;
        self.buffer = Vec::new();
        self.flushed = 0;
    }

    /// Path of the spill file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Logical length of the spill (file plus tail buffer).
    pub fn len(&self) -> u64 {
        self.flushed + self.buffer.len() as u64
    }

    /// Whether nothing was appended.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forgets every entry and starts a new empty file.
    pub fn reset(&mut self) -> Result<(), StateError> {
        self.buffer.clear();
        self.flushed = 0;
        self.file = Some(open_fresh(&self.path)?);
        Ok(())
    }

    /// Appends an entry and returns its packed location. `relations` must be a multiple of
    /// `REL_BYTES` bytes (checked by the caller).
    pub fn append(
        &mut self,
        key_hash: u64,
        ext: &str,
        relations: &[u8],
        value: &[u8],
    ) -> Result<u64, StateError> {
        let len = ENTRY_OVERHEAD + ext.len() + relations.len() + value.len();
        let ext_len = u16::try_from(ext.len()).ok();
        let n_rel = u32::try_from(relations.len() / REL_BYTES).ok();
        let (Some(ext_len), Some(n_rel)) = (ext_len, n_rel) else {
            return Err(StateError::SnapshotTooLarge {
                key_hash,
                len,
                max: MAX_ENTRY_LEN,
            });
        };
        if len > MAX_ENTRY_LEN {
            return Err(StateError::SnapshotTooLarge {
                key_hash,
                len,
                max: MAX_ENTRY_LEN,
            });
        }
        let offset = self.len();
        if offset + len as u64 >= MAX_OFFSET {
            return Err(StateError::SpillFull {
                path: self.path.clone(),
                offset,
            });
        }
        if self.buffer.len() + len > BUFFER_BYTES {
            self.flush()?;
        }
        self.buffer.extend_from_slice(&ext_len.to_be_bytes());
        self.buffer.extend_from_slice(ext.as_bytes());
        self.buffer.extend_from_slice(&n_rel.to_be_bytes());
        self.buffer.extend_from_slice(relations);
        self.buffer.extend_from_slice(value);
        Ok(pack(offset, len))
    }

    /// Appends an entry already in spill layout (used when compacting).
    pub fn append_raw(&mut self, entry: &[u8]) -> Result<u64, StateError> {
        let offset = self.len();
        if self.buffer.len() + entry.len() > BUFFER_BYTES {
            self.flush()?;
        }
        self.buffer.extend_from_slice(entry);
        Ok(pack(offset, entry.len()))
    }

    /// Writes the tail buffer to the file.
    pub fn flush(&mut self) -> Result<(), StateError> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        if self.file.is_none() {
            self.file = Some(open_fresh(&self.path)?);
        }
        let Some(file) = self.file.as_mut() else {
            return Ok(());
        };
        file.write_all(&self.buffer)
            .map_err(|source| StateError::Spill {
                path: self.path.clone(),
                action: "write",
                source,
            })?;
        self.flushed += self.buffer.len() as u64;
        self.buffer.clear();
        Ok(())
    }

    /// Reads the raw bytes of the entry at `loc`.
    pub fn read_raw(&self, loc: u64) -> Result<Vec<u8>, StateError> {
        let (offset, len) = unpack(loc);
        if offset + len as u64 > self.len() {
            return Err(self.corrupt(offset, "location past the end of the spill".into()));
        }
        if offset >= self.flushed {
            let start = (offset - self.flushed) as usize;
            return self
                .buffer
                .get(start..start + len)
                .map(<[u8]>::to_vec)
                .ok_or_else(|| self.corrupt(offset, "entry straddles the tail buffer".into()));
        }
        let mut bytes = vec![0u8; len];
        let file = self
            .file
            .as_ref()
            .ok_or_else(|| self.corrupt(offset, "spill file not open".into()))?;
        file.read_exact_at(&mut bytes, offset)
            .map_err(|source| StateError::Spill {
                path: self.path.clone(),
                action: "read",
                source,
            })?;
        Ok(bytes)
    }

    /// Reads and parses the entry at `loc`.
    pub fn read(&self, loc: u64) -> Result<SpillEntry, StateError> {
        let bytes = self.read_raw(loc)?;
        let (offset, _) = unpack(loc);
        let ext_len = bytes
            .get(..2)
            .map(be_u16)
            .ok_or_else(|| self.corrupt(offset, "truncated".into()))?;
        let ext_end = 2 + ext_len as usize;
        let n_rel = bytes
            .get(ext_end..ext_end + 4)
            .map(be_u32)
            .ok_or_else(|| self.corrupt(offset, "truncated after ext".into()))?;
        let rel_end = ext_end + 4 + n_rel as usize * REL_BYTES;
        if rel_end > bytes.len() {
            return Err(self.corrupt(
                offset,
                format!("{n_rel} relations do not fit in {} bytes", bytes.len()),
            ));
        }
        Ok(SpillEntry {
            bytes,
            ext_end,
            rel_end,
        })
    }

    fn corrupt(&self, offset: u64, reason: String) -> StateError {
        StateError::CorruptSpill {
            path: self.path.clone(),
            offset,
            reason,
        }
    }
}

impl Drop for Spill {
    fn drop(&mut self) {
        // The file is a cache of the state topic; do not leave hundreds of MB behind. A detached
        // placeholder never opened it and must not delete the live store's file.
        if self.file.take().is_some() {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Replaces whatever file is at `path` by a new empty one. A new inode, not a truncation: a
/// store still holding the old file (a cancelled restore's thread) cannot write into it.
fn open_fresh(path: &Path) -> Result<File, StateError> {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => {
            return Err(StateError::Spill {
                path: path.to_path_buf(),
                action: "remove stale file",
                source,
            })
        }
    }
    OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|source| StateError::Spill {
            path: path.to_path_buf(),
            action: "create",
            source,
        })
}

fn be_u16(b: &[u8]) -> u16 {
    u16::from_be_bytes([
        b.first().copied().unwrap_or(0),
        b.get(1).copied().unwrap_or(0),
    ])
}

fn be_u32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    let n = b.len().min(4);
    a[..n].copy_from_slice(&b[..n]);
    u32::from_be_bytes(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rel(pairs: &[(u64, u64)]) -> Vec<u8> {
        pairs
            .iter()
            .flat_map(|(k, f)| {
                k.to_be_bytes()
                    .into_iter()
                    .chain(f.to_be_bytes())
                    .chain(100i64.to_be_bytes())
                    .chain(160i64.to_be_bytes())
            })
            .collect()
    }

    #[test]
    fn round_trip_through_buffer_and_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut spill = Spill::create(dir.path()).unwrap();
        let a = spill
            .append(1, "wmA", &rel(&[(5, 6), (7, 8)]), b"value-a")
            .unwrap();
        // Served from the tail buffer.
        let e = spill.read(a).unwrap();
        assert_eq!(e.ext(), b"wmA");
        assert_eq!(e.relations().collect::<Vec<_>>(), vec![(5, 6), (7, 8)]);
        assert_eq!(
            e.relation_windows().next(),
            Some((5, 6, (100, 160))),
            "window kept"
        );
        assert_eq!(e.clone().into_value(), b"value-a");
        // Push enough to force flushes, then read the first entry from the file.
        let big = vec![0xAB; 300_000];
        let mut locs = Vec::new();
        for i in 0..10 {
            locs.push(spill.append(2 + i, "wmB", &[], &big).unwrap());
        }
        assert!(spill.flushed > 0);
        assert_eq!(spill.read(a).unwrap().into_value(), b"value-a");
        for loc in locs {
            let e = spill.read(loc).unwrap();
            assert_eq!(e.relations().count(), 0);
            assert_eq!(e.into_value(), big);
        }
        let on_disk = std::fs::metadata(spill.path()).unwrap().len();
        assert_eq!(on_disk, spill.flushed);
    }

    #[test]
    fn reset_starts_a_new_file_and_drop_removes() {
        let dir = tempfile::tempdir().unwrap();
        let mut spill = Spill::create(dir.path()).unwrap();
        spill.append(1, "x", &[], &[1u8; 2_000_000]).unwrap();
        spill.flush().unwrap();
        assert!(std::fs::metadata(spill.path()).unwrap().len() > 0);
        spill.reset().unwrap();
        assert_eq!(std::fs::metadata(spill.path()).unwrap().len(), 0);
        assert!(spill.is_empty());
        let path = spill.path().to_path_buf();
        drop(spill);
        assert!(!path.exists());
    }

    #[test]
    fn rejects_oversized_and_bad_locations() {
        let dir = tempfile::tempdir().unwrap();
        let mut spill = Spill::create(dir.path()).unwrap();
        let err = spill
            .append(9, "x", &[], &vec![0; MAX_ENTRY_LEN])
            .unwrap_err();
        assert!(
            matches!(err, StateError::SnapshotTooLarge { key_hash: 9, .. }),
            "{err}"
        );
        assert!(matches!(
            spill.read(pack(10, 5)),
            Err(StateError::CorruptSpill { .. })
        ));
    }

    #[test]
    fn pack_unpack() {
        let loc = pack(123_456_789_012, 65_000);
        assert_eq!(unpack(loc), (123_456_789_012, 65_000));
    }
}
