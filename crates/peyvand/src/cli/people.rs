//! `contacts`, `block`, `unblock` and `blocks`.

use std::fmt::Write as _;
use std::io::Read;
use std::path::Path;

use anyhow::{Context as _, Result, bail};
use peyvand_api::ContactsImported;

use super::args::ContactsCommand;
use super::{Context, format};

pub async fn lookup(cx: &Context, phone: &str) -> Result<()> {
    let found = cx.client()?.lookup(phone).await?;
    cx.out.show(&found, format::reachable)
}

pub async fn contacts(cx: &Context, action: Option<ContactsCommand>) -> Result<()> {
    let client = cx.client()?;
    match action {
        None => cx.out.show(&client.contacts().await?, |list| format::users(&list.users, "no contacts")),
        Some(ContactsCommand::Import { mut phones, file }) => {
            if let Some(file) = file {
                phones.extend(read_phone_list(&file)?);
            }
            if phones.is_empty() {
                bail!("no phone numbers to import: give some, or --file");
            }
            cx.out.show(&client.import_contacts(phones).await?, imported)
        }
        Some(ContactsCommand::Remove { user }) => {
            let user_id = cx.user_id_for(&user).await?;
            client.remove_contact(user_id).await?;
            cx.out.done(format_args!("user:{user_id} removed from contacts"))
        }
    }
}

pub async fn block(cx: &Context, user: &str, block: bool) -> Result<()> {
    let client = cx.client()?;
    let user_id = cx.user_id_for(user).await?;
    if block {
        client.block(user_id).await?;
        cx.out.done(format_args!("user:{user_id} blocked"))
    } else {
        client.unblock(user_id).await?;
        cx.out.done(format_args!("user:{user_id} unblocked"))
    }
}

pub async fn report(cx: &Context, user: &str, reason: &str) -> Result<()> {
    let user_id = cx.user_id_for(user).await?;
    cx.client()?.report(user_id, reason).await?;
    cx.out.done(format_args!("user:{user_id} reported"))
}

pub async fn blocks(cx: &Context) -> Result<()> {
    let list = cx.client()?.blocks().await?;
    cx.out.show(&list, |list| format::users(&list.users, "nobody is blocked"))
}

/// One number per line; blank lines and `#` comments are skipped. `-` is standard input.
fn read_phone_list(path: &Path) -> Result<Vec<String>> {
    let text = if path == Path::new("-") {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text).context("reading standard input")?;
        text
    } else {
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?
    };
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(str::to_owned)
        .collect())
}

fn imported(result: &ContactsImported) -> String {
    let mut out = String::new();
    for contact in &result.contacts {
        let who = match (&contact.phone, &contact.user) {
            (None, _) => "not a valid phone number".to_owned(),
            (Some(phone), None) => format!("{phone}  not found"),
            (Some(phone), Some(user)) => format!("{phone}  user:{}  {}", user.id, format::user_label(user)),
        };
        let _ = writeln!(out, "{}  →  {who}", contact.input);
    }
    out.trim_end().to_owned()
}
