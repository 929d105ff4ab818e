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

    pub(crate) fn next_u64(&mut self) -> u64 {
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

/// Session IDs unique across the shards of a router by construction, yet spread over `1..=2^53` as if drawn at
/// random: the `n`-th ID of shard `s` of `shards` is a keyed permutation of the 53-bit number `n * shards + s`.
/// No two shards can hand out the same ID, and no shard repeats one (until it has handed out `2^53 / shards`).
#[derive(Clone, Debug)]
pub struct SessionIds {
    next: u64,
    shard: u64,
    shards: u64,
    keys: [u64; 4],
}

const ID_BITS_MASK: u64 = (1 << 53) - 1;

impl SessionIds {
    /// The IDs of stream `shard` of `shards` (a shard of a router; in a cluster, a shard of a node slot).
    pub fn new(seed: u64, shard: u64, shards: u64) -> SessionIds {
        let mut keys = IdGenerator::new(seed ^ 0x5e55_1015);
        SessionIds {
            next: 0,
            shard,
            shards: shards.max(1),
            // Odd multipliers keep each step a bijection of the 53-bit numbers.
            keys: [0; 4].map(|_| keys.next_u64() | 1),
        }
    }

    pub fn next_id(&mut self) -> Id {
        let n = self.next.wrapping_mul(self.shards).wrapping_add(self.shard) & ID_BITS_MASK;
        self.next += 1;
        let value = permute(n, &self.keys) + 1;
        // A permutation of 0..2^53, plus one, lies in 1..=2^53.
        Id::new(value).unwrap_or(Id::FIRST)
    }
}

/// A keyed bijection of `0..2^53`: additions, xor-shifts and multiplications by odd numbers, each a bijection
/// modulo 2^53.
fn permute(mut x: u64, keys: &[u64; 4]) -> u64 {
    for &key in keys {
        x = x.wrapping_add(key) & ID_BITS_MASK;
        x ^= x >> 29;
        x = x.wrapping_mul(key) & ID_BITS_MASK;
        x ^= x >> 23;
    }
    x
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

    #[test]
    fn session_ids_are_unique_across_shards_and_spread_out() {
        let mut seen = std::collections::HashSet::new();
        let mut high = 0;
        for shard in 0..4u64 {
            let mut ids = SessionIds::new(42, shard, 4);
            for _ in 0..20_000 {
                let id = ids.next_id().get();
                assert!((1..=ID_MAX).contains(&id));
                assert!(seen.insert(id), "{id} handed out twice");
                high += u32::from(id > ID_MAX / 2);
            }
        }
        assert!(
            (38_000..42_000).contains(&high),
            "{high} of 80000 above 2^52"
        );
        // Another seed, other IDs.
        assert_ne!(
            SessionIds::new(43, 0, 4).next_id(),
            SessionIds::new(42, 0, 4).next_id()
        );
    }

    #[test]
    fn the_permutation_is_a_bijection() {
        // On a sample: distinct inputs give distinct outputs (a bijection of 2^53 numbers cannot be checked
        // exhaustively; each step is one by construction).
        let keys = [3, 5, 7, 11];
        let outputs: std::collections::HashSet<u64> =
            (0..100_000).map(|x| permute(x, &keys)).collect();
        assert_eq!(outputs.len(), 100_000);
        assert!(outputs.iter().all(|&y| y <= ID_BITS_MASK));
    }
}
