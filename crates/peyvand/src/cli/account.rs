//! `profile`, `pin`, `devices`, `account` and `settings`: my own account.

use anyhow::Result;
use peyvand_api::{Audience, ProfileUpdate, SettingsUpdate};

use super::args::{AccountCommand, AudienceArg, DevicesCommand, PinCommand, ProfileCommand, Setting, SettingsCommand};
use super::failure::usage;
use super::input;
use super::output::note;
use super::{Context, format};

pub async fn profile(cx: &Context, command: ProfileCommand) -> Result<()> {
    let client = cx.client()?;
    match command {
        ProfileCommand::Show { user: None } => cx.out.show(&client.me().await?, format::account),
        ProfileCommand::Show { user: Some(user) } => {
            let user_id = cx.user_id_for(&user).await?;
            cx.out.show(&client.user(user_id).await?, format::profile)
        }
        ProfileCommand::Set { name, username, bio } => {
            if name.is_none() && username.is_none() && bio.is_none() {
                return Err(usage("nothing to change: give --name, --username or --bio"));
            }
            // People type the @ out of habit; the username itself has none.
            let username = username.map(|u| u.trim_start_matches('@').to_owned());
            let update = ProfileUpdate { display_name: name, username, bio };
            cx.out.show(&client.update_profile(&update).await?, format::account)
        }
    }
}

pub async fn pin(cx: &Context, command: PinCommand) -> Result<()> {
    let client = cx.client()?;
    match command {
        PinCommand::Set { pin_file, change, current_file } => {
            let current =
                if change { Some(input::secret("the PIN in force:", current_file.as_deref())?) } else { None };
            let pin = input::secret("the new PIN:", pin_file.as_deref())?;
            client.set_pin(&pin, current.as_deref()).await?;
            cx.out.done("PIN set: signing in on a new device now asks for it")
        }
        PinCommand::Remove { current_file } => {
            let current = input::secret("the PIN in force:", current_file.as_deref())?;
            client.remove_pin(&current).await?;
            cx.out.done("PIN removed")
        }
    }
}

pub async fn devices(cx: &mut Context, action: Option<DevicesCommand>) -> Result<()> {
    let client = cx.client()?;
    match action {
        None => cx.out.show(&client.devices().await?, |list| format::devices(&list.devices)),
        Some(DevicesCommand::Revoke { id }) => {
            client.revoke_device(id).await?;
            if cx.session()?.device_id == id {
                cx.forget_session()?;
                note("that was this device: the saved session is gone");
            }
            cx.out.done(format_args!("device {id} signed out"))
        }
        Some(DevicesCommand::RevokeAll) => {
            client.revoke_all_devices().await?;
            cx.forget_session()?;
            cx.out.done("every device signed out, this one included")
        }
    }
}

pub async fn account(cx: &mut Context, command: AccountCommand) -> Result<()> {
    let AccountCommand::Delete { yes } = command;
    if !yes {
        return Err(usage("this deletes the account, its chats and its contacts for good: add --yes to do it"));
    }
    cx.client()?.delete_account().await?;
    cx.forget_session()?;
    cx.out.done("account deleted")
}

pub async fn settings(cx: &Context, action: Option<SettingsCommand>) -> Result<()> {
    let client = cx.client()?;
    let settings = match action {
        None => client.settings().await?,
        Some(SettingsCommand::Set { setting, audience }) => {
            let audience = audience_of(audience);
            let mut update = SettingsUpdate::default();
            let field = match setting {
                Setting::LastSeen => &mut update.last_seen,
                Setting::PhoneDiscovery => &mut update.phone_discovery,
                Setting::Messages => &mut update.messages,
                Setting::GroupInvites => &mut update.group_invites,
            };
            *field = Some(audience);
            client.update_settings(&update).await?
        }
        Some(SettingsCommand::Interconnect { audience }) => {
            let update = SettingsUpdate { interconnect: Some(audience_of(audience)), ..SettingsUpdate::default() };
            client.update_settings(&update).await?
        }
    };
    cx.out.show(&settings, format::settings)
}

fn audience_of(audience: AudienceArg) -> Audience {
    match audience {
        AudienceArg::Everybody => Audience::Everybody,
        AudienceArg::Contacts => Audience::Contacts,
        AudienceArg::Nobody => Audience::Nobody,
    }
}
