//! Measurement logic, free of IO: per-publisher sequence accounting, the open-loop send schedule, and latency
//! histograms whose samples are taken from the *intended* send time (coordinated-omission correction).

use std::time::Instant;

use hdrhistogram::Histogram;
use serde::Serialize;

/// The process-wide monotonic clock in nanoseconds since the run began. Every thread shares one base, so a
/// timestamp a publisher puts into a payload can be compared with the time a subscriber on another thread sees.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    base: Instant,
}

impl Clock {
    pub fn new() -> Clock {
        Clock {
            base: Instant::now(),
        }
    }

    pub fn now_ns(&self) -> u64 {
        self.base.elapsed().as_nanos() as u64
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}

/// Most gaps one [`SeqTracker`] remembers; beyond that the oldest gap is counted lost for good (a late arrival
/// of one of its numbers then counts as a duplicate). Bounds memory when a router drops every other event.
pub const GAPS_MAX: usize = 65_536;

/// Loss, duplicate and reorder accounting for the events of one publisher as seen by one subscriber.
/// Sequence numbers start at 0 and increase by one per publication.
#[derive(Clone, Debug, Default)]
pub struct SeqTracker {
    /// The sequence number expected next (one past the highest seen).
    next: u64,
    /// Numbers skipped so far and not (yet) seen: sorted, disjoint half-open ranges.
    gaps: Vec<(u64, u64)>,
    /// Numbers given up on when `gaps` overflowed.
    forgotten: u64,
    /// Events seen (including duplicates).
    pub received: u64,
    /// Events whose number was already seen.
    pub duplicated: u64,
    /// Events that arrived after an event with a higher number.
    pub reordered: u64,
}

impl SeqTracker {
    pub fn record(&mut self, seq: u64) {
        self.received += 1;
        if seq == self.next {
            self.next += 1;
        } else if seq > self.next {
            if self.gaps.len() == GAPS_MAX {
                let (start, end) = self.gaps.remove(0);
                self.forgotten += end - start;
            }
            self.gaps.push((self.next, seq));
            self.next = seq + 1;
        } else {
            self.fill(seq);
        }
    }

    /// `seq` is below `next`: either a late event filling a gap (reordered) or a duplicate.
    fn fill(&mut self, seq: u64) {
        // The first gap ending after `seq` is the only one that can contain it.
        let i = self.gaps.partition_point(|&(_, end)| end <= seq);
        match self.gaps.get(i).copied() {
            Some((start, end)) if start <= seq => {
                self.reordered += 1;
                match (seq == start, seq + 1 == end) {
                    (true, true) => {
                        self.gaps.remove(i);
                    }
                    (true, false) => self.gaps[i].0 = seq + 1,
                    (false, true) => self.gaps[i].1 = seq,
                    (false, false) => {
                        self.gaps[i].1 = seq;
                        self.gaps.insert(i + 1, (seq + 1, end));
                    }
                }
            }
            _ => self.duplicated += 1,
        }
    }

    /// Distinct events seen.
    pub fn distinct(&self) -> u64 {
        self.received - self.duplicated
    }

    /// Events not seen out of `expected` (sequence numbers `0..expected`).
    pub fn lost(&self, expected: u64) -> u64 {
        let missing: u64 = self.gaps.iter().map(|(s, e)| e - s).sum();
        missing + self.forgotten + expected.saturating_sub(self.next)
    }
}

/// Integrity counts summed over every (subscriber, publisher) or (caller) pair.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Integrity {
    pub lost: u64,
    pub duplicated: u64,
    pub reordered: u64,
    /// Messages whose payload did not carry what was sent (wrong publisher index, wrong echo).
    pub corrupt: u64,
}

impl Integrity {
    pub fn add(&mut self, other: Integrity) {
        self.lost += other.lost;
        self.duplicated += other.duplicated;
        self.reordered += other.reordered;
        self.corrupt += other.corrupt;
    }

    pub fn is_clean(&self) -> bool {
        *self == Integrity::default()
    }
}

/// Completion accounting for calls: one bit per request (request IDs are dense from 1).
#[derive(Clone, Debug, Default)]
pub struct CallTracker {
    calls: u64,
    done: Vec<u64>,
    pub completed: u64,
    pub duplicated: u64,
}

impl CallTracker {
    pub fn new(calls: u64) -> CallTracker {
        CallTracker {
            calls,
            done: vec![0; calls.div_ceil(64) as usize],
            ..CallTracker::default()
        }
    }

    /// Records the result for call number `index` (0-based); `false` if it is out of range.
    pub fn record(&mut self, index: u64) -> bool {
        if index >= self.calls {
            return false;
        }
        let (word, bit) = ((index / 64) as usize, index % 64);
        let Some(w) = self.done.get_mut(word) else {
            return false;
        };
        if *w & (1 << bit) != 0 {
            self.duplicated += 1;
        } else {
            *w |= 1 << bit;
            self.completed += 1;
        }
        true
    }

