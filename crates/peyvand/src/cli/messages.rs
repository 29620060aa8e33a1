//! Chats and messages: `chats`, `send`, `forward`, `history`, `edit`, `delete`, `react`,
//! `read`, `typing` and `search`.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use peyvand_api::{
    Chat, Content, DeliveryState, Event, ForwardSource, HistoryQuery, Message, SearchResults, SendMessage,
};
use peyvand_client::{Client, Sent, new_client_id};

use super::Context;
use super::args::{ForwardArgs, HistoryArgs, SendArgs};
use super::format::{self, Names};
use super::output::note;

impl Context {
    /// Names for a chat's messages: me and the chat's peer.
    fn names_for(&self, chat: &Chat) -> Result<Names> {
        let mut names = Names::new(self.session()?.user_id);
        names.add_chat(chat);
        Ok(names)
    }
}

pub async fn chats(cx: &Context) -> Result<()> {
    let list = cx.client()?.chats().await?;
    cx.out.show(&list, |list| {
        if list.chats.is_empty() {
            return "no chats yet".to_owned();
        }
        list.chats.iter().map(format::chat_line).collect::<Vec<_>>().join("\n")
    })
}

/// How long `send` waits for another messenger to take a message before saying it is queued.
const DELIVERY_WAIT: Duration = Duration::from_secs(3);

pub async fn send(cx: &Context, args: SendArgs) -> Result<()> {
    let chat = cx.chat_for(&args.recipient).await?;
    let message = SendMessage {
        client_id: args.id.unwrap_or_else(new_client_id),
        content: Some(Content::Text { text: args.text.join(" ") }),
        reply_to: args.reply_to,
        forward: None,
        media: None,
    };
    send_and_show(cx, &chat, &message).await
}

pub async fn forward(cx: &Context, args: ForwardArgs) -> Result<()> {
    let source = cx.chat_for(&args.from).await?;
    let chat = cx.chat_for(&args.recipient).await?;
    let message = SendMessage {
        client_id: args.id.unwrap_or_else(new_client_id),
        content: None,
        reply_to: None,
        forward: Some(ForwardSource { chat_id: source.id, seq: args.seq }),
        media: None,
    };
    send_and_show(cx, &chat, &message).await
}

/// Sends, and for a message to another messenger waits a moment for it to be delivered; prints
/// the message, and says when it is queued (and why) or failed.
pub(super) async fn send_and_show(cx: &Context, chat: &Chat, message: &SendMessage) -> Result<()> {
    let client = cx.client()?;
    // Where the update stream stands before the send, to read the delivery's update from.
    let crosses = chat.peer.as_ref().is_some_and(|p| p.messenger.is_some());
    let cursor = if crosses { Some(client.state().await?.cursor) } else { None };
    let mut sent = client.send(chat.id, message).await?;
    if let Some(cursor) = cursor {
        await_delivery(client, cursor, &mut sent.message).await;
    }
    show_sent(cx, chat, &sent)
}

/// Follows the update stream from `cursor` until the message's delivery is known (delivered,
/// failed, or waiting for a reason), for at most [`DELIVERY_WAIT`]; `message` takes what it
/// learns. Failing to read the stream ends the wait: the message is stored either way.
async fn await_delivery(client: &Client, mut cursor: i64, message: &mut Message) {
    let started = Instant::now();
    let unsettled =
        |m: &Message| m.delivery.as_ref().is_some_and(|d| d.state == DeliveryState::Pending && d.reason.is_none());
    while unsettled(message) {
        let left = DELIVERY_WAIT.saturating_sub(started.elapsed());
        if left.is_zero() {
            return;
        }
        let Ok(page) = client.poll_updates(cursor, left.max(Duration::from_secs(1))).await else { return };
        for update in page.updates {
            if let Event::MessageDelivery { chat_id, seq, delivery } = update.event
                && chat_id == message.chat_id
                && seq == message.seq
            {
                message.delivery = Some(delivery);
            }
        }
        cursor = page.cursor;
    }
}

