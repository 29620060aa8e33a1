//! Text renderings of API objects for people.

use std::collections::HashMap;
use std::fmt::Write as _;

use peyvand_api::{
    Account, Chat, Content, Delivery, DeliveryState, Device, Event, Message, Millis, Presence, PrivacySettings, Update,
    UserProfile,
};

/// Names of the people a command has met, to show instead of their ids.
#[derive(Debug, Default)]
pub struct Names {
    me: i64,
    known: HashMap<i64, String>,
}

impl Names {
    pub fn new(me: i64) -> Self {
        Self { me, known: HashMap::new() }
    }

    pub fn add(&mut self, user: &UserProfile) {
        self.known.insert(user.id, user_label(user));
    }

    pub fn add_label(&mut self, user_id: i64, label: String) {
        self.known.insert(user_id, label);
    }

    pub fn add_chat(&mut self, chat: &Chat) {
        if let Some(peer) = &chat.peer {
            self.add(peer);
        }
    }

    pub fn knows(&self, user_id: i64) -> bool {
        user_id == self.me || self.known.contains_key(&user_id)
    }

    pub fn label(&self, user_id: i64) -> String {
        if user_id == self.me {
            return "me".to_owned();
        }
        self.known.get(&user_id).cloned().unwrap_or_else(|| format!("user:{user_id}"))
    }
}

/// `Name (@username +98...)` for someone here, `Name [+98...@provider on Messenger]` for
/// someone on another messenger: a name and what reaches the person, never a bare id unless
/// nothing else is known (a nameless account that shows neither username nor phone).
pub fn user_label(user: &UserProfile) -> String {
    if user.deleted {
        return format!("deleted account (user:{})", user.id);
    }
    if let Some(messenger) = &user.messenger {
        return match user.display_name.is_empty() {
            true => format!("{} [on {}]", messenger.address, messenger.name),
            false => format!("{} [{} on {}]", user.display_name, messenger.address, messenger.name),
        };
    }
    let reach: Vec<String> = user.username.iter().map(|u| format!("@{u}")).chain(user.phone.iter().cloned()).collect();
    match (user.display_name.is_empty(), reach.is_empty()) {
        (false, false) => format!("{} ({})", user.display_name, reach.join(" ")),
        (false, true) => format!("{} (user:{})", user.display_name, user.id),
        (true, false) => reach.join(" "),
        (true, true) => format!("user:{}", user.id),
    }
}

pub fn account(account: &Account) -> String {
    let mut out = format!("{}\nuser:{}  {}", display_name(&account.display_name), account.id, account.phone);
    if let Some(username) = &account.username {
        let _ = write!(out, "  @{username}");
    }
    if !account.bio.is_empty() {
        let _ = write!(out, "\n{}", account.bio);
    }
    let _ = write!(out, "\nPIN: {}", if account.has_pin { "set" } else { "not set" });
    out
}

pub fn profile(user: &UserProfile) -> String {
    let mut out = format!("{}\nuser:{}", user_label(user), user.id);
    if let Some(phone) = &user.phone {
        let _ = write!(out, "  {phone}");
    }
    if let Some(presence) = &user.presence {
        let _ = write!(out, "  {}", presence_text(presence));
    }
    if user.is_contact {
        out.push_str("  contact");
    }
    if user.blocked {
        out.push_str("  blocked");
    }
    if !user.bio.is_empty() {
        let _ = write!(out, "\n{}", user.bio);
    }
    out
}

pub fn users(users: &[UserProfile], empty: &str) -> String {
    if users.is_empty() {
        return empty.to_owned();
    }
    let lines: Vec<String> = users.iter().map(|u| format!("user:{}  {}", u.id, user_label(u))).collect();
    lines.join("\n")
}

pub fn devices(devices: &[Device]) -> String {
    let lines: Vec<String> = devices
        .iter()
        .map(|d| {
            let current = if d.current { "  (this device)" } else { "" };
            format!(
                "{}  {}  signed in {}  last active {}{current}",
                d.id,
                d.name,
                time(d.created_at),
                time(d.last_active)
            )
        })
        .collect();
    lines.join("\n")
}

