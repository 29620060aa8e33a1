//! Opening many update streams at once, each from its own loopback source address and port.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

use crate::progress::Progress;
use crate::signup::Person;
use crate::ws::{self, Socket};

const READY_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ConnectStats {
    pub attempted: usize,
    pub connected: usize,
    pub concurrency: usize,
    pub seconds: f64,
    pub per_second: f64,
    /// Failures by their first line of error text.
    pub failures: BTreeMap<String, u64>,
}

impl ConnectStats {
    /// Adds `other`, which ran at the same time (another holder's share of the same phase):
    /// the phase took as long as its slowest part.
    pub fn merge_concurrent(&mut self, other: &ConnectStats) {
        self.attempted += other.attempted;
        self.connected += other.connected;
        self.concurrency += other.concurrency;
        self.seconds = self.seconds.max(other.seconds);
        self.per_second = self.connected as f64 / self.seconds.max(1e-9);
        for (why, n) in &other.failures {
            *self.failures.entry(why.clone()).or_insert(0) += n;
        }
    }
}

/// Opens one stream per person and waits for each to be live, handing each to `ready` (with
/// its index in `people`) as soon as it is: a stream left unread while the rest connect would
/// not answer the server's pings, and the server closes a stream that stays silent for two
/// ping intervals.
/// `first` numbers the connections across several calls, which picks their source ports and
/// their node: connection `n` goes to `nodes[n % nodes.len()]`, the node its person uses.
pub async fn connect_all(
    nodes: &[SocketAddr],
    people: &[Person],
    first: usize,
    concurrency: usize,
    mut ready: impl FnMut(usize, Socket),
) -> ConnectStats {
    let count = people.len();
    let concurrency = concurrency.max(1);
    let started = Instant::now();
    let mut progress = Progress::new("connected", count);
    let mut connected = 0;
    let mut failures: BTreeMap<String, u64> = BTreeMap::new();
    let mut results = futures_util::stream::iter(people.iter().enumerate())
        .map(|(i, person)| async move {
            let result = async {
                let n = first + i;
                let mut socket = ws::connect(nodes[n % nodes.len()], ws::source(n), &person.token).await?;
                ws::wait_ready(&mut socket, READY_TIMEOUT).await?;
                anyhow::Ok(socket)
            };
            (i, result.await)
        })
        .buffer_unordered(concurrency);
    while let Some((i, result)) = results.next().await {
        match result {
            Ok(socket) => {
                connected += 1;
                ready(i, socket);
            }
            Err(e) => *failures.entry(format!("{e:#}")).or_insert(0) += 1,
        }
        progress.step();
    }
    let seconds = started.elapsed().as_secs_f64();
    ConnectStats {
        attempted: count,
        connected,
        concurrency,
        seconds,
        per_second: connected as f64 / seconds.max(1e-9),
        failures,
    }
}
