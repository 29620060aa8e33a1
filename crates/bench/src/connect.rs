//! Opening many update streams at once, each from its own loopback source address and port.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde::Serialize;

use crate::progress::Progress;
use crate::signup::Person;
use crate::ws::{self, Socket};

const READY_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Serialize)]
pub struct ConnectStats {
    pub attempted: usize,
    pub connected: usize,
    pub concurrency: usize,
    pub seconds: f64,
    pub per_second: f64,
    /// Failures by their first line of error text.
    pub failures: BTreeMap<String, u64>,
}

/// Opens one stream per person and waits for each to be live; `None` where that failed.
/// `first` numbers the connections across several calls, which picks their source ports and
/// their node: connection `n` goes to `nodes[n % nodes.len()]`, the node its person uses.
pub async fn connect_all(
    nodes: &[SocketAddr],
    people: &[Person],
    first: usize,
    concurrency: usize,
) -> (Vec<Option<Socket>>, ConnectStats) {
    let count = people.len();
    let concurrency = concurrency.max(1);
    let started = Instant::now();
    let mut progress = Progress::new("connected", count);
    let mut sockets: Vec<Option<Socket>> = (0..count).map(|_| None).collect();
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
            Ok(socket) => sockets[i] = Some(socket),
            Err(e) => *failures.entry(format!("{e:#}")).or_insert(0) += 1,
        }
        progress.step();
    }
    let seconds = started.elapsed().as_secs_f64();
    let connected = sockets.iter().filter(|s| s.is_some()).count();
    let stats = ConnectStats {
        attempted: count,
        connected,
        concurrency,
        seconds,
        per_second: connected as f64 / seconds.max(1e-9),
        failures,
    };
    (sockets, stats)
}