    pub fn lost(&self, calls: u64) -> u64 {
        calls.saturating_sub(self.completed)
    }
}

/// The open-loop schedule of one sender: message `k` is due at `start + offset + k / rate`. Latency is measured
/// from this intended time, so a router (or generator) stall shows up in the latency of every message that
/// should have been sent during the stall instead of being hidden by the sender waiting (coordinated omission).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Schedule {
    /// Time of message 0 (ns on the process clock).
    pub start_ns: u64,
    /// Messages per second for this sender.
    pub rate: f64,
}

impl Schedule {
    /// The schedule of sender `index` of `senders` sharing `rate_total` msgs/s: each sender gets an equal share,
    /// and senders are staggered evenly over one interval so the aggregate stream is smooth.
    pub fn shared(start_ns: u64, rate_total: f64, index: usize, senders: usize) -> Schedule {
        let rate = rate_total / senders as f64;
        let offset = 1e9 / rate * index as f64 / senders as f64;
        Schedule {
            start_ns: start_ns + offset as u64,
            rate,
        }
    }

    /// Intended send time of message `k`.
    pub fn intended_ns(&self, k: u64) -> u64 {
        self.start_ns + (k as f64 * 1e9 / self.rate) as u64
    }

    /// How many messages are due at `now_ns` (messages `0..n` have intended times `<= now_ns`).
    pub fn due(&self, now_ns: u64) -> u64 {
        if now_ns < self.start_ns {
            return 0;
        }
        let n = ((now_ns - self.start_ns) as f64 * self.rate / 1e9) as u64 + 1;
        // Float rounding may put the boundary one off either way: fix it up exactly.
        let mut n = n;
        while n > 0 && self.intended_ns(n - 1) > now_ns {
            n -= 1;
        }
        while self.intended_ns(n) <= now_ns {
            n += 1;
        }
        n
    }
}

/// Lowest and highest latency the histograms track: 1 ns to one hour.
const LATENCY_NS_MAX: u64 = 3_600_000_000_000;

/// A latency histogram in nanoseconds (3 significant digits).
#[derive(Clone, Debug)]
pub struct Latency {
    hist: Histogram<u64>,
}

impl Default for Latency {
    fn default() -> Self {
        Latency::new()
    }
}

impl Latency {
    pub fn new() -> Latency {
        // The bounds are constants that hdrhistogram accepts (low >= 1, high >= 2 * low, sigfig <= 5).
        let hist =
            Histogram::new_with_bounds(1, LATENCY_NS_MAX, 3).expect("valid histogram bounds");
        Latency { hist }
    }

    /// Records `received_ns - sent_ns` (clamped to 1 ns; the clock is monotonic, but samples from the intended
    /// time of a message sent early by rounding could be a hair negative).
    pub fn record(&mut self, sent_ns: u64, received_ns: u64) {
        self.hist
            .saturating_record(received_ns.saturating_sub(sent_ns).max(1));
    }

    pub fn merge(&mut self, other: &Latency) {
        // Same bounds on both sides, so adding cannot fail.
        let _ = self.hist.add(&other.hist);
    }

    pub fn count(&self) -> u64 {
        self.hist.len()
    }

    pub fn summary(&self) -> LatencySummary {
        let us = |ns: u64| ns as f64 / 1000.0;
        if self.hist.is_empty() {
            return LatencySummary::default();
        }
        LatencySummary {
            count: self.hist.len(),
            mean: self.hist.mean() / 1000.0,
            p50: us(self.hist.value_at_quantile(0.50)),
            p90: us(self.hist.value_at_quantile(0.90)),
            p99: us(self.hist.value_at_quantile(0.99)),
            p999: us(self.hist.value_at_quantile(0.999)),
            max: us(self.hist.max()),
        }
    }
}

/// A coarse latency histogram for time series (one per second of a soak): 1 µs to 100 s, 2 significant digits,
/// about 10 KB, so a second's worth can be merged across threads and dropped once summarized.
#[derive(Clone, Debug)]
pub struct WindowLatency {
    hist: Histogram<u32>,
}

impl Default for WindowLatency {
    fn default() -> Self {
        WindowLatency::new()
    }
}

impl WindowLatency {
    pub fn new() -> WindowLatency {
        // Constant, valid bounds (low >= 1, high >= 2 * low, sigfig <= 5).
        let hist = Histogram::new_with_bounds(1, 100_000_000, 2).expect("valid histogram bounds");
        WindowLatency { hist }
    }

    /// Records `received_ns - sent_ns` (in µs, at least 1).
    pub fn record(&mut self, sent_ns: u64, received_ns: u64) {
        self.hist
            .saturating_record((received_ns.saturating_sub(sent_ns) / 1000).max(1));
    }

