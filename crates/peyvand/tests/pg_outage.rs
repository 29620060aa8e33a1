//! PostgreSQL restarted under traffic: sends fail cleanly (`unavailable`) while it is down,
//! the node recovers by itself when it is back, and nothing acknowledged is lost or doubled.
//!
//! This stops and starts the machine's PostgreSQL, so it lives in a test binary of its own
//! (cargo runs test binaries one after another).

mod common;

use std::collections::{BTreeMap, HashSet};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::cluster::Cluster;
use common::{person, text};
use peyvand_api::{ErrorCode, HistoryQuery};

/// Runs `pg_ctlcluster` on the machine's PostgreSQL cluster.
fn pg_ctl(action: &str) {
    let version = std::fs::read_dir("/etc/postgresql")
        .expect("a Debian PostgreSQL installation")
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .max()
        .expect("a PostgreSQL version");
    let mut args = vec!["--skip-systemctl-redirect", version.as_str(), "main", action];
    if action == "stop" {
        args.extend(["-m", "fast"]);
    }
    let out = Command::new("pg_ctlcluster").args(&args).output().expect("pg_ctlcluster");
    assert!(out.status.success(), "pg_ctlcluster {action}: {}", String::from_utf8_lossy(&out.stderr));
}

/// Starts PostgreSQL again however the test ends.
struct StartOnDrop;

impl Drop for StartOnDrop {
    fn drop(&mut self) {
        let _ = Command::new("pg_ctlcluster")
            .args(["--skip-systemctl-redirect"])
            .args(std::fs::read_dir("/etc/postgresql").into_iter().flatten().flatten().map(|e| e.file_name()))
            .args(["main", "start"])
            .output();
    }
}

async fn ready_status(url: &str) -> u16 {
    match reqwest::get(format!("{url}/readyz")).await {
        Ok(r) => r.status().as_u16(),
        Err(_) => 0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restarted_under_traffic_loses_nothing_acknowledged() {
    // Sends go as fast as the node takes them: lift the per-account rate limit.
    let cluster = Cluster::start("pgrestart", 1, &[("PEYVAND_SERVICE__LIMITS__MESSAGES_PER_MINUTE", "100000000")]);
    let node = &cluster.nodes[0];
    let ali = person(node, "+989121600001").await;
    let sara = person(node, "+989121600002").await;
    let chat = ali.client.open_direct(sara.id).await.expect("open");

    // Ali sends without pause; a failed send is retried with the same client id until it is
    // acknowledged, as a real client does.
    let acked: Arc<Mutex<BTreeMap<String, i64>>> = Arc::default();
    let failures: Arc<Mutex<Vec<Option<ErrorCode>>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let sender = {
        let (client, acked, failures, stop) = (ali.client.clone(), acked.clone(), failures.clone(), stop.clone());
        tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let id = format!("o{i}");
                loop {
                    match client.send(chat.id, &text(&id, &format!("پیام {i}"))).await {
                        Ok(sent) => {
                            acked.lock().expect("lock").insert(id.clone(), sent.message.seq);
                            break;
                        }
                        Err(e) => {
                            failures.lock().expect("lock").push(e.code());
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                }
                i += 1;
            }
        })
    };
    let count = || acked.lock().expect("lock").len();
    common::eventually("traffic flows", || async { count() >= 20 }).await;

    let _restart_anyway = StartOnDrop;
    pg_ctl("stop");
    common::eventually("sends fail while PostgreSQL is down", || async { !failures.lock().expect("lock").is_empty() })
        .await;
    assert_eq!(ready_status(&node.url).await, 503, "not ready without its storage");
    let health = reqwest::get(format!("{}/healthz", node.url)).await.expect("healthz");
    assert_eq!(health.status(), 200, "alive all the same");
    let before_restart = count();

    pg_ctl("start");
    common::eventually("sends succeed again", || async { count() >= before_restart + 20 }).await;
    common::eventually("ready again", || async { ready_status(&node.url).await == 200 }).await;
    stop.store(true, Ordering::Relaxed);
    sender.await.expect("sender");

    let failures = failures.lock().expect("lock").clone();
    let unclean: Vec<_> = failures.iter().filter(|code| **code != Some(ErrorCode::Unavailable)).collect();
    assert!(unclean.is_empty(), "every failure is a clean `unavailable`, of {} not: {unclean:?}", failures.len());
    let acked = acked.lock().expect("lock").clone();
    let mut stored: Vec<(String, i64)> = Vec::new();
    let mut after = 0;
    loop {
        let page = sara
            .client
            .history(chat.id, &HistoryQuery { after: Some(after), limit: Some(200), ..Default::default() })
            .await
            .expect("history")
            .messages;
        let Some(last) = page.last() else { break };
        after = last.seq;
        stored.extend(page.into_iter().map(|m| (m.client_id.clone(), m.seq)));
    }
    let ids: HashSet<&String> = stored.iter().map(|(id, _)| id).collect();
    assert_eq!(ids.len(), stored.len(), "no message stored twice");
    for (id, seq) in &acked {
        assert!(stored.contains(&(id.clone(), *seq)), "acknowledged {id} (seq {seq}) is stored");
    }
}
