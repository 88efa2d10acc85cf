//! The performance machinery, in one room: CPU time and peak memory of the process
//! ([`cpu`]), the allocator's tuning, huge pages and the giving back of freed pages
//! ([`memory`]), cache prefetch hints ([`prefetch`]) and cache-line padding ([`CachePadded`]).
//! The stages call these; none of them holds a tuning of its own, and nothing here reads the
//! environment. What each one bought, measured, is in `bench/HISTORY.md`.

pub mod cpu;
pub mod memory;

/// Ask the CPU to start loading the first two cache lines at `bytes` (a frame's link, IP and
/// TCP headers end within 128 bytes for all but unusual option lengths), so that decoding it
/// later does not wait on memory. A hint only: never faults, and a no-op off x86-64.
#[inline]
pub fn prefetch(bytes: &[u8]) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        let at = bytes.as_ptr().cast::<i8>();
        // SAFETY: a prefetch is a hint that never faults, whatever the address; it needs
        // SSE, which every x86-64 CPU has.
        unsafe {
            _mm_prefetch::<_MM_HINT_T0>(at);
            _mm_prefetch::<_MM_HINT_T0>(at.wrapping_add(64));
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = bytes;
}

/// A value aligned to 128 bytes (two cache lines, the pair Intel's prefetcher fetches
/// together), so that values side by side in one `Vec`, each updated by its own thread, never
/// share a line (false sharing). The JSON writer's buffers once did, and made two threads
/// slower than one; for the trackers and decode runs that use it no gain showed on the
/// benchmark files, so it is a guard, not a measured speed-up.
#[derive(Clone, Copy, Debug, Default)]
#[repr(align(128))]
pub struct CachePadded<T>(pub T);

impl<T> std::ops::Deref for CachePadded<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T> std::ops::DerefMut for CachePadded<T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.0
    }
}