    pub fn merge(&mut self, other: &WindowLatency) {
        // Same bounds on both sides, so adding cannot fail (counts saturate).
        let _ = self.hist.add(&other.hist);
    }

    pub fn count(&self) -> u64 {
        self.hist.len()
    }

    /// p99 in µs (0 when empty).
    pub fn p99_us(&self) -> f64 {
        if self.hist.is_empty() {
            0.0
        } else {
            self.hist.value_at_quantile(0.99) as f64
        }
    }

    pub fn max_us(&self) -> f64 {
        self.hist.max() as f64
    }
}

/// Order and duplicate accounting for sessions that do not stay for the whole run (churners, slow subscribers):
/// they join mid-stream and may be cut off, so loss is not defined for them, but an event whose number is not
/// above the last one seen from its stream is out of order or a duplicate (told apart by nothing but loss
/// accounting, so both count as `regressed`).
#[derive(Clone, Debug, Default)]
pub struct OrderTracker {
    /// Highest number seen per stream, plus one (0: nothing seen yet).
    next: Vec<u64>,
    pub received: u64,
    pub regressed: u64,
}

impl OrderTracker {
    /// Records event `seq` of `stream`; `false` if the stream is out of range.
    pub fn record(&mut self, stream: usize, seq: u64) -> bool {
        if stream >= 1 << 16 {
            return false;
        }
        if self.next.len() <= stream {
            self.next.resize(stream + 1, 0);
        }
        self.received += 1;
        if seq < self.next[stream] {
            self.regressed += 1;
        } else {
            self.next[stream] = seq + 1;
        }
        true
    }

    /// Starts over (a new session of the same role).
    pub fn reset(&mut self) {
        self.next.clear();
    }
}

/// Latency percentiles in microseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, serde::Deserialize)]
pub struct LatencySummary {
    pub count: u64,
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn track(seqs: &[u64]) -> SeqTracker {
        let mut t = SeqTracker::default();
        seqs.iter().for_each(|&s| t.record(s));
        t
    }

    #[test]
    fn in_order_is_clean() {
        let t = track(&[0, 1, 2, 3]);
        assert_eq!(
            (t.lost(4), t.duplicated, t.reordered, t.distinct()),
            (0, 0, 0, 4)
        );
        assert_eq!(t.lost(6), 2, "the tail never arrived");
    }

    #[test]
    fn loss_in_the_middle_and_at_the_end() {
        let t = track(&[0, 1, 4, 5, 9]);
        assert_eq!(t.lost(12), 2 + 3 + 2);
        assert_eq!((t.duplicated, t.reordered), (0, 0));
        assert_eq!(track(&[]).lost(3), 3);
    }

    #[test]
    fn duplicates() {
        let t = track(&[0, 0, 1, 2, 2, 1, 0]);
        assert_eq!(
            (t.lost(3), t.duplicated, t.reordered, t.distinct()),
            (0, 4, 0, 3)
        );
    }

    #[test]
    fn reordering_fills_gaps() {
        // 2 overtakes 1; 5 and 6 overtake 3 and 4, which arrive in reverse.
        let t = track(&[0, 2, 1, 5, 6, 4, 3, 7]);
        assert_eq!((t.lost(8), t.duplicated, t.reordered), (0, 0, 3));
        // A late arrival in the middle of a gap splits it; its neighbours stay lost.
        let t = track(&[0, 10, 5]);
        assert_eq!((t.lost(11), t.reordered), (8, 1));
        let t = track(&[0, 10, 5, 5, 1, 9, 6]);
        assert_eq!((t.lost(11), t.reordered, t.duplicated), (5, 4, 1));
    }

    #[test]
    fn duplicate_of_a_reordered_event() {
        let t = track(&[1, 0, 0]);
        assert_eq!((t.lost(2), t.reordered, t.duplicated), (0, 1, 1));
    }

    #[test]
    fn gap_overflow_is_bounded() {
        let mut t = SeqTracker::default();
        for k in 0..(GAPS_MAX as u64 + 10) {
            t.record(2 * k + 1);
        }
        assert_eq!(t.gaps.len(), GAPS_MAX);
        let expected = 2 * (GAPS_MAX as u64 + 10);
        assert_eq!(t.lost(expected), GAPS_MAX as u64 + 10);
        t.record(0); // forgotten: counted as a duplicate, loss stays as it was
        assert_eq!((t.lost(expected), t.duplicated), (GAPS_MAX as u64 + 10, 1));
    }

