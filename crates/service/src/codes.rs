//! Delivering sign-in codes: to the console (development, the demo) or an SMS gateway.

use std::io::Write;

use async_trait::async_trait;
use peyvand_core::PhoneNumber;

/// Sends a sign-in code to a phone number.
#[async_trait]
pub trait CodeSender: Send + Sync + std::fmt::Debug {
    async fn send(&self, phone: &PhoneNumber, code: &str) -> Result<(), String>;
}

/// Writes `OTP <e164> <code>` to standard output, followed by the messenger's provider id when
/// it has one (`OTP <e164> <code> <provider-id>`: in the demo several messengers share one
/// output): the default when no gateway is configured.
#[derive(Debug, Default)]
pub struct ConsoleCodeSender {
    messenger: Option<String>,
}

impl ConsoleCodeSender {
    /// A sender whose lines name the messenger.
    pub fn for_messenger(provider_id: impl Into<String>) -> Self {
        Self { messenger: Some(provider_id.into()) }
    }

    fn line(&self, phone: &PhoneNumber, code: &str) -> String {
        match &self.messenger {
            Some(messenger) => format!("OTP {phone} {code} {messenger}"),
            None => format!("OTP {phone} {code}"),
        }
    }
}

#[async_trait]
impl CodeSender for ConsoleCodeSender {
    async fn send(&self, phone: &PhoneNumber, code: &str) -> Result<(), String> {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{}", self.line(phone, code)).and_then(|()| out.flush()).map_err(|e| e.to_string())
    }
}

/// Posts `{"to": "<e164>", "code": "<code>", "text": "<message>"}` to an SMS gateway.
#[derive(Debug)]
pub struct HttpCodeSender {
    url: String,
    client: reqwest::Client,
}

impl HttpCodeSender {
    pub fn new(url: String) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(10))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Self { url, client })
    }
}

#[async_trait]
impl CodeSender for HttpCodeSender {
    async fn send(&self, phone: &PhoneNumber, code: &str) -> Result<(), String> {
        let body = serde_json::json!({
            "to": phone.as_str(),
            "code": code,
            "text": format!("کد ورود پیوند: {code}\nPeyvand code: {code}"),
        });
        let response = self.client.post(&self.url).json(&body).send().await.map_err(|e| e.to_string())?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(format!("the SMS gateway answered {}", response.status()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn console_lines_name_the_messenger_when_there_is_one() {
        let phone = PhoneNumber::parse("09121234567").expect("phone");
        assert_eq!(ConsoleCodeSender::default().line(&phone, "12345"), "OTP +989121234567 12345");
        let named = ConsoleCodeSender::for_messenger("alborz");
        assert_eq!(named.line(&phone, "12345"), "OTP +989121234567 12345 alborz");
    }
}
