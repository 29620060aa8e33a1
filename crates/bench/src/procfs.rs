//! What `/proc` says about a process: memory, CPU time (in total and by thread name) and the
//! open-file limit. Linux only, which is where the goals are set.

use std::collections::BTreeMap;
use std::time::Instant;

use anyhow::Context;
use serde::Serialize;

/// `/proc/<pid>/stat` counts CPU time in USER_HZ ticks, which are 1/100 s on every Linux
/// architecture that matters here (the kernel fixes USER_HZ for user space).
const TICKS_PER_SEC: f64 = 100.0;

/// Resident memory of a process, or the sum over several (a cluster's nodes), in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Memory {
    /// VmRSS: resident now.
    pub rss: u64,
    /// VmHWM: the most it was ever resident (summed over the processes: each at its own peak,
    /// which they need not have reached at the same time).
    pub peak: u64,
}

/// Bytes as MiB, for reports.
pub fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

pub fn memory(pid: u32) -> anyhow::Result<Memory> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("cannot read the status of process {pid}"))?;
    parse_status(&text).with_context(|| format!("no VmRSS/VmHWM in /proc/{pid}/status"))
}

/// The memory of several processes together.
pub fn memory_sum(pids: &[u32]) -> anyhow::Result<Memory> {
    pids.iter().try_fold(Memory::default(), |sum, &pid| {
        let one = memory(pid)?;
        Ok(Memory { rss: sum.rss + one.rss, peak: sum.peak + one.peak })
    })
}

fn kib_field(text: &str, name: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with(name))?;
    let value = line[name.len()..].trim_start_matches(':').split_whitespace().next()?;
    value.parse::<u64>().ok().map(|kib| kib * 1024)
}

fn parse_status(text: &str) -> Option<Memory> {
    Some(Memory { rss: kib_field(text, "VmRSS")?, peak: kib_field(text, "VmHWM")? })
}

/// What a `stat` line says of a thread or process.
#[derive(Debug, PartialEq, Eq)]
struct Stat {
    name: String,
    /// CPU ticks, user and system.
    ticks: u64,
    nice: i32,
}

/// Reads a `stat` line. The name is in parentheses and may itself hold spaces and parentheses,
/// hence the search from the right.
fn parse_stat(line: &str) -> Option<Stat> {
    let open = line.find('(')?;
    let close = line.rfind(')')?;
    let name = line.get(open + 1..close)?.to_owned();
    // After the name: state is field 3, utime field 14, stime field 15 and nice field 19.
    let rest: Vec<&str> = line.get(close + 1..)?.split_whitespace().collect();
    let utime: u64 = rest.get(11)?.parse().ok()?;
    let stime: u64 = rest.get(12)?.parse().ok()?;
    let nice: i32 = rest.get(16)?.parse().ok()?;
    Some(Stat { name, ticks: utime + stime, nice })
}

/// CPU seconds used so far by a whole process.
pub fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("cannot read /proc/{pid}/stat"))?;
    let stat = parse_stat(&text).with_context(|| format!("cannot parse /proc/{pid}/stat"))?;
    Ok(stat.ticks as f64 / TICKS_PER_SEC)
}

/// CPU seconds used so far by the process's threads, summed by thread name, and the nice value
/// of each name whose threads do not all run at 0 (the lowest, if they differ). Threads that
/// have ended are not counted, which is why the total is taken separately.
fn threads(pid: u32) -> (BTreeMap<String, f64>, BTreeMap<String, i32>) {
    let (mut cpu, mut nice) = (BTreeMap::new(), BTreeMap::new());
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return (cpu, nice) };
    for task in tasks.flatten() {
        let Ok(text) = std::fs::read_to_string(task.path().join("stat")) else { continue };
        if let Some(stat) = parse_stat(&text) {
            *cpu.entry(stat.name.clone()).or_insert(0.0) += stat.ticks as f64 / TICKS_PER_SEC;
            if stat.nice != 0 {
                keep_lowest(&mut nice, stat.name, stat.nice);
            }
        }
    }
    (cpu, nice)
}

fn keep_lowest(nice: &mut BTreeMap<String, i32>, name: String, value: i32) {
    let lowest = nice.entry(name).or_insert(value);
    *lowest = value.min(*lowest);
}

