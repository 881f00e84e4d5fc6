//! What a client does to every frame it sends (RFC 6455 5.3): XOR the
//! payload with a fresh 32-bit key. The keys must be unpredictable to
//! scripts that choose the payload (the defence is against proxies that
//! could be fooled into caching attacker-shaped bytes), so the generator
//! is seeded from OpenSSL's CSPRNG once per connection and then runs
//! without a call per frame.

/// A connection's source of masking keys: xorshift64*, seeded from OpenSSL.
pub struct MaskKeys(u64);

impl MaskKeys {
    pub fn new() -> MaskKeys {
        let mut seed = [0u8; 8];
        // rand_bytes only fails when OpenSSL cannot seed itself at all;
        // the clock then still makes keys no script can know in advance.
        if openssl::rand::rand_bytes(&mut seed).is_err() {
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
            seed = t.to_ne_bytes();
        }
        // xorshift's state must not be zero.
        MaskKeys(u64::from_ne_bytes(seed) | 1)
    }

    pub fn key(&mut self) -> [u8; 4] {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        let r = x.wrapping_mul(0x2545_f491_4f6c_dd1d);
        ((r >> 32) as u32).to_ne_bytes()
    }
}

impl Default for MaskKeys {
    fn default() -> Self {
        MaskKeys::new()
    }
}

/// Mask (or unmask) a whole payload in place, eight bytes at a time.
pub fn apply(buf: &mut [u8], key: [u8; 4]) {
    let k = [
        key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3],
    ];
    let k = u64::from_ne_bytes(k);
    let mut words = buf.chunks_exact_mut(8);
    for w in &mut words {
        let mut b = [0u8; 8];
        b.copy_from_slice(w);
        w.copy_from_slice(&(u64::from_ne_bytes(b) ^ k).to_ne_bytes());
    }
    // The tail starts at a multiple of 8, so the key's phase is 0 there.
    for (i, b) in words.into_remainder().iter_mut().enumerate() {
        *b ^= key[i % 4];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_like_the_rfc_byte_rule_at_every_length() {
        let key = [0x37, 0xfa, 0x21, 0x3d];
        for len in 0..40 {
            let plain: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
            let mut b = plain.clone();
            apply(&mut b, key);
            let want: Vec<u8> = plain
                .iter()
                .enumerate()
                .map(|(i, x)| x ^ key[i % 4])
                .collect();
            assert_eq!(b, want, "length {len}");
            apply(&mut b, key);
            assert_eq!(b, plain);
        }
    }

    #[test]
    fn keys_change_from_frame_to_frame_and_between_connections() {
        let mut a = MaskKeys::new();
        let mut b = MaskKeys::new();
        let ka: Vec<[u8; 4]> = (0..64).map(|_| a.key()).collect();
        let kb: Vec<[u8; 4]> = (0..64).map(|_| b.key()).collect();
        let distinct: std::collections::HashSet<_> = ka.iter().collect();
        assert!(distinct.len() > 60, "{distinct:?}");
        assert_ne!(ka, kb);
    }
}
