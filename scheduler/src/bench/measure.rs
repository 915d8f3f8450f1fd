//! CPU time and peak memory of this process over a stretch of work.

use std::time::Instant;

/// Starts a measurement: resets the kernel's peak-RSS mark so that the
/// peak read at the end belongs to this stretch only.
pub struct Meter {
    started: Instant,
    cpu_start: f64,
}

#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Usage {
    pub seconds: f64,
    pub cpu_seconds: f64,
    /// Peak resident set size during the stretch, bytes; 0 when the kernel
    /// does not report it.
    pub peak_rss_bytes: u64,
}

fn cpu_seconds() -> f64 {
    let mut u = std::mem::MaybeUninit::<libc::rusage>::uninit();
    // SAFETY: getrusage fills the struct it is given.
    let r = unsafe { libc::getrusage(libc::RUSAGE_SELF, u.as_mut_ptr()) };
    if r != 0 {
        return 0.0;
    }
    // SAFETY: getrusage returned 0, so the struct is initialised.
    let u = unsafe { u.assume_init() };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(u.ru_utime) + t(u.ru_stime)
}

/// VmHWM from /proc/self/status, bytes.
pub fn peak_rss() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

impl Meter {
    pub fn start() -> Self {
        // "5" resets the peak RSS mark (Linux 4.0+); without it the peak is
        // the process's since start, an upper bound.
        let _ = std::fs::write("/proc/self/clear_refs", "5");
        Self {
            started: Instant::now(),
            cpu_start: cpu_seconds(),
        }
    }

    pub fn stop(&self) -> Usage {
        Usage {
            seconds: self.started.elapsed().as_secs_f64(),
            cpu_seconds: (cpu_seconds() - self.cpu_start).max(0.0),
            peak_rss_bytes: peak_rss(),
        }
    }
}