/// The soft limit on open files of this process (which a child inherits).
pub fn open_files_limit() -> Option<u64> {
    parse_open_files_limit(&std::fs::read_to_string("/proc/self/limits").ok()?)
}

fn parse_open_files_limit(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    let soft = line.trim_start_matches("Max open files").split_whitespace().next()?;
    if soft == "unlimited" { Some(u64::MAX) } else { soft.parse().ok() }
}

/// The whole machine's busy and I/O-wait CPU seconds (all cores) from the first line of
/// `/proc/stat`: the bench shares the machine with whatever else runs on it, and this shows how
/// much that was.
pub fn machine_cpu_seconds() -> Option<(f64, f64)> {
    parse_machine_cpu(&std::fs::read_to_string("/proc/stat").ok()?)
}

fn parse_machine_cpu(text: &str) -> Option<(f64, f64)> {
    let line = text.lines().next()?.strip_prefix("cpu ")?;
    let ticks: Vec<u64> = line.split_whitespace().map(|v| v.parse().ok()).collect::<Option<_>>()?;
    // user nice system idle iowait irq softirq steal ...
    let busy: u64 = [0, 1, 2, 5, 6, 7].iter().filter_map(|&i| ticks.get(i)).sum();
    let iowait = *ticks.get(4)?;
    Some((busy as f64 / TICKS_PER_SEC, iowait as f64 / TICKS_PER_SEC))
}

/// CPU counters at one moment, to be subtracted from a later snapshot.
#[derive(Debug, Clone)]
pub struct CpuSnapshot {
    at: Instant,
    /// Each server process's (each node's).
    server: Vec<f64>,
    /// Summed over the server processes: the nodes run the same threads.
    server_threads: BTreeMap<String, f64>,
    server_threads_nice: BTreeMap<String, i32>,
    bench: f64,
    machine: (f64, f64),
}

/// CPU use over an interval, in cores (1.0 = one core busy all the time).
#[derive(Debug, Clone, Serialize)]
pub struct CpuUse {
    pub seconds: f64,
    /// All server processes together.
    pub server_cores: f64,
    /// Each node's share of `server_cores`, when there are several.
    #[serde(skip_serializing_if = "one_node")]
    pub server_cores_by_node: Vec<f64>,
    pub bench_cores: f64,
    /// The server's threads by name (tokio names its workers and blocking threads alike).
    pub server_threads_cores: BTreeMap<String, f64>,
    /// The nice value of the server's threads that do not run at 0, at the end of the interval
    /// (the storage writer's, which the server sets from `storage_writer_nice`).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub server_threads_nice: BTreeMap<String, i32>,
    /// Every process on the machine, the two above included.
    pub machine_busy_cores: f64,
    /// Cores' worth of time with nothing to run but I/O outstanding.
    pub machine_iowait_cores: f64,
}

fn one_node(cores: &[f64]) -> bool {
    cores.len() < 2
}

impl CpuSnapshot {
    pub fn take(server_pids: &[u32]) -> Self {
        Self::take_with(server_pids, &[])
    }

    /// As `take`, with the CPU time of the bench's own child processes (`helpers`, such as
    /// idle's holders) counted as the bench's.
    pub fn take_with(server_pids: &[u32], helpers: &[u32]) -> Self {
        let (mut server_threads, mut server_threads_nice) = (BTreeMap::new(), BTreeMap::new());
        for (cpu, nice) in server_pids.iter().map(|&pid| threads(pid)) {
            for (name, seconds) in cpu {
                *server_threads.entry(name).or_insert(0.0) += seconds;
            }
            for (name, value) in nice {
                keep_lowest(&mut server_threads_nice, name, value);
            }
        }
        Self {
            at: Instant::now(),
            server: server_pids.iter().map(|&pid| cpu_seconds(pid).unwrap_or(0.0)).collect(),
            server_threads,
            server_threads_nice,
            bench: std::iter::once(std::process::id())
                .chain(helpers.iter().copied())
                .map(|pid| cpu_seconds(pid).unwrap_or(0.0))
                .sum(),
            machine: machine_cpu_seconds().unwrap_or((0.0, 0.0)),
        }
    }

