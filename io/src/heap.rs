//! Giving freed heap memory back to the operating system.
//!
//! glibc's allocator keeps what the router frees (a slow subscriber's drained backlog, a burst's buffers) in its
//! free lists, mapped: without help, RSS stays at its highest point so far although the router holds far less.
//! [`HeapTrim`] looks at the allocator's free bytes once a second (whichever shard gets there first) and, when at
//! least [`TRIM_MIN`] were freed since the lowest point seen after the last trim, calls `malloc_trim`, which returns
//! every whole free page. A steady load that frees nothing costs one look a second and no trim.
//!
//! The free bytes come from `mallinfo2` (glibc 2.33 and later), looked up when the process starts, so the binary
//! also runs on older glibc; there, and on other allocators, nothing is trimmed.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Bytes that must have been freed since the last trim before the next one.
pub const TRIM_MIN: usize = 1 << 20;

/// The least time between two looks at the allocator (and so between two trims).
pub const PERIOD: Duration = Duration::from_secs(1);

/// When to trim, given the allocator's free bytes over time: once they rose [`TRIM_MIN`] above their lowest
/// point since the last trim. Free bytes fall as freed memory is used again (touching its pages again) and rise
/// as memory is freed, so the rise from the lowest point is what was freed and may still be mapped.
#[derive(Debug, Default)]
pub struct TrimPolicy {
    low: Option<usize>,
}

impl TrimPolicy {
    /// Notes the allocator's free bytes; true when it is time to trim. The next trim then needs [`TRIM_MIN`]
    /// more to be freed than `free`.
    pub fn observe(&mut self, free: usize) -> bool {
        let low = self.low.map_or(free, |low| low.min(free));
        if free - low >= TRIM_MIN {
            self.low = Some(free);
            return true;
        }
        self.low = Some(low);
        false
    }
}

/// The router's one heap trimmer, shared by its shards.
#[derive(Debug, Default)]
pub struct HeapTrim {
    state: Mutex<TrimState>,
}

#[derive(Debug, Default)]
struct TrimState {
    last: Option<Instant>,
    policy: TrimPolicy,
}

impl HeapTrim {
    /// At most once per [`PERIOD`] over all callers (another shard holding the lock: this one skips): looks at
    /// the allocator's free bytes and trims when [`TrimPolicy`] says so. Returns the free bytes seen when it
    /// trimmed.
    pub fn tick(&self, now: Instant) -> Option<usize> {
        let Ok(mut state) = self.state.try_lock() else {
            return None;
        };
        if state.last.is_some_and(|last| now < last + PERIOD) {
            return None;
        }
        state.last = Some(now);
        let free = free_bytes()?;
        if !state.policy.observe(free) {
            return None;
        }
        trim();
        Some(free)
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod sys {
    use std::sync::OnceLock;

    type Mallinfo2 = unsafe extern "C" fn() -> libc::mallinfo2;

    /// `mallinfo2`, when this glibc has it.
    fn mallinfo2() -> Option<Mallinfo2> {
        static FOUND: OnceLock<Option<Mallinfo2>> = OnceLock::new();
        *FOUND.get_or_init(|| {
            // SAFETY: dlsym with RTLD_DEFAULT and a NUL-terminated name only looks the symbol up.
            let symbol = unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"mallinfo2".as_ptr()) };
            if symbol.is_null() {
                return None;
            }
            // SAFETY: glibc's `mallinfo2` has exactly this signature (`struct mallinfo2 mallinfo2(void)`).
            Some(unsafe { std::mem::transmute::<*mut libc::c_void, Mallinfo2>(symbol) })
        })
    }

    pub fn free_bytes() -> Option<usize> {
        let mallinfo2 = mallinfo2()?;
        // SAFETY: `mallinfo2` takes no arguments and only reads the allocator's own state.
        Some(unsafe { mallinfo2() }.fordblks)
    }

    pub fn trim() {
        // SAFETY: `malloc_trim` takes an integer and works on the allocator's own free lists; it has no
        // preconditions on the caller.
        unsafe {
            libc::malloc_trim(0);
        }
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
mod sys {
    pub fn free_bytes() -> Option<usize> {
        None
    }

    pub fn trim() {}
}

/// The allocator's free bytes (mapped or not), when it tells.
pub fn free_bytes() -> Option<usize> {
    sys::free_bytes()
}

fn trim() {
    sys::trim()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_once_a_mebibyte_was_freed_since_the_lowest_point() {
        let mut policy = TrimPolicy::default();
        assert!(
            !policy.observe(10 << 20),
            "the first look only sets the low"
        );
        assert!(!policy.observe((10 << 20) + TRIM_MIN - 1));
        // Memory used again: the low falls, and the rise is counted from there.
        assert!(!policy.observe(4 << 20));
        assert!(!policy.observe((4 << 20) + TRIM_MIN - 1));
        assert!(policy.observe((4 << 20) + TRIM_MIN));
        // Trimmed: what was free then no longer counts.
        assert!(!policy.observe((5 << 20) + TRIM_MIN - 1));
        assert!(policy.observe((5 << 20) + TRIM_MIN));
    }

    #[test]
    fn a_steady_heap_is_not_trimmed() {
        let mut policy = TrimPolicy::default();
        for i in 0..1000 {
            // Free bytes wobbling by less than TRIM_MIN around 8 MiB.
            assert!(!policy.observe((8 << 20) + (i % 7) * (TRIM_MIN / 8)));
        }
    }

    #[test]
    fn looks_at_most_once_a_period() {
        let trim = HeapTrim::default();
        let t0 = Instant::now();
        trim.tick(t0);
        let first = trim.state.lock().map(|s| s.last).ok().flatten();
        assert_eq!(first, Some(t0));
        trim.tick(t0 + PERIOD / 2);
        assert_eq!(trim.state.lock().map(|s| s.last).ok().flatten(), Some(t0));
        trim.tick(t0 + PERIOD);
        assert_eq!(
            trim.state.lock().map(|s| s.last).ok().flatten(),
            Some(t0 + PERIOD)
        );
    }
}
