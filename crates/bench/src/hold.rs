//! Idle update streams held in child processes ("holders"): each WebSocket is an open file in
//! the process that holds it, and a process cannot hold more than its open-file limit allows
//! (20,000 on the machines of docs/BENCHMARKS.md, which cannot raise it). So `idle` runs this
//! executable again as `peyvand-bench hold`, as many times as the connections need, and talks to
//! each child over its standard input and output, one JSON object per line:
//!
//! - the parent asks `{"connect": {...}}` (people, their first connection number, the nodes);
//!   the holder opens those streams, keeps them open and answers `{"connected": {...}}`;
//! - the parent asks `"count"`; the holder answers `{"open": N}`, the streams still open.
//!
//! When the run is over the parent kills its holders, which drops their streams at once; a
//! holder whose parent died without that sees its standard input end, and exits.

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use crate::connect::{ConnectStats, connect_all};
use crate::procfs::{self, Memory};
use crate::signup::Person;
use crate::ws::Socket;

/// What the parent asks of a holder.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Ask {
    /// Open one stream per person; person `i` of the list is connection `first + i`.
    Connect { nodes: Vec<SocketAddr>, people: Vec<Person>, first: usize, concurrency: usize },
    /// How many of the holder's streams are still open.
    Count,
}

/// A holder's answer to one ask.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Answer {
    Connected(ConnectStats),
    Open(u64),
    Failed(String),
}

/// Counts the streams the server has closed while they were meant to stay open.
async fn hold_open(mut socket: Socket, closed: Arc<AtomicU64>) {
    // Reading also answers the server's pings.
    while let Some(Ok(_)) = socket.next().await {}
    closed.fetch_add(1, Ordering::Relaxed);
}

/// The holder's side: answers the parent's asks until its standard input ends.
pub async fn serve() -> anyhow::Result<()> {
    let mut asks = BufReader::new(tokio::io::stdin()).lines();
    let mut out = tokio::io::stdout();
    let closed = Arc::new(AtomicU64::new(0));
    let mut held = Vec::new();
    while let Some(line) = asks.next_line().await? {
        let answer = match serde_json::from_str::<Ask>(&line) {
            Ok(Ask::Connect { nodes, people, first, concurrency }) if !nodes.is_empty() => {
                let stats = connect_all(&nodes, &people, first, concurrency, |_, socket| {
                    held.push(tokio::spawn(hold_open(socket, closed.clone())));
                })
                .await;
                Answer::Connected(stats)
            }
            Ok(Ask::Connect { .. }) => Answer::Failed("no nodes to connect to".into()),
            Ok(Ask::Count) => Answer::Open(held.len() as u64 - closed.load(Ordering::Relaxed)),
            Err(e) => Answer::Failed(format!("not an ask: {e}")),
        };
        let mut line = serde_json::to_string(&answer)?;
        line.push('\n');
        out.write_all(line.as_bytes()).await?;
        out.flush().await?;
    }
    for task in held {
        task.abort();
    }
    Ok(())
}

/// One holder, seen from the parent.
struct Holder {
    child: Child,
    pid: u32,
    asks: ChildStdin,
    answers: Lines<BufReader<ChildStdout>>,
}

impl Holder {
    async fn ask(&mut self, ask: &Ask) -> anyhow::Result<Answer> {
        let mut line = serde_json::to_string(ask)?;
        line.push('\n');
        self.asks.write_all(line.as_bytes()).await.with_context(|| format!("holder {} went away", self.pid))?;
        self.asks.flush().await?;
        let Some(answer) = self.answers.next_line().await? else {
            let status = tokio::time::timeout(Duration::from_secs(1), self.child.wait()).await;
            bail!("holder {} ended without answering (exit status {status:?})", self.pid)
        };
        let answer: Answer =
            serde_json::from_str(&answer).with_context(|| format!("holder {} answered {answer:?}", self.pid))?;
        if let Answer::Failed(why) = answer {
            bail!("holder {} failed: {why}", self.pid);
        }
        Ok(answer)
    }
}

/// The holders of one run; they are killed, and their streams dropped, when this is dropped.
pub struct Holders {
    holders: Vec<Holder>,
}

impl Holders {
    /// How many holders `connections` streams need when each process may open `open_files`
    /// files, `spare` of which go to other things. (A run is split among the holders half by
    /// half, which may give one holder a stream more than an even share: `spare` covers it.)
    pub fn needed(connections: usize, open_files: u64, spare: u64) -> anyhow::Result<usize> {
        let per_holder = open_files.saturating_sub(spare);
        if per_holder == 0 {
            bail!("the open-file limit ({open_files}) leaves no room for connections");
        }
        Ok((connections as u64).div_ceil(per_holder).max(1) as usize)
    }

