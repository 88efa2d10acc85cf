//! The process's memory: its peak, and how the allocator gives freed memory back.
//!
//! The report's data (connections, races, backends) is most of the peak. What the stages free
//! between them (the reader's batches and the trackers' tables after tracking, the DNS table
//! after the last detector that reads it) would otherwise stay resident in the allocator's
//! free lists: glibc returns free memory in the middle of a heap, or in another thread's
//! arena, only when asked. On the 600 MB benchmark capture, once the DNS table was dropped,
//! glibc held 52 MB free but resident (`malloc_stats`); giving it back lowered the peak by
//! 18 MB. The detectors' smaller working sets are left for the allocator to reuse.

/// Allocations of this size and more get pages of their own from the system, returned as soon
/// as they are freed (see [`tune_allocator`]).
pub const MMAP_THRESHOLD: usize = 4 << 20;

/// Make the allocator map every allocation of [`MMAP_THRESHOLD`] bytes or more on its own, so
/// that freeing it gives the memory back at once. glibc's default threshold moves up (to
/// 32 MB at most) each time such a block is freed, after which blocks of that size are carved
/// from the heap and stay resident when freed: the tracker's record chunks, freed one by one
/// while the connection list fills, would all stay resident until the end. Called once by the
/// binary; a no-op off glibc. (Fixing the threshold also fixes glibc's trim threshold at
/// 128 KiB: on the 600 MB benchmark capture that is 10 % more page faults, and a peak 7 MB
/// lower than with a trim threshold of 8 MiB.)
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets a tunable of the allocator; it is thread-safe and takes plain
    // integers.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD as libc::c_int);
    }
}

/// Give the pages of freed memory back to the system (every arena, not only a heap's top).
/// Called after large working sets are freed; up to 30 ms (measured 0.2-28.6 ms on the 600 MB
/// benchmark capture). A no-op off glibc.
pub fn give_back() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free pages of the allocator's own heaps; it is
    // thread-safe.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Free `value` off the calling thread: hundreds of thousands of connections, or DNS
/// exchanges, take tens of ms to free, and the caller need not wait for that. Should no thread
/// be spawned, `value` is dropped here instead.
pub fn drop_in_background<T: Send + 'static>(value: T) {
    let _ = std::thread::Builder::new()
        .name("racetrace-free".into())
        .spawn(move || drop(value));
}

/// The process's peak resident memory so far, in bytes (Linux: `VmHWM`; elsewhere `None`).
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}
