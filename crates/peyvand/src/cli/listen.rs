//! `listen`: prints updates as they come, across disconnects, until stopped.

use anyhow::Result;
use peyvand_api::{Event, Update};
use peyvand_client::{Client, FollowEvent};

use super::Context;
use super::format::{self, Names};
use super::output::note;

pub async fn listen(cx: &Context, after: Option<i64>) -> Result<()> {
    let session = cx.session()?.clone();
    let client = cx.client()?;
    let start = after.unwrap_or(session.cursor);
    let mut names = Names::new(session.user_id);
    let mut follower = client.follow_updates(start);
    note(format_args!("listening on {} after cursor {start}", cx.server()));
    // Said once when the connection is lost, not at every attempt to get it back.
    let mut lost = false;
    loop {
        let before = follower.cursor();
        let event = tokio::select! {
            event = follower.next() => event?,
            () = stop_requested() => return Ok(()),
        };
        match event {
            FollowEvent::Connected { cursor } => {
                let again = if std::mem::take(&mut lost) { " again" } else { "" };
                note(format_args!("connected{again} (server at cursor {cursor})"));
            }
            FollowEvent::Disconnected { error, .. } => {
                if !std::mem::replace(&mut lost, true) {
                    note(format_args!("disconnected: {error}; reconnecting as soon as the server is back"));
                }
            }
            FollowEvent::ResyncRequired { cursor } => {
                note(format_args!(
                    "the server no longer has the updates after cursor {}: some were missed; \
                     `peyvand chats` shows where things stand. Resuming after cursor {cursor}",
                    before
                ));
                cx.store.save_cursor(&session.token, cursor)?;
            }
            FollowEvent::Update(update) => {
                if !cx.out.is_json() {
                    learn_names(client, &update, &mut names).await;
                }
                cx.out.stream_line(&update, |u| format::update(u, &names))?;
                acknowledge_delivery(client, &update, session.user_id).await;
                if let Some(cursor) = update.cursor {
                    cx.store.save_cursor(&session.token, cursor)?;
                }
            }
        }
    }
}

/// Tells the sender that a message from someone else reached this device.
async fn acknowledge_delivery(client: &Client, update: &Update, me: i64) {
    if let Event::MessageNew { message } = &update.event
        && message.sender_id != me
        && let Err(error) = client.mark_delivered(message.chat_id, message.seq).await
    {
        note(format_args!("could not confirm delivery of chat:{} #{}: {error}", message.chat_id, message.seq));
    }
}

/// Looks up the names of people an update mentions, once each; an unknown name is shown as
/// the id, so failures are not worth reporting.
async fn learn_names(client: &Client, update: &Update, names: &mut Names) {
    let user_id = match &update.event {
        Event::MessageNew { message } | Event::MessageEdited { message } => message.sender_id,
        Event::Delivered { user_id, .. }
        | Event::Read { user_id, .. }
        | Event::Typing { user_id, .. }
        | Event::Presence { user_id, .. } => *user_id,
        Event::MessagesDeleted { .. }
        | Event::MessageDelivery { .. }
        | Event::ReactionsChanged { .. }
        | Event::ReadByMe { .. }
        | Event::SignedOut { .. } => return,
    };
    if !names.knows(user_id) {
        match client.user(user_id).await {
            Ok(profile) => names.add(&profile),
            // Remembered as unknown so that the lookup is not repeated for every update.
            Err(_) => names.add_label(user_id, format!("user:{user_id}")),
        }
    }
}

/// Ctrl-C, or SIGTERM from a service manager.
async fn stop_requested() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = terminate.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
