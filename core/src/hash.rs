//! SHA-256 as Meta wants it: lowercase hex of the UTF-8 bytes.

use sha2::{Digest, Sha256};

/// Lowercase hex SHA-256 of `s`.
pub fn sha256_hex(s: &str) -> String {
    lower_hex(&Sha256::digest(s.as_bytes()))
}

/// Lowercase hex SHA-256 of `s` into `out`, without allocating (bulk hashing).
pub fn sha256_hex_into(s: &[u8], out: &mut [u8; 64]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digest = Sha256::digest(s);
    for (pair, b) in out.chunks_exact_mut(2).zip(digest.iter()) {
        pair[0] = HEX[usize::from(b >> 4)];
        pair[1] = HEX[usize::from(b & 0xf)];
    }
}

/// Lowercase hex of arbitrary bytes.
pub fn lower_hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(HEX[usize::from(b >> 4)] as char);
        out.push(HEX[usize::from(b & 0xf)] as char);
    }
    out
}

/// True for a 64-char lowercase hex string, the only form Meta accepts for hashed fields.
pub fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_string_hash_is_the_known_answer() {
        // FIPS 180-2 test vector for the empty message.
        assert_eq!(
            sha256_hex(""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert!(is_sha256_hex(&sha256_hex("x")));
        assert!(!is_sha256_hex(&sha256_hex("x").to_uppercase()));
        for s in ["", "x", "jane@example.com", "valéry"] {
            let mut out = [0u8; 64];
            sha256_hex_into(s.as_bytes(), &mut out);
            assert_eq!(out.as_slice(), sha256_hex(s).as_bytes());
        }
    }
}
