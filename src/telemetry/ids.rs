//! Trace and span ids for otel-run's own spans.

/// A random, non-zero id from the OS: for ids made a few times per run.
pub fn random_id<const N: usize>() -> [u8; N] {
    let mut id = [0u8; N];
    while id == [0u8; N] {
        getrandom::fill(&mut id).expect("the OS random source is available");
    }
    id
}

/// Fast ids for per-request spans: unique, not secret, so a per-thread generator
/// seeded from the OS (wyrand) rather than a system call per request.
pub fn fast_id<const N: usize>() -> [u8; N] {
    use std::cell::Cell;
    thread_local! {
        static STATE: Cell<u64> = Cell::new(u64::from_ne_bytes(random_id()));
    }
    let mut out = [0u8; N];
    while out == [0u8; N] {
        for chunk in out.chunks_mut(8) {
            let n = STATE.with(|s| {
                let v = s.get().wrapping_add(0xa076_1d64_78bd_642f);
                s.set(v);
                let t = u128::from(v) * u128::from(v ^ 0xe703_7ed1_a0b4_28db);
                ((t >> 64) as u64) ^ (t as u64)
            });
            chunk.copy_from_slice(&n.to_ne_bytes()[..chunk.len()]);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_not_zero_and_differ() {
        let (a, b): ([u8; 8], [u8; 8]) = (random_id(), random_id());
        assert_ne!(a, [0; 8]);
        assert_ne!(a, b);
        let (a, b): ([u8; 16], [u8; 16]) = (fast_id(), fast_id());
        assert_ne!(a, [0; 16]);
        assert_ne!(a, b);
    }
}
