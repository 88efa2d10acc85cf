//! The process's memory: its peak, and how the allocator gives freed memory back.
//!
//! The report's data (connections, races, backends) is most of the peak. What the stages free
//! between them (the reader's batches and the trackers' tables after tracking, the DNS table
//! after the last detector that reads it) would otherwise stay resident in the allocator's
//! free lists: glibc returns free memory in the middle of a heap, or in another thread's
//! arena, only when asked (`malloc_stats` shows it). The detectors' smaller working sets are
//! left for the allocator to reuse. What each of these bought is in `bench/HISTORY.md`.

/// Allocations of this size and more get pages of their own from the system, returned as soon
/// as they are freed (see [`tune_allocator`]).
pub const MMAP_THRESHOLD: usize = 4 << 20;

/// Make the allocator map every allocation of [`MMAP_THRESHOLD`] bytes or more on its own, so that
/// freeing it gives the memory back at once. glibc's default threshold moves up (to 32 MB at most)
/// each time such a block is freed, after which blocks of that size are carved from the heap and
/// stay resident when freed: the tracker's record chunks, freed one by one as the merge passes
/// them, would stay resident, and the growing connection list could not be moved by `mremap`
/// ([`prefer_huge_pages_growing`]). Called once by the binary; a no-op off glibc. (Fixing the
/// threshold also fixes glibc's trim threshold at 128 KiB: more page faults, a lower peak.)
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets a tunable of the allocator; it is thread-safe and takes plain
    // integers.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD as libc::c_int);
    }
}

/// Ask the system to back `v`'s unused capacity with huge pages (2 MiB on x86-64) when it faults it
/// in: for the large lists written once and read by every later stage (the tracker's record chunks;
/// the connection list through [`prefer_huge_pages_growing`]) this replaces 512 page faults, and as
/// many TLB entries, with one. Only whole huge pages inside the allocation are affected, and only
/// where transparent huge pages are enabled (`always` or `madvise`); elsewhere a no-op. Call before
/// writing into the capacity. For a vector that will grow by reallocation, use
/// [`prefer_huge_pages_growing`].
pub fn prefer_huge_pages<T>(v: &mut Vec<T>) {
    let spare = v.spare_capacity_mut();
    let start = spare.as_mut_ptr() as usize;
    // madvise wants a page-aligned start; the kernel then uses huge pages for the whole 2 MiB
    // extents inside the range.
    advise_huge(
        start.next_multiple_of(PAGE),
        start + std::mem::size_of_val(spare),
    );
}

/// [`prefer_huge_pages`] for a vector that grows by reallocation, such as the connection
/// list: the whole buffer is advised, from the page it starts in. The allocator maps a
/// buffer of [`MMAP_THRESHOLD`] bytes or more on its own and grows it by asking the kernel to
/// move the mapping (`mremap`, no copy), which works only while the mapping is one region:
/// advising just its spare capacity splits it in two, the move fails, and the allocator
/// copies the whole buffer into a new one, both resident at once (`strace` shows each
/// doubling's `mremap` failing with EFAULT).
pub fn prefer_huge_pages_growing<T>(v: &mut Vec<T>) {
    let start = v.as_mut_ptr() as usize;
    let bytes = v.capacity() * std::mem::size_of::<T>();
    // Rounded down: for a buffer mapped on its own that page is the mapping's first, holding
    // the allocator's header.
    advise_huge(start - start % PAGE, start + bytes);
}

/// `madvise(MADV_HUGEPAGE)` over `start..end` (`start` page-aligned), when it spans a huge
/// page.
fn advise_huge(start: usize, end: usize) {
    let len = end.saturating_sub(start);
    if len < HUGE_PAGE {
        return;
    }
    #[cfg(target_os = "linux")]
    {
        // SAFETY: MADV_HUGEPAGE only changes how the kernel backs the pages of the range,
        // never their contents, whoever's allocation they belong to (the callers pass a
        // vector's own buffer, its first page at most rounded down); a failure (EINVAL where
        // THP is off, ENOMEM for an unmapped page) is harmless.
        unsafe {
            libc::madvise(start as *mut libc::c_void, len, libc::MADV_HUGEPAGE);
        }
    }
}

/// The page size madvise aligns to (4 KiB on x86-64 and most aarch64 kernels; on a larger
/// one the call fails with EINVAL and changes nothing).
const PAGE: usize = 4096;

/// A transparent huge page on x86-64 and most aarch64 kernels.
const HUGE_PAGE: usize = 2 << 20;

/// Give the pages of freed memory back to the system (every arena, not only a heap's top).
/// Called after large working sets are freed; it takes up to tens of milliseconds. A no-op
/// off glibc.
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
