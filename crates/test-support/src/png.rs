//! PNG bytes with a chosen header: what a decompression bomb looks like before it inflates.

/// CRC-32 (ISO-HDLC, the one PNG chunks carry) of `bytes`.
pub fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// Rewrite the IHDR of the PNG `bytes` (its first chunk, as the format requires) to claim
/// `w × h` pixels, with a valid CRC: the image data stays what it was.
pub fn claim_size(bytes: &mut [u8], w: u32, h: u32) {
    // IHDR data starts at byte 16 (8 signature + 4 length + 4 type).
    bytes[16..20].copy_from_slice(&w.to_be_bytes());
    bytes[20..24].copy_from_slice(&h.to_be_bytes());
    let crc = crc32(&bytes[12..29]);
    bytes[29..33].copy_from_slice(&crc.to_be_bytes());
}

/// A PNG that is only a header claiming `w × h` pixels: a decompression bomb's first bytes.
pub fn header_only(w: u32, h: u32) -> Vec<u8> {
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = b"IHDR".to_vec();
    ihdr.extend_from_slice(&w.to_be_bytes());
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]); // 8-bit RGB
    out.extend_from_slice(&13u32.to_be_bytes());
    out.extend_from_slice(&ihdr);
    out.extend_from_slice(&crc32(&ihdr).to_be_bytes());
    // An IDAT of a few zero bytes: a real bomb would inflate here.
    let idat = b"IDAT\x78\x9c\x03\x00\x00\x00\x00\x01".to_vec();
    out.extend_from_slice(&8u32.to_be_bytes());
    out.extend_from_slice(&idat);
    out.extend_from_slice(&crc32(&idat).to_be_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_of_the_check_string() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn claim_size_keeps_the_header_crc_valid() {
        let mut b = header_only(1, 1);
        claim_size(&mut b, 100_000, 7);
        assert_eq!(b, header_only(100_000, 7));
    }
}
