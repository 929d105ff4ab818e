//! The heap trimmer against the real allocator: memory freed in the middle of the heap stays mapped until
//! [`HeapTrim::tick`] sees it among the free bytes and returns it. Alone in its test binary, so no other test
//! allocates or frees while it measures.
#![cfg(all(target_os = "linux", target_env = "gnu"))]

use kreisel_io::heap::{self, HeapTrim, TRIM_MIN};

/// Resident bytes of this process.
fn rss() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("/proc/self/statm");
    let pages: usize = statm
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .expect("resident pages");
    // SAFETY: sysconf only reads a system constant.
    pages * unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize
}

#[test]
fn memory_freed_in_the_middle_of_the_heap_goes_back_to_the_system_on_the_next_tick() {
    let mut trim = HeapTrim::default();
    assert_eq!(
        trim.tick(),
        None,
        "the first look only notes the free bytes"
    );

    // 8 MiB in small blocks (below the mmap threshold, so from the free lists), each written to, then one more
    // block after them, so that freeing them leaves a hole in the heap rather than a top the allocator shrinks
    // by itself.
    let blocks: Vec<Vec<u8>> = (0..8192).map(|i| vec![i as u8; 1024]).collect();
    let fence = vec![1u8; 1024];
    let held_free = heap::free_bytes().expect("glibc 2.33 or later has mallinfo2");
    drop(blocks);
    let freed_free = heap::free_bytes().expect("mallinfo2");
    assert!(
        freed_free >= held_free + 4 * TRIM_MIN,
        "8 MiB freed: free bytes {held_free} while held, {freed_free} after"
    );
    let before = rss();
    let trimmed = trim.tick();
    let after = rss();
    assert!(trimmed.is_some(), "8 MiB freed since the last look: a trim");
    assert!(
        after + 4 * TRIM_MIN <= before,
        "the trim returned the freed pages: RSS {before} before, {after} after"
    );
    // Nothing freed since: the next look does not trim.
    assert_eq!(trim.tick(), None);
    drop(fence);
}