/// One line per messenger where the number can be reached, then one per messenger that could
/// not be asked.
pub fn reachable(list: &peyvand_api::ReachableList) -> String {
    let mut lines: Vec<String> = list
        .reachable
        .iter()
        .map(|r| {
            let here = if r.local { "  (this messenger)" } else { "" };
            format!("{}  {}  {}{here}", r.address, r.provider_name, r.display_name)
        })
        .collect();
    if lines.is_empty() {
        lines.push(format!("{} cannot be reached on any connected messenger", list.phone));
    }
    lines.extend(list.unreachable.iter().map(|f| format!("! {}: {} ({})", f.provider_id, f.message, f.code)));
    lines.join("\n")
}

pub fn settings(settings: &PrivacySettings) -> String {
    [
        ("last-seen", settings.last_seen),
        ("phone-discovery", settings.phone_discovery),
        ("messages", settings.messages),
        ("group-invites", settings.group_invites),
        ("interconnect", settings.interconnect),
    ]
    .iter()
    .map(|(name, audience)| format!("{name:<16} {}", audience.as_str()))
    .collect::<Vec<_>>()
    .join("\n")
}

pub fn chat_line(chat: &Chat) -> String {
    let name = chat.peer.as_ref().map_or_else(|| format!("chat:{}", chat.id), user_label);
    let mut out = format!("chat:{}  {name}", chat.id);
    if chat.unread > 0 {
        let _ = write!(out, "  [{} unread]", chat.unread);
    }
    if let Some(last) = &chat.last_message {
        let _ = write!(out, "  {}  {}", time(last.sent_at), content_text(&last.content));
    }
    out
}

/// `#3  2024-05-01 12:34  Ali: سلام  (edited)  ❤️ 2`
pub fn message(message: &Message, names: &Names) -> String {
    let mut out = format!("#{}  {}  {}: ", message.seq, time(message.sent_at), names.label(message.sender_id));
    match &message.forwarded_from {
        Some(from) if from.user_id == 0 => out.push_str("[forwarded] "),
        Some(from) => {
            let _ = write!(out, "[forwarded from {}] ", names.label(from.user_id));
        }
        None => {}
    }
    if let Some(reply_to) = message.reply_to {
        let _ = write!(out, "[reply to #{reply_to}] ");
    }
    out.push_str(&content_text(&message.content));
    if message.edited_at.is_some() {
        out.push_str("  (edited)");
    }
    if !message.reactions.is_empty() {
        let _ = write!(out, "  {}", reactions(&message.reactions));
    }
    if let Some(delivery) = &message.delivery {
        let _ = write!(out, "  {}", delivery_mark(delivery));
    }
    out
}

/// `[delivered]`, `[queued]`, `[queued: peer_not_active]` or `[failed: privacy_restricted]`: where
/// a message to another messenger stands, after the message.
pub fn delivery_mark(delivery: &Delivery) -> String {
    match (delivery.state, delivery.reason) {
        (DeliveryState::Delivered, _) => "[delivered]".to_owned(),
        (DeliveryState::Pending, None) => "[queued]".to_owned(),
        (DeliveryState::Pending, Some(code)) => format!("[queued: {code}]"),
        (DeliveryState::Failed, Some(code)) => format!("[failed: {code}]"),
        (DeliveryState::Failed, None) => "[failed]".to_owned(),
    }
}

/// What a message's delivery says for people: the detail and its code.
pub fn reason(delivery: &Delivery) -> String {
    match (&delivery.detail, delivery.reason) {
        (Some(detail), Some(code)) => format!("{detail} ({code})"),
        (Some(detail), None) => detail.clone(),
        (None, Some(code)) => code.to_string(),
        (None, None) => "the other messenger has not taken it yet".to_owned(),
    }
}

