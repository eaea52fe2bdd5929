//! Log lines in HAProxy's shapes: one `tcplog` line per session when it ends, and events
//! (servers going up or down) that are also echoed to stderr as HAProxy does in the
//! foreground. Targets are stderr, stdout, or syslog (RFC 3164) over UDP or a local socket.

use crate::config::LogTarget;
use std::io::Write;
use std::net::UdpSocket;
use std::os::unix::net::UnixDatagram;
use std::time::SystemTime;

/// Syslog severities used here.
const INFO: u8 = 6;
const NOTICE: u8 = 5;

pub struct Logger {
    targets: Vec<(LogTarget, Option<Sink>)>,
    /// Echo events to stderr (foreground mode).
    echo_events: bool,
    pid: u32,
}

enum Sink {
    Udp(UdpSocket),
    Unix(UnixDatagram),
}

impl Logger {
    pub fn new(targets: &[LogTarget], echo_events: bool) -> Self {
        let targets = targets
            .iter()
            .map(|t| {
                let sink = match t {
                    LogTarget::Udp { addr, .. } => {
                        let local = if addr.is_ipv4() {
                            "0.0.0.0:0"
                        } else {
                            "[::]:0"
                        };
                        UdpSocket::bind(local).ok().map(|s| {
                            let _ = s.set_nonblocking(true);
                            Sink::Udp(s)
                        })
                    }
                    LogTarget::Unix { .. } => UnixDatagram::unbound().ok().map(|s| {
                        let _ = s.set_nonblocking(true);
                        Sink::Unix(s)
                    }),
                    _ => None,
                };
                (t.clone(), sink)
            })
            .collect();
        Logger {
            targets,
            echo_events,
            pid: std::process::id(),
        }
    }

    pub fn is_enabled(&self) -> bool {
        !self.targets.is_empty()
    }

    /// A session's tcplog line.
    pub fn session(&self, line: &str) {
        self.emit(INFO, line);
    }

    /// A state change worth an operator's attention.
    pub fn event(&self, line: &str) {
        if self.echo_events {
            eprintln!("[WARNING]  ({}) : {line}", self.pid);
        }
        self.emit(NOTICE, line);
    }

    fn emit(&self, severity: u8, line: &str) {
        for (target, sink) in &self.targets {
            match (target, sink) {
                (LogTarget::Stderr, _) => {
                    let _ = writeln!(std::io::stderr(), "{line}");
                }
                (LogTarget::Stdout, _) => {
                    let _ = writeln!(std::io::stdout(), "{line}");
                }
                (LogTarget::Udp { addr, facility }, Some(Sink::Udp(s))) => {
                    let _ = s.send_to(self.syslog(*facility, severity, line).as_bytes(), addr);
                }
                (LogTarget::Unix { path, facility }, Some(Sink::Unix(s))) => {
                    let _ = s.send_to(self.syslog(*facility, severity, line).as_bytes(), path);
                }
                _ => {}
            }
        }
    }

    fn syslog(&self, facility: u8, severity: u8, line: &str) -> String {
        let pri = facility as u32 * 8 + severity as u32;
        format!("<{pri}>{} haproxy[{}]: {line}", syslog_time(), self.pid)
    }
}

/// `Nov 25 02:45:01`, in UTC (the process has no time zone database).
fn syslog_time() -> String {
    let (y, mo, d, h, mi, s, _) = civil(SystemTime::now());
    let _ = y;
    format!("{} {d:>2} {h:02}:{mi:02}:{s:02}", MONTHS[mo as usize - 1])
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// HAProxy's accept date in a tcplog line: `25/Nov/2026:02:45:01.123`.
pub fn accept_date(t: SystemTime) -> String {
    let (y, mo, d, h, mi, s, ms) = civil(t);
    format!(
        "{d:02}/{}/{y}:{h:02}:{mi:02}:{s:02}.{ms:03}",
        MONTHS[mo as usize - 1]
    )
}

/// Year, month, day, hour, minute, second, millisecond in UTC.
fn civil(t: SystemTime) -> (i64, u32, u32, u32, u32, u32, u32) {
    let since = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs() as i64;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Howard Hinnant's days-to-civil.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (
        y,
        m,
        d,
        (rem / 3600) as u32,
        (rem % 3600 / 60) as u32,
        (rem % 60) as u32,
        since.subsec_millis(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn dates_are_written_as_haproxy_writes_them() {
        // 2026-11-25T02:45:01.123Z
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_795_574_701_123);
        assert_eq!(accept_date(t), "25/Nov/2026:02:45:01.123");
        let leap = SystemTime::UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(&accept_date(leap)[..11], "29/Feb/2000");
    }

    #[test]
    fn syslog_lines_carry_facility_and_severity() {
        let receiver = UdpSocket::bind("127.0.0.1:0").unwrap();
        receiver
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        let log = Logger::new(
            &[LogTarget::Udp {
                addr: receiver.local_addr().unwrap(),
                facility: 18, // local2
            }],
            false,
        );
        log.session("hello");
        let mut buf = [0u8; 256];
        let n = receiver.recv(&mut buf).unwrap();
        let line = std::str::from_utf8(&buf[..n]).unwrap();
        assert!(line.starts_with("<150>"), "local2.info is 18*8+6: {line}");
        assert!(line.ends_with(&format!("haproxy[{}]: hello", std::process::id())));
    }
}
