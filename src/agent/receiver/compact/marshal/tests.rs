//! Marshal data written by hand from the layout the module documents (the same
//! bytes the Python shim checks `marshal.dumps(..., 2)` writes before it uses
//! the format), and hostile bodies refused with a reason rather than a panic.

use serde::Deserialize;

use super::*;

/// `(1, ["é"], {"k": 1.5}, True, None, 1 << 40, b"x")`, as version 2 writes it.
const PROBE: &[u8] = b"(\x07\x00\x00\x00i\x01\x00\x00\x00[\x01\x00\x00\x00u\x02\x00\x00\x00\xc3\xa9{u\x01\x00\x00\x00kg\x00\x00\x00\x00\x00\x00\xf8?0TNl\x03\x00\x00\x00\x00\x00\x00\x00\x00\x04s\x01\x00\x00\x00x";

#[derive(Deserialize, Debug, PartialEq)]
struct Probe(
    u32,
    Vec<String>,
    std::collections::BTreeMap<String, f64>,
    bool,
    Option<u32>,
    u64,
    #[serde(with = "serde_bytes_as_vec")] Vec<u8>,
);

mod serde_bytes_as_vec {
    use serde::de::{Deserializer, Error, Visitor};
    use std::fmt;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        struct Bytes;
        impl Visitor<'_> for Bytes {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E: Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
                Ok(v.to_vec())
            }
        }
        d.deserialize_bytes(Bytes)
    }
}

#[test]
fn the_probe_reads_as_the_values_python_marshalled() {
    let probe: Probe = from_slice(PROBE).expect("the probe reads");
    assert_eq!(
        probe,
        Probe(
            1,
            vec!["é".to_owned()],
            [("k".to_owned(), 1.5)].into_iter().collect(),
            true,
            None,
            1 << 40,
            b"x".to_vec(),
        )
    );
}

#[test]
fn ints_of_every_width_and_sign() {
    // -7 as `i`; 3_000_000_000 and -(2**63) and 2**64 - 1 as `l`.
    assert_eq!(from_slice::<i64>(b"i\xf9\xff\xff\xff"), Ok(-7));
    assert_eq!(
        from_slice::<u64>(b"l\x03\x00\x00\x00\x00\x5e\xa0\x65\x02\x00"),
        Ok(3_000_000_000)
    );
    // 2**63 = 8 * 32768**4: digits 0, 0, 0, 0, 8.
    let min = b"l\xfb\xff\xff\xff\x00\x00\x00\x00\x00\x00\x00\x00\x08\x00";
    assert_eq!(from_slice::<i64>(min), Ok(i64::MIN));
    // 2**64 - 1: five digits of 0x7fff, then 0x0f.
    let max = b"l\x05\x00\x00\x00\xff\x7f\xff\x7f\xff\x7f\xff\x7f\x0f\x00";
    assert_eq!(from_slice::<u64>(max), Ok(u64::MAX));
    // 2**75 = 1 * 32768**5: beyond 64 bits, a double.
    let big = b"l\x06\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01\x00";
    assert_eq!(from_slice::<f64>(big), Ok(2f64.powi(75)));
    assert_eq!(
        from_slice::<f64>(b"g\x00\x00\x00\x00\x00\x00\xf8\x7f").map(f64::is_nan),
        Ok(true)
    );
}

#[test]
fn a_lone_surrogate_becomes_the_replacement_character() {
    // "a\ud800", written with surrogatepass: ED A0 80.
    let text: String = from_slice(b"u\x04\x00\x00\x00a\xed\xa0\x80").expect("reads");
    assert!(
        text.starts_with('a') && text.contains('\u{fffd}'),
        "{text:?}"
    );
}

#[test]
fn hostile_bodies_are_refused_with_a_reason() {
    let refused: &[(&[u8], &str)] = &[
        (b"", "ends early"),
        (b"u\x05\x00\x00\x00ab", "ends early"),
        (b"u\xff\xff\xff\xff", "of length -1"),
        (b"(\xff\xff\xff\x7f", "ends early"),
        (b"{u\x01\x00\x00\x00k", "ends early"),
        (b"NN", "1 bytes after"),
        (b"z\x01a", "marshal type 'z'"),
        (b"\xe9\x01\x00\x00\x00", "marshal type"),
        (b"r\x00\x00\x00\x00", "marshal type 'r'"),
        (b"0", "a dict's end"),
        (b"l\x01\x00\x00\x00\x00\x80", "over 15 bits"),
        (b"l\x01\x00\x00\x00\x00\x00", "last digit is zero"),
        (b"l\x00\x00\x00\x80", "ends early"),
    ];
    for (body, why) in refused {
        let error =
            from_slice::<serde::de::IgnoredAny>(body).expect_err(&format!("{body:?} refused"));
        assert!(error.to_string().contains(why), "{body:?}: {error}");
    }
}

#[test]
fn nesting_is_bounded() {
    let mut deep = Vec::new();
    for _ in 0..=MAX_DEPTH {
        deep.extend_from_slice(b"[\x01\x00\x00\x00");
    }
    deep.push(b'N');
    let error = from_slice::<serde::de::IgnoredAny>(&deep).expect_err("too deep");
    assert!(error.to_string().contains("nested deeper"), "{error}");
    let fine = &deep[5..];
    from_slice::<serde::de::IgnoredAny>(fine).expect("as deep as allowed");
}

#[test]
fn a_fixed_tuple_given_more_items_is_refused() {
    #[derive(Deserialize, Debug, PartialEq)]
    struct Pair(u32, u32);
    let three = b"(\x03\x00\x00\x00i\x01\x00\x00\x00i\x02\x00\x00\x00i\x03\x00\x00\x00";
    let error = from_slice::<Pair>(three).expect_err("three items for two");
    assert!(error.to_string().contains("more items"), "{error}");
    let two = b"(\x02\x00\x00\x00i\x01\x00\x00\x00i\x02\x00\x00\x00";
    assert_eq!(from_slice::<Pair>(two), Ok(Pair(1, 2)));
}
