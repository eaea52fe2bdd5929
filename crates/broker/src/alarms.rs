//! Resource alarms, as RabbitMQ raises them: memory above the high watermark, or free disk
//! space below the limit. While one is raised, connections that publish are blocked (sent
//! `connection.blocked` and no longer read) and consumers keep draining; when it clears they
//! are unblocked. The limits can be changed at run time, as with `rabbitmqctl
//! set_vm_memory_high_watermark` and `set_disk_free_limit`.

use crate::config::AlarmConfig;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::watch;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AlarmState {
    pub memory: bool,
    pub disk: bool,
}

impl AlarmState {
    pub fn any(&self) -> bool {
        self.memory || self.disk
    }

    /// The reason in `connection.blocked`, in RabbitMQ's words.
    pub fn reason(&self) -> String {
        match (self.memory, self.disk) {
            (true, true) => "low on memory & disk".to_owned(),
            (true, false) => "low on memory".to_owned(),
            (false, true) => "low on disk".to_owned(),
            (false, false) => String::new(),
        }
    }
}

pub struct Alarms {
    state: watch::Sender<AlarmState>,
    memory_limit: AtomicU64,
    disk_limit: AtomicU64,
    data_dir: PathBuf,
    interval: Duration,
}

/// The process's resident memory, in bytes.
pub fn rss_bytes() -> u64 {
    kib_field("/proc/self/status", "VmRSS:") * 1024
}

/// The machine's memory, in bytes.
pub fn total_memory() -> u64 {
    kib_field("/proc/meminfo", "MemTotal:") * 1024
}

fn kib_field(path: &str, key: &str) -> u64 {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// Free bytes for the broker on the filesystem of `dir`.
pub fn free_disk(dir: &Path) -> Option<u64> {
    let s = nix::sys::statvfs::statvfs(dir).ok()?;
    Some(s.blocks_available() as u64 * s.fragment_size() as u64)
}

impl Alarms {
    pub fn new(config: &AlarmConfig, data_dir: &Path) -> Alarms {
        let memory_limit = if config.memory_high_watermark_bytes > 0 {
            config.memory_high_watermark_bytes
        } else {
            (total_memory() as f64 * config.memory_high_watermark) as u64
        };
        Alarms {
            state: watch::Sender::new(AlarmState::default()),
            memory_limit: AtomicU64::new(memory_limit),
            disk_limit: AtomicU64::new(config.disk_free_limit_bytes),
            data_dir: data_dir.to_path_buf(),
            interval: Duration::from_millis(config.check_interval_ms.max(10)),
        }
    }

    pub fn subscribe(&self) -> watch::Receiver<AlarmState> {
        self.state.subscribe()
    }

    pub fn state(&self) -> AlarmState {
        *self.state.borrow()
    }

    /// Changes the memory threshold (0: the alarm never fires) and checks at once.
    pub fn set_memory_limit(&self, bytes: u64) {
        self.memory_limit.store(bytes, Ordering::Relaxed);
        self.check();
    }

    /// Changes the free-disk threshold and checks at once.
    pub fn set_disk_limit(&self, bytes: u64) {
        self.disk_limit.store(bytes, Ordering::Relaxed);
        self.check();
    }

    pub fn memory_limit(&self) -> u64 {
        self.memory_limit.load(Ordering::Relaxed)
    }

    pub fn disk_limit(&self) -> u64 {
        self.disk_limit.load(Ordering::Relaxed)
    }

    /// Measures and raises or clears the alarms.
    pub fn check(&self) {
        let mem = self.memory_limit();
        let memory = mem > 0 && rss_bytes() > mem;
        let disk = free_disk(&self.data_dir).is_some_and(|free| free < self.disk_limit());
        let next = AlarmState { memory, disk };
        let prev = *self.state.borrow();
        if next != prev {
            if next.memory != prev.memory {
                tracing::warn!(
                    rss = rss_bytes(),
                    limit = mem,
                    raised = next.memory,
                    "memory alarm"
                );
            }
            if next.disk != prev.disk {
                tracing::warn!(limit = self.disk_limit(), raised = next.disk, "disk alarm");
            }
            self.state.send_replace(next);
        }
    }

    /// Checks periodically, until the node stops.
    pub async fn run(&self) {
        loop {
            self.check();
            tokio::time::sleep(self.interval).await;
        }
    }
}
