//! The client commands and their arguments, as clap sees them.

use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};

/// Options every client command takes.
#[derive(Debug, Clone, Args)]
pub struct GlobalArgs {
    /// The server to talk to; each server has its own saved session.
    #[arg(long, global = true, env = "PEYVAND_SERVER", default_value = "http://127.0.0.1:8080")]
    pub server: String,
    /// How to print results: for people, or the API's JSON objects for programs.
    #[arg(long, global = true, env = "PEYVAND_OUTPUT", value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Text,
    Json,
}

/// The commands that talk to a server as a user.
#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Signs in with a code sent to a phone number (read from standard input).
    Login(LoginArgs),
    /// Signs this device out and forgets the saved session.
    Logout,
    /// Shows who is signed in.
    Whoami,
    /// Shows or changes a profile.
    #[command(subcommand)]
    Profile(ProfileCommand),
    /// Sets or removes the second-step PIN.
    #[command(subcommand)]
    Pin(PinCommand),
    /// Lists the signed-in devices, or signs devices out.
    Devices {
        #[command(subcommand)]
        action: Option<DevicesCommand>,
    },
    /// Deletes the account.
    #[command(subcommand)]
    Account(AccountCommand),
    /// Lists contacts, or imports or removes some.
    Contacts {
        #[command(subcommand)]
        action: Option<ContactsCommand>,
    },
    /// Lists the messengers (this one and the connected others) where a phone number can be
    /// reached, with the address to write to them there (`PHONE@PROVIDER-ID`).
    Lookup {
        /// A phone number in any accepted form.
        phone: String,
    },
    /// Blocks a person.
    Block {
        /// `@username`, a phone number, or a user id (`user:12`).
        user: String,
    },
    /// Unblocks a person.
    Unblock {
        /// `@username`, a phone number, or a user id (`user:12`).
        user: String,
    },
    /// Lists the people I have blocked.
    Blocks,
    /// Reports a person for abuse: to this messenger's operator and, for someone on another
    /// messenger, to their provider too.
    Report {
        /// `@username`, a phone number, a user id (`user:12`) or `PHONE@PROVIDER-ID`.
        user: String,
        /// Why, in a few words.
        reason: String,
    },
    /// Shows or changes the privacy settings.
    Settings {
        #[command(subcommand)]
        action: Option<SettingsCommand>,
    },
    /// Lists my chats, most recent first.
    Chats,
    /// Sends a text message. To a person on another messenger, it waits a few seconds for that
    /// messenger to take it, and otherwise says it is queued and why; it exits 0 once the
    /// message is stored, and fails if the other messenger refused it at once.
    Send(SendArgs),
    /// Forwards a message from one chat to another.
    Forward(ForwardArgs),
    /// Shows a chat's messages.
    History(HistoryArgs),
    /// Replaces the text of one of my messages.
    Edit {
        recipient: String,
        #[arg(value_parser = parse_number)]
        seq: i64,
        /// The new text (several words are joined with spaces).
        #[arg(required = true, num_args = 1..)]
        text: Vec<String>,
    },
    /// Deletes a message, for me or for everyone.
    Delete {
        recipient: String,
        #[arg(value_parser = parse_number)]
        seq: i64,
        /// Delete it for every member of the chat, not only for me.
        #[arg(long)]
        for_everyone: bool,
    },
    /// Reacts to a message with an emoji, or removes my reaction.
    React {
        recipient: String,
        #[arg(value_parser = parse_number)]
        seq: i64,
        #[arg(required_unless_present = "remove")]
        emoji: Option<String>,
        /// Remove my reaction instead.
        #[arg(long, conflicts_with = "emoji")]
        remove: bool,
    },
    /// Marks a chat as read.
    Read {
        recipient: String,
        /// The last message read (default: the chat's last message).
        #[arg(long, value_parser = parse_number)]
        up_to: Option<i64>,
    },
    /// Tells the chat I am typing.
    Typing { recipient: String },
    /// Searches chats and messages.
    Search {
        query: String,
        #[arg(long, value_parser = parse_limit)]
        limit: Option<u32>,
    },
    /// Prints updates as they happen until stopped, resuming where the last `listen` stopped.
    Listen {
        /// Start after this cursor instead of the saved one (0: from the start).
        #[arg(long, value_parser = parse_number)]
        after: Option<i64>,
    },
}