    /// Starts `count` holders: this executable again, as `peyvand-bench hold`.
    pub fn spawn(count: usize) -> anyhow::Result<Self> {
        let exe = std::env::current_exe().context("cannot find this executable to start holders")?;
        let mut holders = Vec::with_capacity(count);
        for _ in 0..count {
            let mut child = Command::new(&exe)
                .arg("hold")
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .kill_on_drop(true)
                .spawn()
                .with_context(|| format!("cannot start {} hold", exe.display()))?;
            let pid = child.id().context("a holder ended at once")?;
            let asks = child.stdin.take().context("a holder's standard input")?;
            let answers = BufReader::new(child.stdout.take().context("a holder's standard output")?).lines();
            holders.push(Holder { child, pid, asks, answers });
        }
        Ok(Self { holders })
    }

    pub fn len(&self) -> usize {
        self.holders.len()
    }

    pub fn pids(&self) -> Vec<u32> {
        self.holders.iter().map(|h| h.pid).collect()
    }

    /// The holders' memory, summed.
    pub fn memory(&self) -> anyhow::Result<Memory> {
        procfs::memory_sum(&self.pids())
    }

    /// Opens a stream for each of `people`, who are connections `first..`: each holder takes
    /// an equal run of them, and `concurrency` handshakes in all are shared among the holders.
    pub async fn connect(
        &mut self,
        nodes: &[SocketAddr],
        people: &[Person],
        first: usize,
        concurrency: usize,
    ) -> anyhow::Result<ConnectStats> {
        let share = people.len().div_ceil(self.holders.len()).max(1);
        let per_holder = (concurrency / people.len().div_ceil(share).max(1)).max(1);
        let asks = self.holders.iter_mut().zip(people.chunks(share).enumerate()).map(|(holder, (k, run))| {
            let ask = Ask::Connect {
                nodes: nodes.to_vec(),
                people: run.to_vec(),
                first: first + k * share,
                concurrency: per_holder,
            };
            async move { holder.ask(&ask).await }
        });
        let answers = futures_util::future::try_join_all(asks).await?;
        let mut total = ConnectStats::default();
        for answer in answers {
            let Answer::Connected(stats) = answer else { bail!("a holder answered a connect with {answer:?}") };
            total.merge_concurrent(&stats);
        }
        Ok(total)
    }

    /// The streams still open, over all holders.
    pub async fn open_streams(&mut self) -> anyhow::Result<u64> {
        let answers = futures_util::future::try_join_all(self.holders.iter_mut().map(|h| h.ask(&Ask::Count))).await?;
        answers
            .into_iter()
            .map(|answer| match answer {
                Answer::Open(n) => Ok(n),
                other => bail!("a holder answered a count with {other:?}"),
            })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enough_holders_for_the_open_file_limit() {
        assert_eq!(Holders::needed(19_000, 20_000, 200).expect("fits"), 1);
        assert_eq!(Holders::needed(19_800, 20_000, 200).expect("fits"), 1);
        assert_eq!(Holders::needed(19_801, 20_000, 200).expect("fits"), 2);
        assert_eq!(Holders::needed(100_000, 20_000, 200).expect("fits"), 6);
        assert_eq!(Holders::needed(0, 20_000, 200).expect("fits"), 1);
        assert!(Holders::needed(10, 200, 200).is_err());
    }

    #[test]
    fn asks_and_answers_survive_their_line() {
        let ask = Ask::Connect {
            nodes: vec!["127.0.0.1:8080".parse().expect("address")],
            people: vec![Person { id: 7, token: "t".into() }],
            first: 3,
            concurrency: 2,
        };
        let line = serde_json::to_string(&ask).expect("serialises");
        assert!(!line.contains('\n'));
        let Ask::Connect { people, first, .. } = serde_json::from_str(&line).expect("parses") else {
            panic!("not a connect: {line}")
        };
        assert_eq!((people[0].id, first), (7, 3));
        assert_eq!(serde_json::to_string(&Ask::Count).expect("serialises"), r#""count""#);
        let open: Answer = serde_json::from_str(r#"{"open":12}"#).expect("parses");
        assert!(matches!(open, Answer::Open(12)));
    }
}
