//! The server's own counters from `/metrics` (Prometheus text), to split a request's time
//! between the server and the generator and to check counts from the server's side.

use std::collections::BTreeMap;

use serde::Serialize;

/// Metric values by name (labels included, as in `name{label="x"}`).
#[derive(Debug, Clone, Default)]
pub struct Scrape {
    values: BTreeMap<String, f64>,
}

impl Scrape {
    /// An empty scrape when the server does not answer: these figures are extras.
    pub async fn take(http: &reqwest::Client, base_url: &str) -> Self {
        let text = async { http.get(format!("{base_url}/metrics")).send().await.ok()?.text().await.ok() }.await;
        text.map(|t| Self::parse(&t)).unwrap_or_default()
    }

    fn parse(text: &str) -> Self {
        let values = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let (name, value) = l.rsplit_once(' ')?;
                Some((name.to_owned(), value.trim().parse().ok()?))
            })
            .collect();
        Self { values }
    }

    pub fn get(&self, name: &str) -> Option<f64> {
        self.values.get(name).copied()
    }

    fn delta(&self, earlier: &Scrape, name: &str) -> f64 {
        self.get(name).unwrap_or(0.0) - earlier.get(name).unwrap_or(0.0)
    }
}

/// What the server counted between two scrapes.
#[derive(Debug, Clone, Serialize)]
pub struct ServerSide {
    pub requests: f64,
    /// Mean time from the server reading a request to its response, across all requests.
    pub mean_request_ms: f64,
    pub messages_stored: f64,
    pub frames_sent: f64,
}

impl ServerSide {
    pub fn between(earlier: &Scrape, later: &Scrape) -> Self {
        let requests = later.delta(earlier, "peyvand_http_request_duration_seconds_count");
        let seconds = later.delta(earlier, "peyvand_http_request_duration_seconds_sum");
        Self {
            requests,
            mean_request_ms: if requests > 0.0 { seconds * 1000.0 / requests } else { 0.0 },
            messages_stored: later.delta(earlier, "peyvand_messages_sent_total"),
            frames_sent: later.delta(earlier, "peyvand_websocket_frames_sent_total"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_text_and_deltas() {
        let before = Scrape::parse(
            "# HELP x\npeyvand_http_request_duration_seconds_sum 1.5\npeyvand_http_request_duration_seconds_count 10\n\
             peyvand_http_responses_total{class=\"2xx\"} 10\n",
        );
        let after = Scrape::parse(
            "peyvand_http_request_duration_seconds_sum 3.5\npeyvand_http_request_duration_seconds_count 110\n\
             peyvand_messages_sent_total 100\npeyvand_http_responses_total{class=\"2xx\"} 110\n",
        );
        assert_eq!(after.get("peyvand_http_responses_total{class=\"2xx\"}"), Some(110.0));
        let side = ServerSide::between(&before, &after);
        assert_eq!(side.requests, 100.0);
        assert!((side.mean_request_ms - 20.0).abs() < 1e-9);
        assert_eq!(side.messages_stored, 100.0);
    }
}
