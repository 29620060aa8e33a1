//! The server's own counters from `/metrics` (Prometheus text), to split a request's time
//! between the server and the generator and to check counts from the server's side.

use std::collections::BTreeMap;

use serde::Serialize;

/// Metric values by name (labels included, as in `name{label="x"}`).
#[derive(Debug, Clone, Default)]
pub struct Scrape {
    values: BTreeMap<String, f64>,
}

/// The bearer token the bench gives the servers it starts for their `/metrics`
/// (`[metrics] token_file`): random, made once per run.
pub fn token() -> &'static str {
    static TOKEN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    TOKEN.get_or_init(|| {
        use std::io::Read;
        let mut bytes = [0u8; 16];
        let random = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes));
        if random.is_err() {
            // No /dev/urandom: the time will do for a token on loopback, for one run.
            let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
            bytes = nanos.as_nanos().to_le_bytes();
        }
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    })
}

/// Writes [`token`] to `path`, readable by its owner only, as the server requires.
pub fn write_token_file(path: &std::path::Path) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
    file.write_all(token().as_bytes())
}

impl Scrape {
    /// An empty scrape when the server does not answer: these figures are extras.
    pub async fn take(http: &reqwest::Client, base_url: &str) -> Self {
        let text =
            async { http.get(format!("{base_url}/metrics")).bearer_auth(token()).send().await.ok()?.text().await.ok() }
                .await;
        text.map(|t| Self::parse(&t)).unwrap_or_default()
    }

    /// Every node's scrape, in the nodes' order.
    pub async fn take_all(http: &reqwest::Client, base_urls: &[String]) -> Vec<Self> {
        futures_util::future::join_all(base_urls.iter().map(|base_url| Self::take(http, base_url))).await
    }

    /// The nodes' values added up. Every figure the bench reads is a counter, a histogram's sum
    /// or count, or a gauge of what one node holds (open streams), so the cluster's figure is
    /// the sum of the nodes'.
    pub fn total(scrapes: &[Self]) -> Self {
        let mut values = BTreeMap::new();
        for (name, value) in scrapes.iter().flat_map(|s| &s.values) {
            *values.entry(name.clone()).or_insert(0.0) += value;
        }
        Self { values }
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
    /// Each node's figures, for scrapes of the same nodes in the same order.
    pub fn by_node(earlier: &[Scrape], later: &[Scrape]) -> Vec<Self> {
        earlier.iter().zip(later).map(|(earlier, later)| Self::between(earlier, later)).collect()
    }

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

    #[test]
    fn nodes_add_up() {
        let one = Scrape::parse("peyvand_websockets_open 3\npeyvand_messages_sent_total 10\n");
        let two = Scrape::parse("peyvand_websockets_open 4\n");
        let total = Scrape::total(&[one, two]);
        assert_eq!(total.get("peyvand_websockets_open"), Some(7.0));
        assert_eq!(total.get("peyvand_messages_sent_total"), Some(10.0));
        assert_eq!(total.get("peyvand_nothing"), None);
    }
}
