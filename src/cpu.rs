//! The process's CPU time, for `--stats`: beside a stage's wall-clock time it shows how many
//! cores the stage kept busy (a 2-core machine runs a stage that is parallel throughout on
//! close to 2).

/// CPU time (user and system, all threads) the process has used so far, in seconds
/// (`getrusage`, microsecond resolution); `None` off Unix or when the call fails.
pub fn seconds() -> Option<f64> {
    #[cfg(unix)]
    {
        // SAFETY: `rusage` is plain integers, so all-zero is a valid value; getrusage writes
        // one such struct through the pointer, which is valid for the call.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
            return None;
        }
        let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
        Some(secs(usage.ru_utime) + secs(usage.ru_stime))
    }
    #[cfg(not(unix))]
    None
}

/// CPU seconds used since `since` (a [`seconds`] reading), when both readings exist.
pub fn since(since: Option<f64>) -> Option<f64> {
    Some(seconds()? - since?)
}
