//! WAMP identifiers: random global-scope IDs and the deterministic generator behind them.

use kreisel_codec::{Id, ID_MAX};

/// A seeded pseudo-random generator (SplitMix64) for global-scope IDs (session and publication IDs) and
/// router-scope IDs. The seed is a constructor input so that a test replays bit for bit; the binary seeds it from
/// the OS. IDs need to be unpredictable enough not to collide, not cryptographically secret.
#[derive(Clone, Debug)]
pub struct IdGenerator {
    state: u64,
}

impl IdGenerator {
    pub fn new(seed: u64) -> IdGenerator {
        IdGenerator { state: seed }
    }

    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number below `n` (`n` > 0; for picking a callee at random: the slight modulo bias does not matter).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }

    /// A uniformly distributed ID in `1..=2^53`.
    pub fn random_id(&mut self) -> Id {
        let value = (self.next_u64() & (ID_MAX - 1)) + 1;
        // 53 random bits plus one lie in 1..=2^53 by construction.
        Id::new(value).unwrap_or(Id::FIRST)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_in_range_and_replayable() {
        let mut a = IdGenerator::new(7);
        let mut b = IdGenerator::new(7);
        for _ in 0..10_000 {
            let id = a.random_id();
            assert!((1..=ID_MAX).contains(&id.get()));
            assert_eq!(id, b.random_id());
        }
        let mut c = IdGenerator::new(8);
        assert_ne!(IdGenerator::new(7).random_id(), c.random_id());
    }

    #[test]
    fn ids_use_the_whole_range() {
        let mut gen = IdGenerator::new(1);
        let high = (0..1000)
            .filter(|_| gen.random_id().get() > ID_MAX / 2)
            .count();
        assert!((400..600).contains(&high), "{high} of 1000 above 2^52");
    }
}
