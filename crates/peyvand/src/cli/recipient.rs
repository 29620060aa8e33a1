//! Naming a chat or a person on the command line: a phone number, `@username`, an id, or an
//! address on another messenger (`PHONE@PROVIDER-ID`).

use anyhow::Result;
use peyvand_api::Chat;
use peyvand_core::PhoneNumber;

use super::Context;
use super::failure::usage;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `chat:12` or `user:12`, as `chats` and `history` print them. A bare number is never an
    /// id: it is a phone number or an error.
    Id(i64),
    /// `@username`, kept with its `@` as the resolve endpoint wants it.
    Username(String),
    Phone(PhoneNumber),
    /// `PHONE@PROVIDER-ID`: a person on another messenger (or this one).
    Address(String),
}

/// Reads a recipient; `prefix` is `chat` or `user`, the kind of id it may name.
pub fn parse(input: &str, prefix: &str) -> Result<Target> {
    let input = input.trim();
    if let Some(id) = input.strip_prefix(prefix).and_then(|rest| rest.strip_prefix(':')) {
        return match digits(id) {
            Some(id) => Ok(Target::Id(id)),
            None => Err(usage(format!("{input:?} is not a {prefix} id: write {prefix}:123"))),
        };
    }
    if let Some((phone, provider)) = input.rsplit_once('@')
        && !phone.is_empty()
    {
        let phone = PhoneNumber::parse(phone).map_err(|e| usage(format!("{input:?}: {e}")))?;
        if provider.is_empty() {
            return Err(usage(format!("{input:?}: the messenger's id after @ is missing")));
        }
        return Ok(Target::Address(format!("{}@{provider}", phone.as_str())));
    }
    if let Some(name) = input.strip_prefix('@') {
        if name.is_empty() {
            return Err(usage("the username after @ is missing"));
        }
        return Ok(Target::Username(input.to_owned()));
    }
    match PhoneNumber::parse(input) {
        Ok(phone) => Ok(Target::Phone(phone)),
        Err(_) if digits(input).is_some() => Err(usage(format!(
            "{input:?} is not a phone number; a {prefix} is written {prefix}:{input}, as `{}` prints it",
            if prefix == "chat" { "chats" } else { "contacts" }
        ))),
        Err(e) => {
            Err(usage(format!("{input:?} is not a phone number, @username, PHONE@MESSENGER or {prefix}:ID ({e})")))
        }
    }
}

/// A number written only with digits of any script.
fn digits(input: &str) -> Option<i64> {
    let ascii: Option<String> = input.chars().map(peyvand_core::text::ascii_digit).collect();
    ascii.filter(|a| !a.is_empty()).and_then(|a| a.parse().ok())
}

impl Context {
    /// The chat a recipient names, opening the direct chat with a person if needed.
    pub async fn chat_for(&self, recipient: &str) -> Result<Chat> {
        let target = parse(recipient, "chat")?;
        let client = self.client()?;
        let chat = match target {
            Target::Id(chat_id) => client.chat(chat_id).await?,
            Target::Username(query) => client.open_direct(client.resolve(&query).await?.id).await?,
            Target::Phone(phone) => client.open_direct(client.resolve(phone.as_str()).await?.id).await?,
            Target::Address(address) => client.open_address(&address).await?,
        };
        Ok(chat)
    }

    /// The id of the person a recipient names.
    pub async fn user_id_for(&self, user: &str) -> Result<i64> {
        let client = self.client()?;
        Ok(match parse(user, "user")? {
            Target::Id(user_id) => user_id,
            Target::Username(query) => client.resolve(&query).await?.id,
            Target::Phone(phone) => client.resolve(phone.as_str()).await?.id,
            Target::Address(address) => client
                .open_address(&address)
                .await?
                .peer
                .map(|p| p.id)
                .ok_or_else(|| anyhow::anyhow!("{address}: the chat names no person"))?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_every_kind_of_recipient() {
        assert_eq!(parse("chat:12", "chat").ok(), Some(Target::Id(12)));
        assert_eq!(parse("chat:۱۲۳", "chat").ok(), Some(Target::Id(123)));
        // A bare short number is neither a phone number nor an id: an error that says so.
        let short = parse("1234", "chat").expect_err("not a recipient").to_string();
        assert!(short.contains("chat:1234"), "{short}");
        assert!(parse("۱۲۳", "chat").is_err());
        assert_eq!(parse("user:5", "user").ok(), Some(Target::Id(5)));
        assert_eq!(parse("@ali", "chat").ok(), Some(Target::Username("@ali".into())));
        let phone = parse("۰۹۱۲۱۲۳۴۵۶۷", "chat").ok();
        assert_eq!(phone, PhoneNumber::parse("+989121234567").ok().map(Target::Phone));
        assert!(parse("chat:x", "chat").is_err());
        assert!(parse("@", "chat").is_err());
        assert!(parse("hello", "chat").is_err());
        let address = parse("09121234567@damavand", "chat").ok();
        assert_eq!(address, Some(Target::Address("+989121234567@damavand".into())));
        assert!(parse("0912@damavand", "chat").is_err());
        assert!(parse("09121234567@", "chat").is_err());
    }
}
