//! The writer thread's scheduling priority.
//!
//! Every write of the embedded store passes through its one writer thread, so under load that
//! thread is what the whole server's throughput waits for. When the machine's cores are busy
//! (the request threads, a load generator on the same box, other programs), the kernel gives
//! each runnable thread its fair share, and the writer spends part of its time runnable but
//! not running while the jobs it would commit pile up. A lower nice value gives it a larger
//! share. Raising a thread's priority needs `CAP_SYS_NICE` (or a matching `RLIMIT_NICE`, say
//! systemd's `LimitNICE=`); without it the writer keeps the priority it was started with.

/// Gives the calling thread the nice value `nice` (-20 to 19; 0 changes nothing) and returns
/// the value it then has, read back from the kernel; an error says why it could not be set.
#[cfg(target_os = "linux")]
pub(super) fn set_current_thread_nice(nice: i32) -> Result<i32, String> {
    use rustix::process::{getpriority_process, setpriority_process};
    // On Linux a thread id given as PRIO_PROCESS names that one thread, not its process.
    let thread = rustix::thread::gettid();
    if nice != 0 {
        setpriority_process(Some(thread), nice).map_err(|e| match e {
            rustix::io::Errno::ACCESS | rustix::io::Errno::PERM => {
                format!("nice {nice} needs CAP_SYS_NICE or RLIMIT_NICE ({e})")
            }
            e => format!("cannot set nice {nice}: {e}"),
        })?;
    }
    getpriority_process(Some(thread)).map_err(|e| format!("cannot read the thread's priority: {e}"))
}

#[cfg(not(target_os = "linux"))]
pub(super) fn set_current_thread_nice(_nice: i32) -> Result<i32, String> {
    Err("the writer's priority is set on Linux only".into())
}
