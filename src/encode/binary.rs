//! A minimal Avro binary writer and reader for the two fixed schemas: zigzag varints,
//! length-prefixed strings, union indexes, array blocks. Validated against apache-avro's own
//! decoder and against fastavro in the tests.

use super::error::EncodeError;

/// Appends a `long` (zigzag, then base-128 varint).
#[inline]
pub fn put_long(buf: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        buf.push((z as u8) | 0x80);
        z >>= 7;
    }
    buf.push(z as u8);
}

/// Appends a length as a `long` (array block counts and string lengths).
#[inline]
pub fn put_len(buf: &mut Vec<u8>, n: usize) {
    // A slice length never exceeds isize::MAX, so it fits an i64.
    put_long(buf, i64::try_from(n).unwrap_or(i64::MAX));
}

/// Appends a `string`.
#[inline]
pub fn put_str(buf: &mut Vec<u8>, s: &str) {
    put_len(buf, s.len());
    buf.extend_from_slice(s.as_bytes());
}

/// Appends a `["null","string"]` union.
#[inline]
pub fn put_opt_str(buf: &mut Vec<u8>, s: Option<&str>) {
    match s {
        None => buf.push(0),
        Some(s) => {
            buf.push(2); // zigzag(1)
            put_str(buf, s);
        }
    }
}

/// Appends a `boolean`.
#[inline]
pub fn put_bool(buf: &mut Vec<u8>, b: bool) {
    buf.push(u8::from(b));
}

/// Appends an array: one block with all items, then the terminating empty block.
#[inline]
pub fn put_array<T>(
    buf: &mut Vec<u8>,
    items: &[T],
    mut put: impl FnMut(&mut Vec<u8>, &T) -> Result<(), EncodeError>,
) -> Result<(), EncodeError> {
    if !items.is_empty() {
        put_len(buf, items.len());
        for it in items {
            put(buf, it)?;
        }
    }
    buf.push(0);
    Ok(())
}

/// A bounds-checked cursor over an Avro body.
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    what: &'static str,
}

impl<'a> Reader<'a> {
    /// A reader over `buf`; `what` names the record kind for error messages.
    pub fn new(buf: &'a [u8], what: &'static str) -> Self {
        Reader { buf, pos: 0, what }
    }

    /// An error at the current position.
    pub fn error(&self, problem: impl Into<String>) -> EncodeError {
        EncodeError::Malformed {
            what: self.what,
            offset: self.pos,
            problem: problem.into(),
        }
    }

    /// Reads a `long`.
    pub fn long(&mut self) -> Result<i64, EncodeError> {
        let mut z: u64 = 0;
        for shift in (0..64).step_by(7) {
            let b = *self
                .buf
                .get(self.pos)
                .ok_or_else(|| self.error("truncated varint"))?;
            self.pos += 1;
            z |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(((z >> 1) as i64) ^ -((z & 1) as i64));
            }
        }
        Err(self.error("varint longer than 10 bytes"))
    }

    /// Reads a non-negative length.
    fn len(&mut self) -> Result<usize, EncodeError> {
        let n = self.long()?;
        usize::try_from(n).map_err(|_| self.error(format!("negative length {n}")))
    }

    /// Reads a `string`.
    pub fn str(&mut self) -> Result<&'a str, EncodeError> {
        let n = self.len()?;
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| self.error(format!("string of {n} bytes runs past the end")))?;
        let bytes = self.buf.get(self.pos..end).unwrap_or_default();
        let s = std::str::from_utf8(bytes).map_err(|e| self.error(format!("bad UTF-8: {e}")))?;
        self.pos = end;
        Ok(s)
    }

    /// Reads a `["null","string"]` union.
    pub fn opt_str(&mut self) -> Result<Option<&'a str>, EncodeError> {
        match self.long()? {
            0 => Ok(None),
            1 => self.str().map(Some),
            i => Err(self.error(format!("union index {i} out of range"))),
        }
    }

    /// Reads a `boolean`.
    pub fn bool(&mut self) -> Result<bool, EncodeError> {
        let b = *self
            .buf
            .get(self.pos)
            .ok_or_else(|| self.error("truncated boolean"))?;
        self.pos += 1;
        match b {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(self.error(format!("boolean byte {b}"))),
        }
    }

    /// Reads an array of any block structure, calling `item` once per element.
    pub fn array<T>(
        &mut self,
        mut item: impl FnMut(&mut Self) -> Result<T, EncodeError>,
    ) -> Result<Vec<T>, EncodeError> {
        let mut out = Vec::new();
        loop {
            let mut n = self.long()?;
            if n == 0 {
                return Ok(out);
            }
            if n < 0 {
                n = n
                    .checked_neg()
                    .ok_or_else(|| self.error("bad block count"))?;
                self.long()?; // block size in bytes, not needed
            }
            // Every item takes at least one byte: bound the allocation by what is left.
            let left = self.buf.len().saturating_sub(self.pos);
            out.reserve(usize::try_from(n).unwrap_or(usize::MAX).min(left));
            for _ in 0..n {
                out.push(item(self)?);
            }
        }
    }

    /// Fails unless the whole body was consumed.
    pub fn finish(&self) -> Result<(), EncodeError> {
        if self.pos == self.buf.len() {
            Ok(())
        } else {
            Err(self.error(format!(
                "{} trailing bytes",
                self.buf.len().saturating_sub(self.pos)
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longs_roundtrip_and_match_the_spec() {
        // Examples from the Avro specification.
        for (v, bytes) in [
            (0i64, vec![0x00]),
            (-1, vec![0x01]),
            (1, vec![0x02]),
            (-64, vec![0x7f]),
            (64, vec![0x80, 0x01]),
        ] {
            let mut b = Vec::new();
            put_long(&mut b, v);
            assert_eq!(b, bytes, "{v}");
        }
        for v in [i64::MIN, i64::MAX, -300, 300, 1_700_000_000_000] {
            let mut b = Vec::new();
            put_long(&mut b, v);
            assert_eq!(Reader::new(&b, "t").long().unwrap(), v);
        }
    }

    #[test]
    fn reader_rejects_garbage() {
        assert!(Reader::new(&[0xff; 11], "t").long().is_err());
        assert!(Reader::new(&[0x80], "t").long().is_err());
        assert!(Reader::new(&[0x10, b'a'], "t").str().is_err());
        assert!(Reader::new(&[0x02, 0xff], "t").str().is_err());
        assert!(Reader::new(&[0x04], "t").opt_str().is_err());
        assert!(Reader::new(&[0x02], "t").bool().is_err());
        // A huge array count on a tiny buffer fails without a huge allocation.
        let mut b = Vec::new();
        put_long(&mut b, i64::MAX);
        assert!(Reader::new(&b, "t").array(|r| r.bool()).is_err());
    }

    #[test]
    fn arrays_accept_negative_block_counts() {
        // Block of -2 items with byte size 2, then end.
        let b = [0x03, 0x04, 0x01, 0x00, 0x00];
        let mut r = Reader::new(&b, "t");
        assert_eq!(r.array(|r| r.bool()).unwrap(), vec![true, false]);
        r.finish().unwrap();
    }
}
