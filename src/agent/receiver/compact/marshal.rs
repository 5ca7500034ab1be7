//! Python's `marshal` serialization, version 2, read as serde input: the second
//! form of the compact span encoding, which the Python shim writes with
//! `marshal.dumps(batch, 2)` — C code that walks the SDK's tuples and dicts
//! several times faster than the JSON encoder does, on the worker's GIL.
//!
//! Version 2 is pinned because it is the simplest the interpreter still writes:
//! no back-references to earlier objects (version 3) and no short string forms
//! (version 4). What is read, each value a type byte then its contents,
//! integers little-endian:
//! - `N` None, `T` True, `F` False;
//! - `i` an int of 32 bits; `l` a larger int: a 32-bit digit count (negative
//!   for a negative number), then that many 16-bit digits of 15 bits each, the
//!   least significant first;
//! - `g` a float, 8 bytes of IEEE 754;
//! - `u` a str: a 32-bit byte length, then UTF-8 (a lone surrogate, which the
//!   interpreter writes as it is, becomes U+FFFD); `s` bytes, likewise;
//! - `(` a tuple and `[` a list: a 32-bit count, then the items;
//! - `{` a dict: key and value after key and value, then `0`.
//!
//! Anything else (a type of a later version, a code object, a set) is refused
//! with its type byte named, as are a truncated body, bytes after the value and
//! nesting deeper than [`MAX_DEPTH`].

use std::fmt;

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

/// Containers within containers, at most: what serde_json allows too.
pub const MAX_DEPTH: usize = 128;

/// The capacity a container's count may ask of a visitor at once: a count is
/// what the sender says, not yet what the body holds.
const MAX_HINT: usize = 1024;

/// The value `bytes` holds, all of it.
pub fn from_slice<'de, T: Deserialize<'de>>(bytes: &'de [u8]) -> Result<T, Error> {
    let mut reader = Reader {
        bytes,
        at: 0,
        depth: 0,
    };
    let value = T::deserialize(&mut reader)?;
    if reader.at != bytes.len() {
        return Err(Error(format!(
            "{} bytes after the marshalled value",
            bytes.len() - reader.at
        )));
    }
    Ok(value)
}

/// Why a body is not the marshal data expected.
#[derive(Debug, PartialEq, Eq)]
pub struct Error(String);

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

impl de::Error for Error {
    fn custom<T: fmt::Display>(message: T) -> Self {
        Error(message.to_string())
    }
}

struct Reader<'de> {
    bytes: &'de [u8],
    at: usize,
    depth: usize,
}

impl<'de> Reader<'de> {
    fn take(&mut self, n: usize) -> Result<&'de [u8], Error> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&end| end <= self.bytes.len())
            .ok_or_else(|| {
                Error(format!(
                    "the marshalled value ends early: {n} bytes wanted at byte {} of {}",
                    self.at,
                    self.bytes.len()
                ))
            })?;
        let taken = &self.bytes[self.at..end];
        self.at = end;
        Ok(taken)
    }

    fn byte(&mut self) -> Result<u8, Error> {
        Ok(self.take(1)?[0])
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn i32(&mut self) -> Result<i32, Error> {
        let b = self.take(4)?;
        Ok(i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn length(&mut self, what: &str) -> Result<usize, Error> {
        let n = self.i32()?;
        usize::try_from(n).map_err(|_| Error(format!("a {what} of length {n}")))
    }

    fn nest(&mut self) -> Result<(), Error> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(Error(format!("containers nested deeper than {MAX_DEPTH}")));
        }
        Ok(())
    }

    /// The digits of a `l` int, as the number it is.
    fn long(&mut self) -> Result<Long, Error> {
        let n = self.i32()?;
        let count = n.unsigned_abs() as usize;
        let digits = self.take(
            count
                .checked_mul(2)
                .ok_or_else(|| Error("a long too long".into()))?,
        )?;
        let (mut exact, mut approximate) = (Some(0u128), 0f64);
        for (i, pair) in digits.chunks_exact(2).enumerate().rev() {
            let digit = u16::from_le_bytes([pair[0], pair[1]]);
            if digit >= 1 << 15 {
                return Err(Error(format!("a long's digit {digit} is over 15 bits")));
            }
            if i == count - 1 && digit == 0 {
                return Err(Error("a long's last digit is zero".into()));
            }
            exact = exact
                .and_then(|v| v.checked_mul(1 << 15))
                .map(|v| v | u128::from(digit));
            approximate = approximate * 32768.0 + f64::from(digit);
        }
        let negative = n < 0;
        Ok(match exact {
            Some(v) if !negative && v <= u128::from(u64::MAX) => Long::Unsigned(v as u64),
            Some(v) if negative && v <= 1u128 << 63 => {
                Long::Signed((v as i128).wrapping_neg() as i64)
            }
            _ if negative => Long::Float(-approximate),
            _ => Long::Float(approximate),
        })
    }
}

