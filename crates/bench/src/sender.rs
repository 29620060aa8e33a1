//! The sending side of `messages`: the scheduler that fires every due send, never waiting for
//! earlier ones (open loop), and sends over a pool of HTTP/1.1 keep-alive connections.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use peyvand_api::{Content, SendMessage};
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use tokio::sync::Semaphore;

use crate::signup::Person;
use crate::tracker::{Tracker, client_id};

pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const TICK: Duration = Duration::from_millis(1);

/// Where each person's sends go: the chat with their partner, under their own session.
pub struct Route {
    /// Parsed once: parsing it again for every request is a visible cost at these rates.
    url: reqwest::Url,
    auth: HeaderValue,
}

/// Each person's route: person `u` writes in chat `chats[u / 2]`, shared with their partner,
/// through node `u % base_urls.len()`, the one they signed in on.
pub fn routes(base_urls: &[String], people: &[Person], chats: &[i64]) -> anyhow::Result<Vec<Arc<Route>>> {
    people
        .iter()
        .enumerate()
        .map(|(u, person)| {
            let auth = HeaderValue::from_str(&format!("Bearer {}", person.token))?;
            let base_url = &base_urls[u % base_urls.len()];
            let url = reqwest::Url::parse(&format!("{base_url}/v1/chats/{}/messages", chats[u / 2]))?;
            anyhow::Ok(Arc::new(Route { url, auth }))
        })
        .collect()
}

/// The sending pool: as many connections as sends in flight.
pub fn pool(in_flight: usize) -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .pool_max_idle_per_host(in_flight)
        .pool_idle_timeout(None)
        .tcp_nodelay(true)
        .timeout(REQUEST_TIMEOUT)
        .build()?)
}

/// Opens the sending pool's connections before the clock starts, so that the first second
/// does not measure TCP handshakes. Sends take turns over the nodes, so each node gets its
/// share of the `connections`.
pub async fn warm_pool(http: &reqwest::Client, base_urls: &[String], connections: usize) {
    let per_node = connections.div_ceil(base_urls.len().max(1));
    let urls: Vec<String> = base_urls.iter().map(|base_url| format!("{base_url}/healthz")).collect();
    futures_util::stream::iter(urls.iter().flat_map(|url| std::iter::repeat_n(url, per_node)))
        .for_each_concurrent(per_node * urls.len(), |url| async move {
            if let Ok(r) = http.get(url).send().await {
                let _ = r.bytes().await;
            }
        })
        .await;
}

async fn send_one(http: reqwest::Client, route: Arc<Route>, i: u64, tracker: Arc<Tracker>, slots: Arc<Semaphore>) {
    let Ok(_slot) = slots.acquire_owned().await else { return };
    let request = SendMessage {
        client_id: client_id(i),
        content: Some(Content::Text { text: format!("bench message {i}") }),
        reply_to: None,
        forward: None,
        media: None,
    };
    let body = match serde_json::to_vec(&request) {
        Ok(body) => body,
        Err(e) => return tracker.failed(format!("encode: {e}")),
    };
    let sent = http
        .post(route.url.clone())
        .header(AUTHORIZATION, route.auth.clone())
        .header(CONTENT_TYPE, "application/json")
        .body(body)
        .send()
        .await;
    let response = match sent {
        Ok(r) => r,
        Err(e) if e.is_timeout() => return tracker.failed("timeout".into()),
        Err(e) if e.is_connect() => return tracker.failed("connect".into()),
        Err(_) => return tracker.failed("transport".into()),
    };
    let status = response.status();
    // Reading the body to its end lets the connection go back to the pool.
    let read = response.bytes().await;
    match (status.as_u16(), read) {
        (201, Ok(_)) => tracker.acked(i, Instant::now()),
        (_, Err(_)) => tracker.failed("transport".into()),
        (code, Ok(_)) => tracker.failed(code.to_string()),
    }
}

/// Sends message `i` over HTTP: a task of its own, waiting for one of `slots`.
pub fn http_dispatch(
    http: reqwest::Client,
    routes: Vec<Arc<Route>>,
    tracker: Arc<Tracker>,
    in_flight: usize,
) -> impl FnMut(u64) {
    let slots = Arc::new(Semaphore::new(in_flight.max(1)));
    move |i| {
        let route = routes[(i % routes.len() as u64) as usize].clone();
        tokio::spawn(send_one(http.clone(), route, i, tracker.clone(), slots.clone()));
    }
}

/// Fires the whole schedule: every millisecond, `dispatch` gets every message now due, never
/// waiting for earlier ones. Returns the ticks on which the generator itself was more than 5 ms
/// behind, which is worth knowing when reading the tail latencies.
pub async fn fire(tracker: &Tracker, mut dispatch: impl FnMut(u64)) -> u64 {
    let schedule = tracker.schedule;
    let mut ticks = tokio::time::interval(TICK);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut next = 0u64;
    let mut late_ticks = 0u64;
    while next < schedule.total() {
        ticks.tick().await;
        let due = schedule.due_by(tracker.start.elapsed());
        if due - next > schedule.rate().div_ceil(1000) * 5 {
            late_ticks += 1;
        }
        while next < due {
            dispatch(next);
            next += 1;
        }
    }
    late_ticks
}
