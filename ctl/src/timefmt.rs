//! Time formatting as the 4.17 tool prints it: C's `ctime()` in local time and the
//! `(ddd hh:mm:ss)` durations of `uptime` and `statistics` (reference §9.9, §9.11).
//!
//! Local time needs the C library's time-zone handling (`localtime_r`), the one
//! `unsafe` call in this crate.

/// `ctime()` of `secs` in local time, with its trailing newline:
/// `Www Mmm dd hh:mm:ss yyyy\n` (day of month space-padded).
pub fn ctime(secs: i64) -> String {
    const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let tm = local_tm(secs);
    format!(
        "{} {} {:2} {:02}:{:02}:{:02} {}\n",
        DAYS.get(tm.tm_wday as usize).copied().unwrap_or("???"),
        MONTHS.get(tm.tm_mon as usize).copied().unwrap_or("???"),
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec,
        i64::from(tm.tm_year) + 1900
    )
}

#[allow(unsafe_code)]
fn local_tm(secs: i64) -> libc::tm {
    let t: libc::time_t = secs;
    // SAFETY: `tm` is plain old data, so all-zero is a valid value; `localtime_r`
    // only reads `t` and writes `tm`, both live locals, and is thread-safe.
    unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        if libc::localtime_r(&t, &mut tm).is_null() {
            // Out of range for the C library: show the epoch rather than garbage.
            let zero: libc::time_t = 0;
            libc::localtime_r(&zero, &mut tm);
        }
        tm
    }
}

/// `yyyy/mm/dd hh:mm:ss` of `secs` in local time (the stamp of `dumpdbbackup`).
pub fn local_stamp(secs: i64) -> String {
    let tm = local_tm(secs);
    format!(
        "{}/{:02}/{:02} {:02}:{:02}:{:02}",
        i64::from(tm.tm_year) + 1900,
        tm.tm_mon + 1,
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec
    )
}

/// `(ddd hh:mm:ss)` of a span of whole seconds, without the parentheses.
pub fn duration(secs: i64) -> String {
    let days = secs / 86_400;
    let hours = (secs % 86_400) / 3_600;
    let minutes = (secs % 3_600) / 60;
    let seconds = secs % 60;
    format!("{days:03} {hours:02}:{minutes:02}:{seconds:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ctime_shape() {
        // Whatever the local zone, the layout is fixed: 24 characters and a newline.
        let text = ctime(0);
        assert_eq!(text.len(), 25);
        assert!(text.ends_with('\n'));
        assert_eq!(&text[3..4], " ");
        assert_eq!(&text[13..14], ":");
    }

    #[test]
    fn stamp_shape() {
        let text = local_stamp(0);
        assert_eq!(text.len(), 19);
        assert_eq!((&text[4..5], &text[7..8], &text[13..14]), ("/", "/", ":"));
    }

    #[test]
    fn durations() {
        assert_eq!(duration(0), "000 00:00:00");
        assert_eq!(duration(12), "000 00:00:12");
        assert_eq!(duration(86_400 * 3 + 3_600 * 5 + 61), "003 05:01:01");
    }
}