/// `queued: <why>` or `failed: <why>` (`delivered` for a delivered message).
pub fn delivery_line(delivery: &Delivery) -> String {
    match delivery.state {
        DeliveryState::Delivered => "delivered".to_owned(),
        DeliveryState::Pending => format!("queued: {}", reason(delivery)),
        DeliveryState::Failed => format!("failed: {}", reason(delivery)),
    }
}

/// Each emoji with how many people chose it, in the order they first appear.
fn reactions(reactions: &[peyvand_api::Reaction]) -> String {
    let mut counts: Vec<(&str, usize)> = Vec::new();
    for reaction in reactions {
        match counts.iter_mut().find(|(emoji, _)| *emoji == reaction.emoji) {
            Some((_, count)) => *count += 1,
            None => counts.push((&reaction.emoji, 1)),
        }
    }
    counts.iter().map(|(emoji, count)| format!("{emoji} {count}")).collect::<Vec<_>>().join("  ")
}

pub fn content_text(content: &Content) -> String {
    match content {
        Content::Text { text } => text.clone(),
        Content::Media { media, caption } => match caption {
            Some(caption) => format!("{}  {caption}", media_line(media)),
            None => media_line(media),
        },
        Content::Deleted => "(deleted)".to_owned(),
    }
}

/// A media item in one bracket: its kind, size, name and duration, as far as known.
pub fn media_line(media: &peyvand_api::Media) -> String {
    let mut parts = vec![media.kind.as_str().to_owned(), size(media.size)];
    if let Some(name) = &media.name {
        parts.push(format!("\"{name}\""));
    }
    if let (Some(w), Some(h)) = (media.width, media.height) {
        parts.push(format!("{w}×{h}"));
    }
    if let Some(ms) = media.duration_ms {
        let secs = ms / 1000;
        parts.push(format!("{}:{:02}", secs / 60, secs % 60));
    }
    format!("[{}]", parts.join(", "))
}

/// A byte count for people: 512 B, 3.4 KB, 12.0 MB, 1.5 GB (powers of 1000).
pub fn size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KB", "MB", "GB", "TB"];
    if bytes < 1000 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1000.0;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// One line for an update, as `listen` prints it.
pub fn update(update: &Update, names: &Names) -> String {
    let body = match &update.event {
        Event::MessageNew { message: m } => format!("chat:{}  {}", m.chat_id, message(m, names)),
        Event::MessageEdited { message: m } => format!("chat:{}  edited  {}", m.chat_id, message(m, names)),
        Event::MessageDelivery { chat_id, seq, delivery } => {
            format!("chat:{chat_id}  #{seq} {}", delivery_line(delivery))
        }
        Event::MessagesDeleted { chat_id, seqs, for_everyone } => {
            let seqs: Vec<String> = seqs.iter().map(|s| format!("#{s}")).collect();
            let whom = if *for_everyone { "for everyone" } else { "for me" };
            format!("chat:{chat_id}  deleted {} {whom}", seqs.join(" "))
        }
        Event::ReactionsChanged { chat_id, seq, reactions: list } => {
            let list = if list.is_empty() { "none".to_owned() } else { reactions(list) };
            format!("chat:{chat_id}  #{seq} reactions: {list}")
        }
        Event::Delivered { chat_id, user_id, up_to } => {
            format!("chat:{chat_id}  delivered to {} up to #{up_to}", names.label(*user_id))
        }
        Event::Read { chat_id, user_id, up_to } => {
            format!("chat:{chat_id}  read by {} up to #{up_to}", names.label(*user_id))
        }
        Event::ReadByMe { chat_id, up_to, unread } => {
            format!("chat:{chat_id}  read by me up to #{up_to} ({unread} unread)")
        }
        Event::Typing { chat_id, user_id } => format!("chat:{chat_id}  {} is typing…", names.label(*user_id)),
        Event::Presence { user_id, presence } => format!("{} is {}", names.label(*user_id), presence_text(presence)),
        Event::SignedOut { device_id: Some(device) } => format!("device {device} was signed out"),
        Event::SignedOut { device_id: None } => "every device was signed out".to_owned(),
    };
    match update.cursor {
        Some(cursor) => format!("[{cursor}] {body}"),
        None => format!("[-] {body}"),
    }
}

