//! iSCSI header and data digests: CRC32C (Castagnoli, RFC 7143 §13.1 and Appendix A.4,
//! formerly RFC 3720 §12.1 and Appendix B.4).
//!
//! The HeaderDigest covers the BHS and the AHSs. The DataDigest covers the data segment AND
//! its zero padding to a 4-byte boundary (the Linux initiator feeds the pad bytes into the
//! hash before finishing it). On the wire a digest is the CRC value in little-endian byte
//! order: 32 zero bytes give the value 0x8a9136aa, sent as `aa 36 91 8a`, exactly as the RFC's
//! examples print it. Everything else in iSCSI is big-endian; this is the one exception.

use super::pdu::{pad_len, Bhs};

/// Length of a digest on the wire.
pub const DIGEST_LEN: usize = 4;

/// CRC32C of `data` (initial value and final XOR 0xffffffff, reflected), as iSCSI uses it.
pub fn crc32c(data: &[u8]) -> u32 {
    crc32c::crc32c(data)
}

/// HeaderDigest over the BHS followed by the AHS area (empty when there is none).
pub fn header_digest(bhs: &Bhs, ahs: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(&bhs.0), ahs)
}

/// DataDigest over `data` (the DataSegmentLength bytes, without padding) followed by the zero
/// padding the wire carries after it.
pub fn data_digest(data: &[u8]) -> u32 {
    const ZEROES: [u8; 3] = [0; 3];
    let padding = ZEROES.get(..pad_len(data.len())).unwrap_or_default();
    crc32c::crc32c_append(crc32c::crc32c(data), padding)
}

/// The four bytes a digest value occupies on the wire (little-endian).
pub fn digest_to_wire(digest: u32) -> [u8; DIGEST_LEN] {
    digest.to_le_bytes()
}

/// The digest value of four bytes read from the wire.
pub fn digest_from_wire(bytes: [u8; DIGEST_LEN]) -> u32 {
    u32::from_le_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7143 Appendix A.4 (RFC 3720 B.4): input pattern and the CRC bytes as printed,
    /// which are the bytes sent on the wire.
    fn rfc_vectors() -> [(Vec<u8>, [u8; 4]); 4] {
        [
            (vec![0x00; 32], [0xaa, 0x36, 0x91, 0x8a]),
            (vec![0xff; 32], [0x43, 0xab, 0xa8, 0x62]),
            ((0x00..0x20).collect(), [0x4e, 0x79, 0xdd, 0x46]),
            ((0x00..0x20).rev().collect(), [0x5c, 0xdb, 0x3f, 0x11]),
        ]
    }

    /// The RFC's "iSCSI - SCSI Read (10) Command PDU" example, CRC `56 3a 96 d9`.
    const RFC_READ10_PDU: [u8; 48] = [
        0x01, 0xc0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, //
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, //
        0x14, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04, 0x00, //
        0x00, 0x00, 0x00, 0x14, 0x00, 0x00, 0x00, 0x18, //
        0x28, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, //
        0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, //
    ];

    #[test]
    fn rfc_vectors_match_on_the_wire() {
        for (input, wire) in rfc_vectors() {
            assert_eq!(digest_to_wire(crc32c(&input)), wire, "{input:02x?}");
            assert_eq!(
                digest_to_wire(data_digest(&input)),
                wire,
                "aligned: no padding"
            );
            assert_eq!(digest_from_wire(wire), crc32c(&input));
        }
        assert_eq!(crc32c(&[0; 32]), 0x8a91_36aa);
    }

    #[test]
    fn rfc_read10_header_digest() {
        let bhs = Bhs(RFC_READ10_PDU);
        assert_eq!(
            digest_to_wire(header_digest(&bhs, &[])),
            [0x56, 0x3a, 0x96, 0xd9]
        );
    }

    #[test]
    fn header_digest_covers_the_ahs() {
        let bhs = Bhs(RFC_READ10_PDU);
        let ahs = [0x00, 0x05, 0x02, 0x00, 0x00, 0x00, 0x10, 0x00];
        let mut whole = RFC_READ10_PDU.to_vec();
        whole.extend_from_slice(&ahs);
        assert_eq!(header_digest(&bhs, &ahs), crc32c(&whole));
        assert_ne!(header_digest(&bhs, &ahs), header_digest(&bhs, &[]));
    }

    #[test]
    fn data_digest_includes_zero_padding() {
        assert_eq!(crc32c(b"123456789"), 0xe306_9283, "CRC-32C check value");
        for len in 0..9usize {
            let data: Vec<u8> = (1..=len as u8).collect();
            let mut padded = data.clone();
            padded.resize(len + pad_len(len), 0);
            assert_eq!(data_digest(&data), crc32c(&padded), "len {len}");
        }
        assert_ne!(
            data_digest(b"abc"),
            crc32c(b"abc"),
            "the pad byte changes the digest"
        );
        assert_eq!(data_digest(&[]), 0);
    }

    #[test]
    fn wire_order_round_trips() {
        for value in [0u32, 1, 0x1234_5678, 0xffff_ffff] {
            assert_eq!(digest_from_wire(digest_to_wire(value)), value);
        }
        assert_eq!(digest_to_wire(0x1234_5678), [0x78, 0x56, 0x34, 0x12]);
    }
}