fn show_sent(cx: &Context, chat: &Chat, sent: &Sent) -> Result<()> {
    if !sent.created {
        note("the server already had this message (same client id): nothing new was sent");
    }
    let names = cx.names_for(chat)?;
    cx.out.show(&sent.message, |m| {
        let mut text = format!("chat:{}  {}", m.chat_id, format::message(m, &names));
        if let Some(delivery) = &m.delivery
            && delivery.state != DeliveryState::Delivered
        {
            text.push('\n');
            text.push_str(&format::delivery_line(delivery));
        }
        text
    })?;
    match &sent.message.delivery {
        Some(delivery) if delivery.state == DeliveryState::Failed => {
            bail!("chat:{} #{} was not delivered: {}", sent.message.chat_id, sent.message.seq, format::reason(delivery))
        }
        _ => Ok(()),
    }
}

pub async fn history(cx: &Context, args: HistoryArgs) -> Result<()> {
    let chat = cx.chat_for(&args.recipient).await?;
    let query = HistoryQuery { before: args.before, after: None, limit: args.limit };
    let list = cx.client()?.history(chat.id, &query).await?;
    let names = cx.names_for(&chat)?;
    cx.out.show(&list, |list| {
        if list.messages.is_empty() {
            return "no messages".to_owned();
        }
        list.messages.iter().map(|m| format::message(m, &names)).collect::<Vec<_>>().join("\n")
    })
}

pub async fn edit(cx: &Context, recipient: &str, seq: i64, text: String) -> Result<()> {
    let chat = cx.chat_for(recipient).await?;
    let message = cx.client()?.edit(chat.id, seq, Content::Text { text }).await?;
    let names = cx.names_for(&chat)?;
    cx.out.show(&message, |m| format::message(m, &names))
}

pub async fn delete(cx: &Context, recipient: &str, seq: i64, for_everyone: bool) -> Result<()> {
    let chat = cx.chat_for(recipient).await?;
    cx.client()?.delete_message(chat.id, seq, for_everyone).await?;
    let whom = if for_everyone { "for everyone" } else { "for me" };
    cx.out.done(format_args!("#{seq} deleted {whom}"))
}

/// Sets my reaction, or removes it when `emoji` is `None`.
pub async fn react(cx: &Context, recipient: &str, seq: i64, emoji: Option<String>) -> Result<()> {
    let chat = cx.chat_for(recipient).await?;
    let client = cx.client()?;
    let message = match emoji {
        Some(emoji) => client.react(chat.id, seq, &emoji).await?,
        None => client.unreact(chat.id, seq).await?,
    };
    let names = cx.names_for(&chat)?;
    cx.out.show(&message, |m| format::message(m, &names))
}

pub async fn read(cx: &Context, recipient: &str, up_to: Option<i64>) -> Result<()> {
    let chat = cx.chat_for(recipient).await?;
    let Some(up_to) = up_to.or(chat.last_message.as_ref().map(|m| m.seq)) else {
        return cx.out.done(format_args!("chat:{} has no messages", chat.id));
    };
    cx.client()?.mark_read(chat.id, up_to).await?;
    cx.out.done(format_args!("chat:{} read up to #{up_to}", chat.id))
}

pub async fn typing(cx: &Context, recipient: &str) -> Result<()> {
    let chat = cx.chat_for(recipient).await?;
    cx.client()?.typing(chat.id).await?;
    cx.out.done(format_args!("chat:{}: typing…", chat.id))
}

pub async fn search(cx: &Context, query: &str, limit: Option<u32>) -> Result<()> {
    if query.trim().is_empty() {
        bail!("the search query is empty");
    }
    let results = cx.client()?.search(query, limit).await?;
    let mut names = Names::new(cx.session()?.user_id);
    for chat in &results.chats {
        names.add_chat(chat);
    }
    cx.out.show(&results, |r| search_text(r, &names))
}

fn search_text(results: &SearchResults, names: &Names) -> String {
    let mut lines: Vec<String> = results.chats.iter().map(format::chat_line).collect();
    for hit in &results.messages {
        lines.push(format!("chat:{}  {}", hit.chat_id, format::message(&hit.message, names)));
    }
    if lines.is_empty() { "nothing found".to_owned() } else { lines.join("\n") }
}