#[derive(Debug, Args)]
pub struct LoginArgs {
    /// The phone number, in any usual form (`0912...`, `+98912...`, Persian digits).
    pub phone: String,
    /// The name to show for this device in the device list.
    #[arg(long)]
    pub device_name: Option<String>,
    /// A file whose first line is the account's PIN (`-`: standard input), when it has one.
    /// Without it the PIN is asked for when needed: without echo on a terminal, otherwise as
    /// the next line of standard input.
    #[arg(long, value_name = "FILE")]
    pub pin_file: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum ProfileCommand {
    /// Shows my account, or another person's profile.
    Show {
        /// `@username`, a phone number, or a user id (`user:12`).
        user: Option<String>,
    },
    /// Changes my name, username or bio.
    Set {
        #[arg(long)]
        name: Option<String>,
        /// A new username; an empty one removes it.
        #[arg(long)]
        username: Option<String>,
        #[arg(long)]
        bio: Option<String>,
    },
}

/// PINs are never arguments (they would show in `ps` and in the shell's history): they are
/// asked for without echo on a terminal, read as lines of standard input, or read from files.
#[derive(Debug, Subcommand)]
pub enum PinCommand {
    /// Sets the PIN (4 to 32 characters), or changes it.
    Set {
        /// A file whose first line is the new PIN (`-`: standard input).
        #[arg(long, value_name = "FILE")]
        pin_file: Option<PathBuf>,
        /// Changing a PIN already set: the PIN in force is asked for first.
        #[arg(long)]
        change: bool,
        /// A file whose first line is the PIN in force, when changing it.
        #[arg(long, value_name = "FILE", requires = "change")]
        current_file: Option<PathBuf>,
    },
    /// Removes the PIN (the PIN in force is asked for).
    Remove {
        /// A file whose first line is the PIN in force (`-`: standard input).
        #[arg(long, value_name = "FILE")]
        current_file: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum DevicesCommand {
    /// Signs one device out.
    Revoke {
        #[arg(value_parser = parse_number)]
        id: i64,
    },
    /// Signs every device out, this one included.
    RevokeAll,
}

#[derive(Debug, Subcommand)]
pub enum AccountCommand {
    /// Deletes the account and everything in it, for good.
    Delete {
        /// Confirms that the account should be deleted.
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum ContactsCommand {
    /// Adds phone numbers to my contacts and shows who is on the messenger.
    Import {
        phones: Vec<String>,
        /// A file with one phone number per line (`-` for standard input).
        #[arg(long)]
        file: Option<PathBuf>,
    },
    /// Removes a person from my contacts.
    Remove {
        /// `@username`, a phone number, or a user id (`user:12`).
        user: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum SettingsCommand {
    /// Changes one privacy setting.
    Set {
        /// Which setting.
        setting: Setting,
        /// Who it lets in.
        audience: AudienceArg,
    },
    /// Who on other messengers may find and message me: everybody there, my contacts only,
    /// or nobody (the default).
    Interconnect {
        /// Who it lets in.
        audience: AudienceArg,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Setting {
    /// Who sees when I was last online.
    LastSeen,
    /// Who can find me by phone number.
    PhoneDiscovery,
    /// Who can message me.
    Messages,
    /// Who can add me to groups.
    GroupInvites,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum AudienceArg {
    Everybody,
    Contacts,
    Nobody,
}

#[derive(Debug, Args)]
pub struct SendArgs {
    /// A phone number, `@username`, or a chat id (`chat:12`, or a number of up to 7 digits).
    pub recipient: String,
    /// The text (several words are joined with spaces).
    #[arg(required = true, num_args = 1..)]
    pub text: Vec<String>,
    /// The message this one answers.
    #[arg(long, value_parser = parse_number)]
    pub reply_to: Option<i64>,
    /// The client id that makes retries safe (default: a new random one).
    #[arg(long)]
    pub id: Option<String>,
}

#[derive(Debug, Args)]
pub struct ForwardArgs {
    /// Where to forward to.
    pub recipient: String,
    /// The chat the message is in.
    #[arg(long)]
    pub from: String,
    /// The message to forward.
    #[arg(value_parser = parse_number)]
    pub seq: i64,
    /// The client id that makes retries safe (default: a new random one).
    #[arg(long)]
    pub id: Option<String>,
}

#[derive(Debug, Args)]
pub struct HistoryArgs {
    pub recipient: String,
    /// How many messages (1 to 200).
    #[arg(long, value_parser = parse_limit)]
    pub limit: Option<u32>,
    /// Only messages before this one.
    #[arg(long, value_parser = parse_number)]
    pub before: Option<i64>,
}

/// Reads a number typed with ASCII, Persian or Arabic-Indic digits.
pub fn parse_number(input: &str) -> Result<i64, String> {
    let digits: Option<String> = input.trim().chars().map(peyvand_core::text::ascii_digit).collect();
    digits.filter(|d| !d.is_empty()).and_then(|d| d.parse().ok()).ok_or_else(|| format!("{input:?} is not a number"))
}

fn parse_limit(input: &str) -> Result<u32, String> {
    let number = parse_number(input)?;
    u32::try_from(number).map_err(|_| format!("{input:?} is out of range"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_in_any_digits() {
        assert_eq!(parse_number("۱۲"), Ok(12));
        assert_eq!(parse_number("٣"), Ok(3));
        assert_eq!(parse_number(" 42 "), Ok(42));
        assert!(parse_number("").is_err());
        assert!(parse_number("-1").is_err());
        assert!(parse_number("1a").is_err());
    }
}
