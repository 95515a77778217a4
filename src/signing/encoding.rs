//! CloudFront's URL-safe base64: standard base64 with `+`→`-`, `=`→`_`, `/`→`~`.
//!
//! It is not RFC 4648 base64url (which uses `_` for `/` and drops padding), so the
//! `base64` crate's URL-safe engine would produce links CloudFront rejects.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// Encodes bytes the way CloudFront expects in `Signature` and `Policy`.
pub fn encode(bytes: &[u8]) -> String {
    let mut text = STANDARD.encode(bytes);
    // SAFETY of the byte edit: base64 output is ASCII, and each swap is ASCII for ASCII.
    let swapped: Vec<u8> = text
        .bytes()
        .map(|b| match b {
            b'+' => b'-',
            b'=' => b'_',
            b'/' => b'~',
            other => other,
        })
        .collect();
    text.clear();
    text.push_str(std::str::from_utf8(&swapped).expect("base64 output is ASCII"));
    text
}

/// Decodes CloudFront base64 strictly: any character outside its alphabet (including
/// the standard `+`, `/`, `=`) or non-canonical padding is an error, so that no two
/// different strings decode to the same signature.
pub fn decode(text: &str) -> Result<Vec<u8>, base64::DecodeError> {
    let mut standard = Vec::with_capacity(text.len());
    for (offset, byte) in text.bytes().enumerate() {
        standard.push(match byte {
            b'-' => b'+',
            b'_' => b'=',
            b'~' => b'/',
            b'+' | b'=' | b'/' => return Err(base64::DecodeError::InvalidByte(offset, byte)),
            other => other,
        });
    }
    STANDARD.decode(standard)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swaps_the_three_characters() {
        // 0xfb 0xff encodes to "+/8=" in standard base64.
        assert_eq!(encode(&[0xfb, 0xff]), "-~8_");
        assert_eq!(decode("-~8_").unwrap(), vec![0xfb, 0xff]);
    }

    #[test]
    fn rejects_standard_alphabet_and_bad_padding() {
        assert!(decode("+/8=").is_err());
        assert!(decode("-~8").is_err());
        // Non-zero trailing bits would make a second spelling of the same bytes.
        assert!(decode("-~9_").is_err());
    }
}