    pub fn since(&self, earlier: &CpuSnapshot) -> CpuUse {
        let seconds = self.at.duration_since(earlier.at).as_secs_f64().max(1e-9);
        let mut server_threads_cores: BTreeMap<String, f64> = self
            .server_threads
            .iter()
            .map(|(name, now)| {
                (name.clone(), (now - earlier.server_threads.get(name).copied().unwrap_or(0.0)) / seconds)
            })
            .filter(|(_, cores)| *cores >= 0.005)
            .collect();
        let server_cores_by_node: Vec<f64> =
            self.server.iter().zip(&earlier.server).map(|(now, then)| (now - then) / seconds).collect();
        let server_cores = server_cores_by_node.iter().sum::<f64>();
        // Short-lived threads (tokio's blocking pool) may have come and gone in between.
        let unaccounted = server_cores - server_threads_cores.values().sum::<f64>();
        if unaccounted >= 0.005 {
            server_threads_cores.insert("(ended threads)".to_owned(), unaccounted);
        }
        CpuUse {
            seconds,
            server_cores,
            server_cores_by_node,
            bench_cores: (self.bench - earlier.bench) / seconds,
            server_threads_cores,
            server_threads_nice: self.server_threads_nice.clone(),
            machine_busy_cores: (self.machine.0 - earlier.machine.0) / seconds,
            machine_iowait_cores: (self.machine.1 - earlier.machine.1) / seconds,
        }
    }
}

impl CpuUse {
    /// `server 1.31 cores (sqlite-writer 0.29 at nice -10, tokio-runtime-w 1.02), bench 0.62 cores, ...`; with
    /// several nodes, `server 1.31 cores = 0.66 + 0.65 (...)`.
    pub fn line(&self) -> String {
        let threads: Vec<String> = self
            .server_threads_cores
            .iter()
            .map(|(name, c)| match self.server_threads_nice.get(name) {
                Some(nice) => format!("{name} {c:.2} at nice {nice}"),
                None => format!("{name} {c:.2}"),
            })
            .collect();
        let by_node = if one_node(&self.server_cores_by_node) {
            String::new()
        } else {
            let nodes: Vec<String> = self.server_cores_by_node.iter().map(|c| format!("{c:.2}")).collect();
            format!(" = {}", nodes.join(" + "))
        };
        format!(
            "server {:.2} cores{by_node} ({}), bench {:.2} cores, whole machine {:.2} busy + {:.2} iowait, over {:.1} s",
            self.server_cores,
            threads.join(", "),
            self.bench_cores,
            self.machine_busy_cores,
            self.machine_iowait_cores,
            self.seconds
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_memory_in_bytes() {
        let text = "Name:\tpeyvand\nVmPeak:\t 900 kB\nVmHWM:\t    2048 kB\nVmRSS:\t    1024 kB\nThreads:\t9\n";
        assert_eq!(parse_status(text), Some(Memory { rss: 1024 * 1024, peak: 2048 * 1024 }));
        assert_eq!(parse_status("Name:\tx\n"), None);
    }

    #[test]
    fn stat_with_an_awkward_thread_name() {
        let line = "4242 (tokio (x) w) S 1 2 3 4 5 6 7 8 9 10 150 25 0 0 10 -10 9 0 100";
        assert_eq!(parse_stat(line), Some(Stat { name: "tokio (x) w".to_owned(), ticks: 175, nice: -10 }));
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn memory_of_several_processes() {
        // Two readings of this process: each is taken at its own moment (other tests allocate
        // meanwhile, and VmHWM may even drop after memory is given back), so only their
        // presence is certain, not how they compare with a third reading.
        let me = std::process::id();
        let two = memory_sum(&[me, me]).expect("own status");
        assert!(two.rss > 0 && two.peak > 0);
        assert_eq!(memory_sum(&[]).expect("nothing to read"), Memory::default());
        assert!(memory_sum(&[me, u32::MAX]).is_err(), "a process that does not exist is an error");
    }

    #[test]
    fn machine_cpu_from_proc_stat() {
        let text = "cpu  1000 10 200 5000 300 5 15 20 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\n";
        assert_eq!(parse_machine_cpu(text), Some((12.5, 3.0)));
    }

    #[test]
    fn open_files_limit_from_limits() {
        let text = "Limit                     Soft Limit           Hard Limit           Units     \n\
                    Max processes             unlimited            unlimited            processes \n\
                    Max open files            20000                20000                files     \n";
        assert_eq!(parse_open_files_limit(text), Some(20_000));
    }
}
