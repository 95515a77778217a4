//! Finding one byte eight bytes at a time (the end of a line, the tabs in it), with
//! no allocation: the per-line work of a file of millions of lines.

/// The high bit of each byte of `word` that equals `byte`, every other bit clear.
/// Exact: no carry crosses from one byte to the next.
fn matches(word: u64, byte: u8) -> u64 {
    const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    let x = word ^ (u64::from(byte) * 0x0101_0101_0101_0101);
    !(((x & LOW7) + LOW7) | x | LOW7)
}

/// The offset of the first `byte` in `haystack` (the end of a line).
pub(super) fn find(haystack: &[u8], byte: u8) -> Option<usize> {
    let mut chunks = haystack.chunks_exact(8);
    for (i, chunk) in (&mut chunks).enumerate() {
        let found = matches(u64::from_le_bytes(chunk.try_into().unwrap()), byte);
        if found != 0 {
            return Some(i * 8 + (found.trailing_zeros() / 8) as usize);
        }
    }
    let rest = chunks.remainder();
    let done = haystack.len() - rest.len();
    rest.iter().position(|&b| b == byte).map(|at| done + at)
}

/// The offsets of `byte` in `haystack`, in order, the first `keep` of them into
/// `out` (cleared first); returns how many there are in all.
pub(super) fn positions(haystack: &[u8], byte: u8, keep: usize, out: &mut Vec<usize>) -> usize {
    out.clear();
    let mut total = 0;
    let mut chunks = haystack.chunks_exact(8);
    for (i, chunk) in (&mut chunks).enumerate() {
        let mut found = matches(u64::from_le_bytes(chunk.try_into().unwrap()), byte);
        // Counted one by one: count_ones is a dozen instructions on x86-64's
        // baseline, which has no popcnt.
        while found != 0 {
            if out.len() < keep {
                out.push(i * 8 + (found.trailing_zeros() / 8) as usize);
            }
            total += 1;
            found &= found - 1;
        }
    }
    let rest = chunks.remainder();
    let done = haystack.len() - rest.len();
    for (at, _) in rest.iter().enumerate().filter(|(_, b)| **b == byte) {
        total += 1;
        if out.len() < keep {
            out.push(done + at);
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(haystack: &[u8], byte: u8) -> Vec<usize> {
        (0..haystack.len())
            .filter(|&i| haystack[i] == byte)
            .collect()
    }

    /// Every length up to 40, the byte sought beside its neighbours in value
    /// (a carry between bytes would show there), at pseudo-random places.
    #[test]
    fn finds_exactly_what_a_byte_by_byte_search_finds() {
        let mut seed = 7u64;
        let mut out = Vec::new();
        for round in 0..20_000 {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let haystack: Vec<u8> = (0..(round % 41) as u64)
                .map(|i| {
                    let r = (seed >> 20).rotate_left(i as u32 * 3) ^ i;
                    [b'\t', b'\n', 0x08, 0x0a, 0x89, 0x00, 0xff, r as u8][(r % 8) as usize]
                })
                .collect();
            for byte in [b'\t', b'\n', 0x00, 0xff, 0x89] {
                let want = naive(&haystack, byte);
                assert_eq!(positions(&haystack, byte, usize::MAX, &mut out), want.len());
                assert_eq!(out, want, "{haystack:?} {byte}");
                let keep = round % 5;
                assert_eq!(positions(&haystack, byte, keep, &mut out), want.len());
                assert_eq!(out, want[..want.len().min(keep)]);
                assert_eq!(find(&haystack, byte), want.first().copied());
            }
        }
    }
}
