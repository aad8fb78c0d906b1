//! The load generator's own CPU time, read from `/proc` (Linux), so that a report can say
//! what each message cost the client: a load generator that needs as much CPU as the server
//! measures itself.
//!
//! `getrusage` would need `unsafe` (the workspace denies it). `/proc/self/task/*/schedstat`
//! gives nanoseconds on CPU per thread; summed over the threads alive, it covers the runtime's
//! threads, which live through the whole run (names are resolved before the runtime starts,
//! so no short-lived blocking thread takes CPU). Where it is missing, `/proc/self/stat` gives
//! user and system time for the whole process in clock ticks, taken as 100 per second (the
//! value of `getconf CLK_TCK` on Linux, which a process cannot ask for without libc).

use std::fs;

/// Clock ticks per second assumed for `/proc/self/stat`.
const TICKS_PER_SECOND: u64 = 100;

/// CPU time used by this process so far (user and system, all threads), in nanoseconds, or
/// `None` where `/proc` cannot tell.
pub(super) fn process_cpu_ns() -> Option<u64> {
    from_schedstat().or_else(from_stat)
}

/// The sum of the first field of every thread's `schedstat`.
fn from_schedstat() -> Option<u64> {
    let mut total = 0u64;
    let mut threads = 0;
    for entry in fs::read_dir("/proc/self/task").ok()? {
        let path = entry.ok()?.path().join("schedstat");
        // A thread that ended since the listing has no file any more: skip it.
        let Ok(text) = fs::read_to_string(path) else {
            continue;
        };
        total += text.split_whitespace().next()?.parse::<u64>().ok()?;
        threads += 1;
    }
    (threads > 0).then_some(total)
}

/// `utime` + `stime` (fields 14 and 15) of `/proc/self/stat`, in nanoseconds.
fn from_stat() -> Option<u64> {
    let text = fs::read_to_string("/proc/self/stat").ok()?;
    parse_stat(&text)
}

/// `utime` + `stime` of a `stat` line, in nanoseconds. The command name (field 2) may hold
/// spaces and parentheses, so fields are counted after its last `)`.
fn parse_stat(text: &str) -> Option<u64> {
    let mut fields = text.get(text.rfind(')')? + 1..)?.split_whitespace();
    // After the name come field 3 (state) onwards: utime is field 14, the 12th here.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime) * (1_000_000_000 / TICKS_PER_SECOND))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_give_user_plus_system_time() {
        let line = "4242 (a (weird) name) R 1 4242 4242 0 -1 4194304 100 0 0 0 53 2 0 0 20 0 \
                    1 0 12345 1000000 200 18446744073709551615";
        assert_eq!(parse_stat(line), Some(550_000_000));
        assert_eq!(parse_stat("4242 (x) R 1"), None);
    }

    #[test]
    fn this_process_has_used_some_cpu() {
        // Only a sign of life: threads of the test harness come and go, so two readings
        // need not grow.
        assert!(process_cpu_ns().expect("/proc is mounted") > 0);
        assert!(from_stat().is_some());
    }
}