fn presence_text(presence: &Presence) -> String {
    match (presence.online, presence.last_seen) {
        (true, _) => "online".to_owned(),
        (false, Some(at)) => format!("last seen {}", time(at)),
        (false, None) => "offline".to_owned(),
    }
}

fn display_name(name: &str) -> &str {
    if name.is_empty() { "(no name)" } else { name }
}

/// `2024-05-01 12:34 UTC`: the CLI has no time zone database, so it says UTC plainly.
pub fn time(millis: Millis) -> String {
    let seconds = millis.div_euclid(1000);
    let (days, second_of_day) = (seconds.div_euclid(86_400), seconds.rem_euclid(86_400));
    let (year, month, day) = civil_from_days(days);
    format!("{year:04}-{month:02}-{day:02} {:02}:{:02} UTC", second_of_day / 3600, second_of_day % 3600 / 60)
}

/// Days since 1970-01-01 to a Gregorian date (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_times_in_utc() {
        assert_eq!(time(0), "1970-01-01 00:00 UTC");
        assert_eq!(time(951_782_400_000), "2000-02-29 00:00 UTC");
        assert_eq!(time(1_714_566_896_000), "2024-05-01 12:34 UTC");
    }

    #[test]
    fn people_show_by_name_and_what_reaches_them() {
        let person = |name: &str, username: Option<&str>, phone: Option<&str>, address: Option<&str>| UserProfile {
            id: 7,
            display_name: name.into(),
            username: username.map(Into::into),
            bio: String::new(),
            phone: phone.map(Into::into),
            presence: None,
            is_contact: false,
            blocked: false,
            deleted: false,
            messenger: address.map(|a| peyvand_api::Messenger {
                provider_id: "damavand".into(),
                name: "دماوند".into(),
                address: a.into(),
            }),
        };
        let remote = person("سارا", None, None, Some("+989127654321@damavand"));
        assert_eq!(user_label(&remote), "سارا [+989127654321@damavand on دماوند]");
        let nameless = person("", None, None, Some("+989127654321@damavand"));
        assert_eq!(user_label(&nameless), "+989127654321@damavand [on دماوند]");
        assert_eq!(user_label(&person("علی", Some("ali"), Some("+989121234567"), None)), "علی (@ali +989121234567)");
        assert_eq!(user_label(&person("", None, Some("+989121234567"), None)), "+989121234567");
        assert_eq!(user_label(&person("", None, None, None)), "user:7");
    }

    #[test]
    fn delivery_shows_after_the_message() {
        let problem = peyvand_api::ApiError::new(peyvand_api::ErrorCode::PeerNotActive, "suspended");
        assert_eq!(delivery_mark(&Delivery::pending(None)), "[queued]");
        assert_eq!(delivery_mark(&Delivery::pending(Some(&problem))), "[queued: peer_not_active]");
        assert_eq!(delivery_mark(&Delivery::failed(&problem)), "[failed: peer_not_active]");
        assert_eq!(delivery_mark(&Delivery::delivered()), "[delivered]");
        assert_eq!(delivery_line(&Delivery::pending(Some(&problem))), "queued: suspended (peer_not_active)");
        assert_eq!(delivery_line(&Delivery::failed(&problem)), "failed: suspended (peer_not_active)");
    }

    #[test]
    fn counts_reactions() {
        let r = |user_id, emoji: &str| peyvand_api::Reaction { user_id, emoji: emoji.to_owned() };
        assert_eq!(reactions(&[r(1, "👍"), r(2, "❤️"), r(3, "👍")]), "👍 2  ❤️ 1");
    }
}
