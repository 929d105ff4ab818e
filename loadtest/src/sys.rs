//! The few operating-system facilities std does not offer: a timerfd for sub-millisecond send deadlines (mio's
//! poll timeout has millisecond granularity), process CPU time, the file descriptor limit, and another
//! process's memory and CPU use from `/proc`.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};

/// A non-blocking one-shot `CLOCK_MONOTONIC` timer that mio can poll.
#[derive(Debug)]
pub struct TimerFd {
    fd: OwnedFd,
    /// Whether the timer is armed (and not yet drained).
    armed: bool,
}

impl TimerFd {
    pub fn new() -> io::Result<TimerFd> {
        // SAFETY: timerfd_create has no memory-safety preconditions; a non-negative result is a fresh descriptor
        // that nothing else owns, so OwnedFd may take it.
        let fd = unsafe {
            libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: see above: `fd` is valid and owned by nobody else.
        Ok(TimerFd {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
            armed: false,
        })
    }

    pub fn register(&self, registry: &Registry, token: Token) -> io::Result<()> {
        registry.register(
            &mut SourceFd(&self.fd.as_raw_fd()),
            token,
            Interest::READABLE,
        )
    }

    /// Arms the timer to fire once after `delay` (at least 1 ns: zero would disarm it).
    pub fn arm(&mut self, delay: Duration) -> io::Result<()> {
        let delay = delay.max(Duration::from_nanos(1));
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: delay.as_secs().min(i64::MAX as u64) as libc::time_t,
                tv_nsec: delay.subsec_nanos() as libc::c_long,
            },
        };
        // SAFETY: `self.fd` is a timerfd we own; `spec` is a valid itimerspec; the old value is not requested.
        let rc =
            unsafe { libc::timerfd_settime(self.fd.as_raw_fd(), 0, &spec, std::ptr::null_mut()) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        self.armed = true;
        Ok(())
    }

    pub fn is_armed(&self) -> bool {
        self.armed
    }

    /// Consumes an expiry (after a readiness event) so that the next one is reported again.
    pub fn drain(&mut self) {
        let mut buf = [0u8; 8];
        // SAFETY: reading at most 8 bytes into an 8-byte stack buffer from a descriptor we own.
        let _ = unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        self.armed = false;
    }
}

/// Sets the calling thread's timer slack (Linux rounds sleeping timeouts up by this much, 50 µs by default) so
/// that open-loop senders wake close to their schedule. Best effort.
pub fn set_timer_slack(slack: Duration) {
    let ns = slack.as_nanos().clamp(1, libc::c_ulong::MAX as u128) as libc::c_ulong;
    // SAFETY: PR_SET_TIMERSLACK takes a plain integer and affects only the calling thread.
    let _ = unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, ns, 0, 0, 0) };
}

/// CPU time this process used so far: (user, system).
pub fn cpu_time() -> (Duration, Duration) {
    // SAFETY: getrusage writes a plain struct; zeroed is a valid initial value for it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: RUSAGE_SELF with a valid pointer to a rusage struct.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    if rc != 0 {
        return (Duration::ZERO, Duration::ZERO);
    }
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    (tv(usage.ru_utime), tv(usage.ru_stime))
}

/// Raises the soft open-file limit to the hard limit (the `connect` scenario holds thousands of sockets).
/// Returns the limit in force afterwards.
pub fn raise_fd_limit() -> u64 {
    // SAFETY: getrlimit/setrlimit on a valid, initialized rlimit struct.
    unsafe {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 0;
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                return raised.rlim_cur;
            }
        }
        lim.rlim_cur
    }
}

/// Resident set size of process `pid` in KiB (`VmRSS` in `/proc/<pid>/status`).
pub fn rss_kib(pid: u32) -> Result<u64, String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| format!("cannot read /proc/{pid}/status: {e}"))?;
    parse_vm_rss(&status).ok_or_else(|| format!("no VmRSS in /proc/{pid}/status"))
}

fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Open file descriptors of process `pid` (entries of `/proc/<pid>/fd`; the process must be ours).
pub fn open_fds(pid: u32) -> Result<u64, String> {
    let dir = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map_err(|e| format!("cannot read /proc/{pid}/fd: {e}"))?;
    Ok(dir.count() as u64)
}

/// CPU time (user + system) process `pid` used so far, from `/proc/<pid>/stat` (clock-tick resolution).
pub fn process_cpu(pid: u32) -> Result<Duration, String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map_err(|e| format!("cannot read /proc/{pid}/stat: {e}"))?;
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    let total =
        parse_stat_cpu_ticks(&stat).ok_or_else(|| format!("unexpected /proc/{pid}/stat format"))?;
    Ok(Duration::from_nanos(total * 1_000_000_000 / ticks))
}

/// utime + stime (fields 14 and 15) in clock ticks. The command name (field 2) may contain spaces and
/// parentheses, so fields are counted after its last `)`.
fn parse_stat_cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    // After the name: state is field 3, so utime (14) is the 12th from here.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_parsing() {
        assert_eq!(
            parse_vm_rss("Name:\tx\nVmRSS:\t   12345 kB\nVmSwap: 0 kB\n"),
            Some(12345)
        );
        assert_eq!(parse_vm_rss("Name: x\n"), None);
        let stat = "42 (a) b (c)) S 1 2 3 4 5 6 7 8 9 10 111 222 0 0 20 0 1 0";
        assert_eq!(parse_stat_cpu_ticks(stat), Some(333));
    }

    #[test]
    fn own_process() {
        let pid = std::process::id();
        assert!(rss_kib(pid).expect("rss") > 0);
        assert!(process_cpu(pid).is_ok());
        assert!(open_fds(pid).expect("fds") >= 3);
        let (user, sys) = cpu_time();
        assert!(user + sys > Duration::ZERO);
        assert!(raise_fd_limit() > 0);
    }

    #[test]
    fn timer_fires() {
        let mut poll = mio::Poll::new().expect("poll");
        let mut timer = TimerFd::new().expect("timerfd");
        timer.register(poll.registry(), Token(7)).expect("register");
        timer.arm(Duration::from_micros(200)).expect("arm");
        let mut events = mio::Events::with_capacity(4);
        let start = std::time::Instant::now();
        poll.poll(&mut events, Some(Duration::from_secs(5)))
            .expect("poll");
        assert!(events.iter().any(|e| e.token() == Token(7)));
        assert!(start.elapsed() < Duration::from_secs(1));
        timer.drain();
        assert!(!timer.is_armed());
    }
}
