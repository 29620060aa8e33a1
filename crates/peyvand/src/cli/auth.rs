//! `login`, `logout` and `whoami`.

use anyhow::{Context as _, Result};
use peyvand_api::{ErrorCode, SignInRequest};
use peyvand_core::PhoneNumber;

use super::args::LoginArgs;
use super::output::note;
use super::session::Session;
use super::{Context, format, prompt_line};

/// Asks for a code, reads it (and the PIN when the server wants one) from standard input, and
/// saves the session.
pub async fn login(cx: &mut Context, args: LoginArgs) -> Result<()> {
    // Checked here so that a typo is reported without asking the server to send an SMS.
    let phone = PhoneNumber::parse(&args.phone).with_context(|| format!("{:?}", args.phone))?;
    let client = &cx.client;
    let sent = client.request_code(phone.as_str()).await?;
    let code = prompt_line(&format!("code sent to {}; enter it:", sent.phone))?;
    let code: String = code.chars().map(|c| peyvand_core::text::ascii_digit(c).unwrap_or(c)).collect();
    let device_name = args.device_name.or_else(default_device_name);
    let mut request = SignInRequest { phone: sent.phone.clone(), code, device_name, pin: args.pin.clone() };
    let signed_in = match client.sign_in(&request).await {
        Err(e) if e.code() == Some(ErrorCode::PinRequired) && args.pin.is_none() => {
            request.pin = Some(prompt_line("this account has a PIN; enter it:")?);
            client.sign_in(&request).await?
        }
        other => other?,
    };
    let session = Session {
        server: cx.server().to_owned(),
        token: signed_in.token,
        device_id: signed_in.device_id,
        user_id: signed_in.account.id,
        phone: signed_in.account.phone.clone(),
        cursor: 0,
    };
    cx.store.save(&session)?;
    note(format_args!("session saved in {}", cx.store.path().display()));
    let account = signed_in.account;
    let greeting = if signed_in.new_account { "welcome to Peyvand" } else { "signed in" };
    cx.out.show(&account, |a| format!("{greeting}\n{}", format::account(a)))
}

/// Signs this device out. A session the server no longer knows is forgotten all the same.
pub async fn logout(cx: &mut Context) -> Result<()> {
    match cx.client()?.sign_out().await {
        Ok(()) => {}
        Err(e) if e.code() == Some(ErrorCode::Unauthorized) => note("the server had already ended this session"),
        Err(e) => return Err(e.into()),
    }
    cx.forget_session()?;
    cx.out.done("signed out")
}

pub async fn whoami(cx: &Context) -> Result<()> {
    let session = cx.session()?;
    let account = cx.client()?.me().await?;
    let server = cx.server();
    let device = session.device_id;
    cx.out.show(&account, |a| format!("{}\non {server} as device {device}", format::account(a)))
}

/// The machine's name, so that the device list says where each session is.
fn default_device_name() -> Option<String> {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty());
    Some(match host {
        Some(host) => format!("peyvand CLI on {host}"),
        None => "peyvand CLI".to_owned(),
    })
}
