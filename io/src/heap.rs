//! Giving freed heap memory back to the operating system.
//!
//! glibc's allocator keeps what the router frees (a slow subscriber's drained backlog, a burst's buffers) in its
//! free lists, mapped: without help, RSS stays at its highest point so far although the router holds far less.
//! [`HeapTrim`] looks at the allocator's free bytes once a second, from a thread of its own, and, when at least
//! [`TRIM_MIN`] were freed since the lowest point seen after the last trim, calls `malloc_trim`, which returns every
//! whole free page. A steady load that frees nothing costs one look a second and no trim.
//!
//! The free bytes come from `mallinfo2` (glibc 2.33 and later), looked up at run time (on the first look), so the
//! binary also runs on older glibc; there, and on other allocators, nothing is trimmed.

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

/// The router's heap trimmer: [`HeapTrim::tick`] once a [`PERIOD`], from a thread of its own ([`run`]), since on a
/// large fragmented heap both the look and the trim take milliseconds (about 12 ms each for 300 MB in a million
/// chunks, measured), which no shard should stall for.
#[derive(Debug, Default)]
pub struct HeapTrim {
    policy: TrimPolicy,
}

impl HeapTrim {
    /// Looks at the allocator's free bytes and trims when [`TrimPolicy`] says so. Returns the free bytes seen
    /// when it trimmed.
    pub fn tick(&mut self) -> Option<usize> {
        let free = free_bytes()?;
        if !self.policy.observe(free) {
            return None;
        }
        trim();
        Some(free)
    }
}

/// The trimmer's thread: a [`HeapTrim::tick`] every [`PERIOD`], or less often when a tick takes long (at most 2%
/// of a core: the next waits 50 times as long as the last took), until `stop` says so or its sender is gone.
pub fn run(stop: &std::sync::mpsc::Receiver<()>) {
    use std::sync::mpsc::RecvTimeoutError;
    let mut trimmer = HeapTrim::default();
    let mut wait = PERIOD;
    while let Err(RecvTimeoutError::Timeout) = stop.recv_timeout(wait) {
        let started = Instant::now();
        if let Some(free) = trimmer.tick() {
            tracing::debug!(free, "returned freed heap to the operating system");
        }
        wait = PERIOD.max(started.elapsed() * 50);
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
    fn the_thread_ends_when_told_or_when_its_sender_is_gone() {
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || run(&rx));
        tx.send(()).expect("the thread waits");
        thread.join().expect("ended");
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::spawn(move || run(&rx));
        drop(tx);
        thread.join().expect("ended");
    }
}