    #[test]
    fn order_tracker() {
        let mut t = OrderTracker::default();
        for (stream, seq) in [(0, 5), (0, 6), (1, 0), (0, 6), (0, 4), (1, 3)] {
            assert!(t.record(stream, seq));
        }
        assert_eq!((t.received, t.regressed), (6, 2));
        t.reset();
        assert!(t.record(0, 1));
        assert_eq!(t.regressed, 2, "a new session starts over");
        assert!(!t.record(1 << 16, 0));
    }

    #[test]
    fn window_latency() {
        let mut w = WindowLatency::new();
        for us in 1..=100u64 {
            w.record(0, us * 1000);
        }
        let mut other = WindowLatency::new();
        other.record(0, 5_000_000_000);
        w.merge(&other);
        assert_eq!(w.count(), 101);
        assert!((w.p99_us() - 100.0).abs() <= 1.0, "{}", w.p99_us());
        assert!(w.max_us() >= 4_900_000.0);
    }

    #[test]
    fn calls() {
        let mut c = CallTracker::new(130);
        assert!(c.record(0) && c.record(129) && c.record(64) && c.record(0));
        assert!(!c.record(130));
        assert_eq!((c.completed, c.duplicated, c.lost(130)), (3, 1, 127));
    }

    #[test]
    fn schedule_is_exact() {
        let s = Schedule {
            start_ns: 1_000,
            rate: 1000.0,
        };
        assert_eq!(s.intended_ns(0), 1_000);
        assert_eq!(s.intended_ns(3), 3_001_000);
        assert_eq!(s.due(999), 0);
        assert_eq!(s.due(1_000), 1);
        assert_eq!(s.due(1_001_000 - 1), 1);
        assert_eq!(s.due(1_001_000), 2);
        assert_eq!(s.due(1_000 + 1_000_000_000), 1001);
        // Awkward rates: `due` agrees with `intended_ns` at every boundary.
        let s = Schedule {
            start_ns: 7,
            rate: 3.0,
        };
        for k in 0..1000 {
            let t = s.intended_ns(k);
            assert_eq!(s.due(t), k + 1);
            assert_eq!(s.due(t - 1), k);
        }
    }

    #[test]
    fn shared_schedules_interleave() {
        // 4 senders at 4000 msgs/s total: each sends every 1 ms, staggered by 250 µs.
        let starts: Vec<u64> = (0..4)
            .map(|i| Schedule::shared(0, 4000.0, i, 4).intended_ns(1))
            .collect();
        assert_eq!(starts, vec![1_000_000, 1_250_000, 1_500_000, 1_750_000]);
    }

    /// A router that stalls for 100 ms in a 1 s open-loop run at 1000 msgs/s. Measured from the intended send
    /// time, the 100 messages that should have gone out during the stall carry what is left of the stall in their
    /// latency (1 ms to 100 ms, so p99 is about 90 ms). Measured from the actual send time of a sender that waits
    /// (closed loop, coordinated omission), only one sample shows it and p99 looks like 50 µs.
    #[test]
    fn coordinated_omission_is_corrected() {
        let sched = Schedule {
            start_ns: 0,
            rate: 1000.0,
        };
        let service_ns = 50_000; // 50 µs through the router when it is not stalled
        let (stall_from, stall_to) = (500_000_000u64, 600_000_000u64);
        let mut corrected = Latency::new();
        let mut omitted = Latency::new();
        for k in 0..1000 {
            let intended = sched.intended_ns(k);
            // The router accepts the message once it is not stalled.
            let accepted = if (stall_from..stall_to).contains(&intended) {
                stall_to
            } else {
                intended
            };
            corrected.record(intended, accepted + service_ns);
            // A closed-loop sender is itself blocked during the stall, so it "sends" late and measures from then
            // (only the one message in flight when the stall began sees the stall).
            let sent = if k == 500 { intended } else { accepted };
            omitted.record(sent, accepted + service_ns);
        }
        let c = corrected.summary();
        let o = omitted.summary();
        assert_eq!(c.count, 1000);
        assert!((c.p50 - 50.0).abs() < 1.0, "{c:?}");
        assert!(c.p99 > 89_000.0 && c.p99 < 92_000.0, "{c:?}");
        assert!((c.max - 100_050.0).abs() / 100_050.0 < 0.001, "{c:?}");
        assert!(o.p99 < 51.0 && o.max > 90_000.0, "{o:?}");
    }

    #[test]
    fn latency_summary_units() {
        let mut l = Latency::new();
        for us in 1..=1000u64 {
            l.record(0, us * 1000);
        }
        let s = l.summary();
        assert_eq!(s.count, 1000);
        assert!(
            (s.p50 - 500.0).abs() < 1.0
                && (s.p99 - 990.0).abs() < 1.0
                && (s.max - 1000.0).abs() < 1.0
        );
        let mut m = Latency::new();
        m.merge(&l);
        m.merge(&l);
        assert_eq!(m.count(), 2000);
        assert_eq!(Latency::new().summary(), LatencySummary::default());
    }
}
