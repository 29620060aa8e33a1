//! Signing up many people at once: the first phase of every scenario, and a figure of its own
//! (sign-ups per second), since a launch or a migration brings people in bursts.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::StreamExt;
use peyvand_api::{CodeRequest, SignInRequest, SignedIn};
use serde::{Deserialize, Serialize};

use crate::progress::Progress;
use crate::server::Servers;

const CODE_WAIT: Duration = Duration::from_secs(30);
/// Nine digits after the +98 9 prefix, of which the bench fixes the first two (`12`).
const MAX_PEOPLE: usize = 10_000_000;

/// A signed-up person with one session.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Person {
    pub id: i64,
    pub token: String,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct SignUpStats {
    pub count: usize,
    pub concurrency: usize,
    pub seconds: f64,
    pub per_second: f64,
}

/// The `i`th bench phone number: an Iranian mobile number, `+98912` and seven digits.
pub fn phone(i: usize) -> String {
    format!("+98912{i:07}")
}

async fn check(response: reqwest::Response, what: &str) -> anyhow::Result<reqwest::Response> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let body = response.text().await.unwrap_or_default();
    bail!("{what} answered {status}: {body}")
}

/// Signs person `i` up through their node, which prints the code it sends into the codes
/// gathered from every node.
async fn sign_up_one(http: &reqwest::Client, servers: &Servers, i: usize) -> anyhow::Result<Person> {
    let phone = phone(i);
    let base_url = &servers.node_for(i).base_url;
    let response =
        http.post(format!("{base_url}/v1/auth/code")).json(&CodeRequest { phone: phone.clone() }).send().await?;
    check(response, "POST /v1/auth/code").await?;
    let code = servers.codes.take(&phone, CODE_WAIT).await?;
    let request = SignInRequest { phone, code, device_name: Some("peyvand-bench".into()), pin: None };
    let response = http.post(format!("{base_url}/v1/auth/sign-in")).json(&request).send().await?;
    let signed_in: SignedIn = check(response, "POST /v1/auth/sign-in").await?.json().await?;
    Ok(Person { id: signed_in.account.id, token: signed_in.token })
}

/// Signs up `count` new people, `concurrency` at a time, in phone-number order.
pub async fn sign_up(
    http: &reqwest::Client,
    servers: &Servers,
    count: usize,
    concurrency: usize,
) -> anyhow::Result<(Vec<Person>, SignUpStats)> {
    if count > MAX_PEOPLE {
        bail!("at most {MAX_PEOPLE} people fit the bench's phone-number range");
    }
    let concurrency = concurrency.max(1);
    let started = Instant::now();
    let mut progress = Progress::new("signed up", count);
    let mut people: Vec<Option<Person>> = vec![None; count];
    let mut results = futures_util::stream::iter(0..count)
        .map(|i| async move { (i, sign_up_one(http, servers, i).await) })
        .buffer_unordered(concurrency);
    while let Some((i, result)) = results.next().await {
        people[i] = Some(result.with_context(|| format!("signing up {}", phone(i)))?);
        progress.step();
    }
    let seconds = started.elapsed().as_secs_f64();
    let people = people.into_iter().collect::<Option<Vec<_>>>().context("a sign-up went missing")?;
    Ok((people, SignUpStats { count, concurrency, seconds, per_second: count as f64 / seconds.max(1e-9) }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phones_are_valid_iranian_mobiles() {
        assert_eq!(phone(0), "+989120000000");
        assert_eq!(phone(9_999_999), "+989129999999");
        assert_eq!(phone(42).len(), 13);
    }
}
