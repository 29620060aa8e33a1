//! `login`, `logout` and `whoami`.

use anyhow::{Context as _, Result};
use peyvand_api::{ErrorCode, SignInRequest};
use peyvand_core::PhoneNumber;

use super::args::LoginArgs;
use super::output::note;
use super::session::Session;
use super::{Context, format, input};

/// How many times `login` asks for the code it sent (and for the PIN) before giving up.
const TRIES: usize = 3;

/// Asks for a code, reads it (and the PIN when the server wants one), and saves the session.
/// A mistyped code or PIN is asked for again, without a new code being sent.
pub async fn login(cx: &mut Context, args: LoginArgs) -> Result<()> {
    // Checked here so that a typo is reported without asking the server to send an SMS.
    let phone = PhoneNumber::parse(&args.phone).with_context(|| format!("{:?}", args.phone))?;
    // No code is sent when nothing could type it in.
    input::ensure_answerable()?;
    let client = &cx.client;
    let sent = client.request_code(phone.as_str()).await?;
    let device_name = args.device_name.or_else(default_device_name);
    let mut request = SignInRequest { phone: sent.phone.clone(), code: String::new(), device_name, pin: None };
    let mut code_prompt = format!("code sent to {}; enter it:", sent.phone);
    let mut code_tries = 0;
    let mut pin_tries = 0;
    let signed_in = loop {
        if request.code.is_empty() {
            code_tries += 1;
            let code = input::prompt_line(&code_prompt)?;
            request.code = code.chars().map(|c| peyvand_core::text::ascii_digit(c).unwrap_or(c)).collect();
        }
        match client.sign_in(&request).await {
            Ok(signed_in) => break signed_in,
            Err(e) if e.code() == Some(ErrorCode::InvalidCode) && code_tries < TRIES => {
                request.code.clear();
                code_prompt = format!("that code is not right; enter the code sent to {} again:", sent.phone);
            }
            Err(e) if e.code() == Some(ErrorCode::InvalidCode) => {
                return Err(anyhow::Error::new(e).context(format!(
                    "{TRIES} wrong codes: run `peyvand login {}` to have a new code sent",
                    sent.phone
                )));
            }
            Err(e) if e.code() == Some(ErrorCode::CodeExpired) => {
                return Err(anyhow::Error::new(e)
                    .context(format!("run `peyvand login {}` to have a new code sent", sent.phone)));
            }
            Err(e) if e.code() == Some(ErrorCode::PinRequired) && request.pin.is_none() => {
                pin_tries += 1;
                request.pin = Some(input::secret("this account has a PIN; enter it:", args.pin_file.as_deref())?);
            }
            // A PIN read from a file is not asked again: the file would give the same one.
            Err(e) if e.code() == Some(ErrorCode::InvalidPin) && pin_tries < TRIES && args.pin_file.is_none() => {
                pin_tries += 1;
                request.pin = Some(input::secret("that PIN is not right; enter it again:", None)?);
            }
            Err(e) => return Err(e.into()),
        }
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
