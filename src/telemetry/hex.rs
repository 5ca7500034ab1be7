//! The one hex codec of ids: lower-case out, either case in (each format that
//! allows only one case checks it before decoding).

const DIGITS: &[u8; 16] = b"0123456789abcdef";

/// Lower-case hex of `bytes`.
pub fn encode(bytes: &[u8]) -> String {
    let mut out = vec![0u8; bytes.len() * 2];
    write(bytes, &mut out);
    String::from_utf8(out).expect("hex digits are ASCII")
}

/// Writes the lower-case hex of `bytes` into the first `2 * bytes.len()` bytes of
/// `out`, without allocating: `traceparent` is written for every request.
pub fn write(bytes: &[u8], out: &mut [u8]) {
    for (byte, pair) in bytes.iter().zip(out.chunks_exact_mut(2)) {
        pair[0] = DIGITS[usize::from(byte >> 4)];
        pair[1] = DIGITS[usize::from(byte & 0xf)];
    }
}

/// Exactly `2 * N` hex digits, of either case, as `N` bytes.
pub fn decode<const N: usize>(s: &str) -> Option<[u8; N]> {
    let s = s.as_bytes();
    if s.len() != N * 2 {
        return None;
    }
    let mut out = [0u8; N];
    for (byte, pair) in out.iter_mut().zip(s.chunks_exact(2)) {
        *byte = (digit(pair[0])? << 4) | digit(pair[1])?;
    }
    Some(out)
}

fn digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_strictness() {
        assert_eq!(encode(&[0x00, 0xf0, 0x6a]), "00f06a");
        assert_eq!(decode::<3>("00f06a"), Some([0x00, 0xf0, 0x6a]));
        assert_eq!(decode::<3>("00F06A"), Some([0x00, 0xf0, 0x6a]));
        for bad in ["00f06", "00f06a0", "+0f06a", "00g06a", "00 06a"] {
            assert_eq!(decode::<3>(bad), None, "{bad}");
        }
    }
}
