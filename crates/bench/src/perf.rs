//! Optional `perf` attached to the server for the measured phase: counters (CPU time, context
//! switches, fsync calls) and a sampled profile. `perf ... -p PID -- sleep S` stops by itself
//! after S seconds, so nothing needs to be signalled. With several nodes, `-p` lists them all
//! and the counts are their sums.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use tokio::process::{Child, Command};

/// Counted on the server: what it costs in CPU and scheduling, and how often it syncs to disk
/// (SQLite in WAL mode with synchronous=FULL syncs the WAL once per commit).
/// WAL frames and checkpointed pages are written with pwrite64, pages read with pread64.
const STAT_EVENTS: &str = "task-clock,context-switches,cpu-migrations,syscalls:sys_enter_fsync,\
                           syscalls:sys_enter_fdatasync,syscalls:sys_enter_pwrite64,syscalls:sys_enter_pread64";

/// A `perf` run in progress.
#[derive(Debug)]
pub struct PerfRun {
    child: Child,
    output: PathBuf,
}

fn spawn(mut command: Command, output: PathBuf) -> anyhow::Result<PerfRun> {
    command.stdin(std::process::Stdio::null()).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null());
    let child = command.spawn().context("cannot run perf (is it installed?)")?;
    Ok(PerfRun { child, output })
}

/// `perf`'s `-p` argument: the processes, separated by commas.
fn pid_list(pids: &[u32]) -> String {
    pids.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
}

/// Starts counting the servers' events for `span`.
pub fn stat(pids: &[u32], span: Duration, output: PathBuf) -> anyhow::Result<PerfRun> {
    let mut command = Command::new("perf");
    command
        .args(["stat", "-x", ",", "-e", STAT_EVENTS, "-o"])
        .arg(&output)
        .args(["-p", &pid_list(pids), "--", "sleep"])
        .arg(seconds(span));
    spawn(command, output)
}

/// Starts sampling the servers' stacks for `span`, into `output` for `perf report`.
pub fn record(pids: &[u32], span: Duration, output: PathBuf) -> anyhow::Result<PerfRun> {
    let mut command = Command::new("perf");
    command
        .args(["record", "-F", "999", "-g", "-o"])
        .arg(&output)
        .args(["-p", &pid_list(pids), "--", "sleep"])
        .arg(seconds(span));
    spawn(command, output)
}

fn seconds(span: Duration) -> String {
    format!("{:.3}", span.as_secs_f64())
}

impl PerfRun {
    /// Waits for perf to finish and returns where it wrote.
    pub async fn finish(mut self) -> anyhow::Result<PathBuf> {
        self.child.wait().await.context("perf did not finish")?;
        Ok(self.output)
    }
}

/// Reads `perf stat -x,` output: `value,unit,event,...` per line, comments start with `#`.
pub fn read_stat(path: &Path) -> anyhow::Result<BTreeMap<String, f64>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(parse_stat(&text))
}

fn parse_stat(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let fields: Vec<&str> = l.split(',').collect();
            let value: f64 = fields.first()?.trim().parse().ok()?;
            Some(((*fields.get(2)?).to_owned(), value))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn several_processes() {
        assert_eq!(pid_list(&[42]), "42");
        assert_eq!(pid_list(&[42, 43]), "42,43");
    }

    #[test]
    fn perf_stat_csv() {
        let text = "# started on Mon\n\n20012.57,msec,task-clock,20012571234,100.00,1.001,CPUs utilized\n\
                    51234,,context-switches,20012571234,100.00,2.560,K/sec\n\
                    <not supported>,,cpu-migrations,0,100.00,,\n\
                    0,,syscalls:sys_enter_fsync,20012571234,100.00,,\n\
                    4021,,syscalls:sys_enter_fdatasync,20012571234,100.00,,\n";
        let stat = parse_stat(text);
        assert_eq!(stat.get("task-clock"), Some(&20012.57));
        assert_eq!(stat.get("syscalls:sys_enter_fdatasync"), Some(&4021.0));
        assert!(!stat.contains_key("cpu-migrations"));
    }
}
