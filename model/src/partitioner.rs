//! Kafka's default partitioner for keyed records: murmur2 of the key bytes, identical to
//! the Java client's `Utils.murmur2` and `BuiltInPartitioner.partitionForKey`.

/// Kafka's `Utils.murmur2` (seed 0x9747b28c), as a signed 32-bit result like Java's.
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let length = data.len();
    let mut h: u32 = SEED ^ length as u32;
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = chunks.remainder();
    if tail.len() == 3 {
        h ^= (tail[2] as u32) << 16;
    }
    if tail.len() >= 2 {
        h ^= (tail[1] as u32) << 8;
    }
    if !tail.is_empty() {
        h ^= tail[0] as u32;
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// Kafka's `Utils.toPositive`: masks the sign bit (not `abs`).
pub fn to_positive(n: i32) -> u32 {
    (n & 0x7fff_ffff) as u32
}

/// Partition of a keyed record among `partitions`.
pub fn partition_for_key(key: &[u8], partitions: u32) -> u32 {
    to_positive(murmur2(key)) % partitions.max(1)
}

/// Partition of the simulator's key number `key` (sent as [`key_bytes`]) among `partitions`.
pub fn partition_for_key_number(key: u32, partitions: u32) -> u32 {
    let mut buf = [0u8; 10];
    partition_for_key(key_bytes(key, &mut buf), partitions)
}

/// The bytes the simulator's workload uses for key number `key` (its decimal string, as a
/// Java `StringSerializer` would send it).
pub fn key_bytes(key: u32, buf: &mut [u8; 10]) -> &[u8] {
    let mut n = key;
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &buf[at..]
}

#[cfg(test)]
mod tests {
    use super::*;

    // Test vectors from Kafka's UtilsTest.testMurmur2: the partition of a keyed record must
    // match the Java client's, or users' keyed streams land elsewhere than in production.
    #[test]
    fn murmur2_matches_the_java_client() {
        let cases: [(&[u8], i32); 6] = [
            (b"21", -973_932_308),
            (b"foobar", -790_332_482),
            (b"a-little-bit-long-string", -985_981_536),
            (b"a-little-bit-longer-string", -1_486_304_829),
            (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58_897_971),
            (b"abc", 479_470_107),
        ];
        for (input, expected) in cases {
            assert_eq!(murmur2(input), expected, "{}", String::from_utf8_lossy(input));
        }
    }

    // Shows toPositive masks the sign bit as Kafka's Utils.toPositive does (abs would differ).
    #[test]
    fn to_positive_masks_the_sign_bit() {
        assert_eq!(to_positive(-1), 0x7fff_ffff);
        assert_eq!(to_positive(i32::MIN), 0);
        assert_eq!(partition_for_key(b"21", 12), to_positive(-973_932_308) % 12);
    }

    // Shows the workload's key encoding is the decimal string.
    #[test]
    fn key_bytes_are_decimal() {
        let mut buf = [0u8; 10];
        assert_eq!(key_bytes(0, &mut buf), b"0");
        assert_eq!(key_bytes(4_294_967_295, &mut buf), b"4294967295");
    }
}
