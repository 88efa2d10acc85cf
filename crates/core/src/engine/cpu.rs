//! The process's CPU time, and what a step took (wall-clock and CPU time), for `--stats`:
//! beside a stage's wall-clock time it shows how many cores the stage kept busy (a 2-core
//! machine runs a stage that is parallel throughout on close to 2).

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

/// Wall-clock and CPU time spent on a step (the CPU time is the whole process's: with several
/// captures analysed at once it counts the others too).
#[derive(Clone, Copy, Debug, Default)]
pub struct Spent {
    /// Wall-clock seconds.
    pub wall: f64,
    /// CPU seconds (user and system, every thread), when readable.
    pub cpu: Option<f64>,
}

impl Spent {
    /// Both steps together.
    pub fn plus(self, other: Spent) -> Spent {
        Spent {
            wall: self.wall + other.wall,
            cpu: self.cpu.zip(other.cpu).map(|(a, b)| a + b),
        }
    }

    /// Cores kept busy: CPU seconds over wall-clock seconds (0 for a step too short to time;
    /// `None` without a CPU reading).
    pub fn cores(self) -> Option<f64> {
        let cpu = self.cpu?;
        Some(if self.wall > 0.0 {
            cpu / self.wall
        } else {
            0.0
        })
    }
}

/// The readings at the start of a step.
pub struct Started {
    at: std::time::Instant,
    cpu: Option<f64>,
}

impl Started {
    /// A step starting now.
    pub fn now() -> Started {
        Started {
            at: std::time::Instant::now(),
            cpu: seconds(),
        }
    }

    /// What the step took until now.
    pub fn stop(self) -> Spent {
        Spent {
            wall: self.at.elapsed().as_secs_f64(),
            cpu: since(self.cpu),
        }
    }
}