enum Long {
    Signed(i64),
    Unsigned(u64),
    /// Beyond 64 bits: taken as a double, as JSON numbers are.
    Float(f64),
}

impl<'de> Deserializer<'de> for &mut Reader<'de> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let at = self.at;
        match self.byte()? {
            b'N' => visitor.visit_unit(),
            b'T' => visitor.visit_bool(true),
            b'F' => visitor.visit_bool(false),
            b'i' => visitor.visit_i64(i64::from(self.i32()?)),
            b'l' => match self.long()? {
                Long::Signed(v) => visitor.visit_i64(v),
                Long::Unsigned(v) => visitor.visit_u64(v),
                Long::Float(v) => visitor.visit_f64(v),
            },
            b'g' => {
                let b = self.take(8)?;
                visitor.visit_f64(f64::from_le_bytes([
                    b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7],
                ]))
            }
            b'u' => {
                let n = self.length("str")?;
                let text = self.take(n)?;
                match std::str::from_utf8(text) {
                    Ok(text) => visitor.visit_borrowed_str(text),
                    Err(_) => visitor.visit_string(String::from_utf8_lossy(text).into_owned()),
                }
            }
            b's' => {
                let n = self.length("bytes")?;
                visitor.visit_borrowed_bytes(self.take(n)?)
            }
            b'(' | b'[' => {
                let left = self.length("tuple")?;
                self.nest()?;
                let mut seq = Seq { reader: self, left };
                let value = visitor.visit_seq(&mut seq)?;
                if seq.left > 0 {
                    return Err(Error(format!(
                        "{} more items than expected in the sequence at byte {at}",
                        seq.left
                    )));
                }
                self.depth -= 1;
                Ok(value)
            }
            b'{' => {
                self.nest()?;
                let mut map = Map {
                    reader: self,
                    done: false,
                };
                let value = visitor.visit_map(&mut map)?;
                if !map.done {
                    return Err(Error(format!(
                        "more entries than expected in the dict at byte {at}"
                    )));
                }
                self.depth -= 1;
                Ok(value)
            }
            b'0' => Err(Error(format!(
                "a dict's end at byte {at}, where a value belongs"
            ))),
            code => Err(Error(format!(
                "marshal type {:?} (0x{code:02x}) at byte {at}: otel-run reads version 2's None, bool, int, float, str, bytes, tuple, list and dict",
                char::from(code)
            ))),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        if self.peek() == Some(b'N') {
            self.at += 1;
            visitor.visit_none()
        } else {
            visitor.visit_some(self)
        }
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct newtype_struct seq tuple
        tuple_struct map struct enum identifier ignored_any
    }
}

struct Seq<'a, 'de> {
    reader: &'a mut Reader<'de>,
    left: usize,
}

impl<'de> SeqAccess<'de> for &mut Seq<'_, 'de> {
    type Error = Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Error> {
        if self.left == 0 {
            return Ok(None);
        }
        self.left -= 1;
        seed.deserialize(&mut *self.reader).map(Some)
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.left.min(MAX_HINT))
    }
}

struct Map<'a, 'de> {
    reader: &'a mut Reader<'de>,
    done: bool,
}

impl<'de> MapAccess<'de> for &mut Map<'_, 'de> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        if self.done {
            return Ok(None);
        }
        if self.reader.peek() == Some(b'0') {
            self.reader.at += 1;
            self.done = true;
            return Ok(None);
        }
        seed.deserialize(&mut *self.reader).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        seed.deserialize(&mut *self.reader)
    }
}

#[cfg(test)]
mod tests;
