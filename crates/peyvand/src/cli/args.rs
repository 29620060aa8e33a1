//! The client commands and their arguments, as clap sees them.

use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};

/// Options every client command takes. They are added to the client commands only (see
/// `main.rs`), so that `serve`, `demo` and the registry's server do not show them.
#[derive(Debug, Clone, Args)]
pub struct GlobalArgs {
    /// The server to talk to; each server has its own saved session.
    #[arg(long, global = true, env = "PEYVAND_SERVER", default_value = "http://127.0.0.1:8080")]
    pub server: String,
    #[command(flatten)]
    pub output: OutputArgs,
}

/// How a command prints its results: the client commands, the registry's admin commands and
/// the conformance kit take it.
#[derive(Debug, Clone, Args)]
pub struct OutputArgs {
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
    #[command(after_help = "Example:\n  peyvand login 09121234567 --device-name laptop")]
    Login(LoginArgs),
    /// Signs this device out and forgets the saved session.
    #[command(after_help = "Example:\n  peyvand logout")]
    Logout,
    /// Shows who is signed in.
    #[command(after_help = "Example:\n  peyvand whoami --output json")]
    Whoami,
    /// Shows or changes a profile.
    #[command(subcommand)]
    Profile(ProfileCommand),
    /// Sets or removes the second-step PIN.
    #[command(subcommand)]
    Pin(PinCommand),
    /// Lists the signed-in devices, or signs devices out.
    #[command(after_help = "Examples:\n  peyvand devices\n  peyvand devices revoke 4")]
    Devices {
        #[command(subcommand)]
        action: Option<DevicesCommand>,
    },
    /// Deletes the account.
    #[command(subcommand)]
    Account(AccountCommand),
    /// Lists contacts, or imports or removes some.
    #[command(after_help = "Examples:\n  peyvand contacts\n  peyvand contacts import 09121234567")]
    Contacts {
        #[command(subcommand)]
        action: Option<ContactsCommand>,
    },
    /// Lists the messengers (this one and the connected others) where a phone number can be
    /// reached, with the address to write to them there (`PHONE@PROVIDER-ID`).
    #[command(after_help = "Example:\n  peyvand lookup 09351234567")]
    Lookup {
        /// A phone number in any accepted form.
        phone: String,
    },
    /// Blocks a person.
    #[command(after_help = "Example:\n  peyvand block @spammer")]
    Block {
        /// `@username`, a phone number, or a user id (`user:12`).
        user: String,
    },
    /// Unblocks a person.
    #[command(after_help = "Example:\n  peyvand unblock @spammer")]
    Unblock {
        /// `@username`, a phone number, or a user id (`user:12`).
        user: String,
    },
    /// Lists the people I have blocked.
    #[command(after_help = "Example:\n  peyvand blocks")]
    Blocks,
    /// Reports a person for abuse: to this messenger's operator and, for someone on another
    /// messenger, to their provider too.
    #[command(after_help = "Example:\n  peyvand report +989351234567@damavand 'unwanted advertising'")]
    Report {
        /// `@username`, a phone number, a user id (`user:12`) or `PHONE@PROVIDER-ID`.
        user: String,
        /// Why, in a few words.
        reason: String,
    },
    /// Shows or changes the privacy settings.
    #[command(after_help = "Examples:\n  peyvand settings\n  peyvand settings interconnect contacts")]
    Settings {
        #[command(subcommand)]
        action: Option<SettingsCommand>,
    },
    /// Lists my chats, most recent first.
    #[command(after_help = "Example:\n  peyvand chats")]
    Chats,
    /// Sends a text message, or a file (`--file`: a photo, voice message, video, audio or any
    /// file, with an optional `--caption`). A file's upload shows its progress on a terminal,
    /// and an interrupted upload resumes when the same command is run again. To a person on
    /// another messenger, it waits a few seconds for that messenger to take it, and otherwise
    /// says it is queued and why; it exits 0 once the message is stored, and fails if the
    /// other messenger refused it at once.
    #[command(
        after_help = "Examples:\n  peyvand send 09121234567 سلام، خوبی؟\n  peyvand send +989351234567@damavand 'Hello from Sepehr'\n  peyvand send chat:3 --reply-to 7 باشه\n  peyvand send chat:3 --file ~/عکس.jpg --caption 'تولد سارا'\n  peyvand send @sara --file note.ogg --as voice"
    )]
    Send(SendArgs),
    /// Downloads a media message's file (a message as `history` numbers it), with its progress
    /// on a terminal; an interrupted download resumes when run again.
    #[command(after_help = "Examples:\n  peyvand download chat:3 12\n  peyvand download @sara 7 --out ~/Downloads/")]
    Download(DownloadArgs),
    /// Forwards a message from one chat to another.
    #[command(after_help = "Example:\n  peyvand forward @sara --from chat:3 7")]
    Forward(ForwardArgs),
    /// Shows a chat's messages.
    #[command(after_help = "Example:\n  peyvand history chat:3 --limit 20")]
    History(HistoryArgs),
    /// Replaces the text of one of my messages.
    #[command(after_help = "Example:\n  peyvand edit chat:3 7 فردا ساعت ۱۰")]
    Edit {
        /// The chat: as `chats` prints it (`chat:12`), or the person it is with.
        recipient: String,
        /// The message's number in the chat, as `history` prints it.
        #[arg(value_parser = parse_number)]
        seq: i64,
        /// The new text (several words are joined with spaces).
        #[arg(required = true, num_args = 1..)]
        text: Vec<String>,
    },
    /// Deletes a message, for me or for everyone.
    #[command(after_help = "Example:\n  peyvand delete chat:3 7 --for-everyone")]
    Delete {
        /// The chat: as `chats` prints it (`chat:12`), or the person it is with.
        recipient: String,
        /// The message's number in the chat, as `history` prints it.
        #[arg(value_parser = parse_number)]
        seq: i64,
        /// Delete it for every member of the chat, not only for me.
        #[arg(long)]
        for_everyone: bool,
    },
    /// Reacts to a message with an emoji, or removes my reaction.
    #[command(after_help = "Examples:\n  peyvand react chat:3 7 👍\n  peyvand react chat:3 7 --remove")]
    React {
        /// The chat: as `chats` prints it (`chat:12`), or the person it is with.
        recipient: String,
        /// The message's number in the chat, as `history` prints it.
        #[arg(value_parser = parse_number)]
        seq: i64,
        /// One emoji (`👍`, `❤️`, `😂`).
        #[arg(required_unless_present = "remove")]
        emoji: Option<String>,
        /// Remove my reaction instead.
        #[arg(long, conflicts_with = "emoji")]
        remove: bool,
    },
    /// Marks a chat as read.
    #[command(after_help = "Example:\n  peyvand read chat:3")]
    Read {
        /// The chat: as `chats` prints it (`chat:12`), or the person it is with.
        recipient: String,
        /// The last message read (default: the chat's last message).
        #[arg(long, value_parser = parse_number)]
        up_to: Option<i64>,
    },
    /// Tells the chat I am typing.
    #[command(after_help = "Example:\n  peyvand typing chat:3")]
    Typing {
        /// The chat: as `chats` prints it (`chat:12`), or the person it is with.
        recipient: String,
    },
    /// Searches chats and messages.
    #[command(after_help = "Example:\n  peyvand search کتاب --limit 10")]
    Search {
        /// The words to look for (Persian and Arabic letters, any digits, no case).
        query: String,
        /// How many results at most (1 to 100).
        #[arg(long, value_parser = parse_limit)]
        limit: Option<u32>,
    },
    /// Prints updates as they happen until stopped, resuming where the last `listen` stopped.
    #[command(after_help = "Examples:\n  peyvand listen\n  peyvand listen --after 0 --output json")]
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
    #[command(after_help = "Examples:\n  peyvand profile show\n  peyvand profile show @sara")]
    Show {
        /// `@username`, a phone number, or a user id (`user:12`).
        user: Option<String>,
    },
    /// Changes my name, username or bio.
    #[command(after_help = "Example:\n  peyvand profile set --name 'سارا رضایی' --username sara")]
    Set {
        /// The name people see (a visible character at least, 64 at most).
        #[arg(long)]
        name: Option<String>,
        /// A new username; an empty one removes it.
        #[arg(long)]
        username: Option<String>,
        /// A few words about me; an empty one removes it.
        #[arg(long)]
        bio: Option<String>,
    },
}

/// PINs are never arguments (they would show in `ps` and in the shell's history): they are
/// asked for without echo on a terminal, read as lines of standard input, or read from files.
#[derive(Debug, Subcommand)]
pub enum PinCommand {
    /// Sets the PIN (4 to 32 characters), or changes it.
    #[command(
        after_help = "Examples:\n  peyvand pin set\n  peyvand pin set --change --current-file old-pin.txt --pin-file new-pin.txt"
    )]
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
    #[command(after_help = "Example:\n  peyvand pin remove")]
    Remove {
        /// A file whose first line is the PIN in force (`-`: standard input).
        #[arg(long, value_name = "FILE")]
        current_file: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum DevicesCommand {
    /// Signs one device out.
    #[command(after_help = "Example:\n  peyvand devices revoke 4")]
    Revoke {
        /// The device's id, as `devices` lists it.
        #[arg(value_parser = parse_number)]
        id: i64,
    },
    /// Signs every device out, this one included.
    #[command(after_help = "Example:\n  peyvand devices revoke-all")]
    RevokeAll,
}

#[derive(Debug, Subcommand)]
pub enum AccountCommand {
    /// Deletes the account and everything in it, for good.
    #[command(after_help = "Example:\n  peyvand account delete --yes")]
    Delete {
        /// Confirms that the account should be deleted.
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum ContactsCommand {
    /// Adds phone numbers to my contacts and shows who is on the messenger.
    #[command(
        after_help = "Examples:\n  peyvand contacts import 09121234567 09351234567\n  peyvand contacts import --file phones.txt"
    )]
    Import {
        /// Phone numbers, in any usual form.
        phones: Vec<String>,
        /// A file with one phone number per line (`-` for standard input).
        #[arg(long)]
        file: Option<PathBuf>,
    },
    /// Removes a person from my contacts.
    #[command(after_help = "Example:\n  peyvand contacts remove 09121234567")]
    Remove {
        /// `@username`, a phone number, or a user id (`user:12`).
        user: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum SettingsCommand {
    /// Changes one privacy setting.
    #[command(after_help = "Example:\n  peyvand settings set last-seen contacts")]
    Set {
        /// Which setting.
        setting: Setting,
        /// Who it lets in.
        audience: AudienceArg,
    },
    /// Who on other messengers may find and message me: everybody there, my contacts only,
    /// or nobody (the default).
    #[command(after_help = "Example:\n  peyvand settings interconnect contacts")]
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
    /// Everybody.
    Everybody,
    /// My contacts only.
    Contacts,
    /// Nobody.
    Nobody,
}

#[derive(Debug, Args)]
pub struct SendArgs {
    /// A chat as `chats` prints it (`chat:12`), a phone number, `@username`, or an address on
    /// another messenger (`+98912...@damavand`).
    pub recipient: String,
    /// The text (several words are joined with spaces); not with `--file`.
    #[arg(required_unless_present = "file", conflicts_with = "file", num_args = 1..)]
    pub text: Vec<String>,
    /// The message this one answers.
    #[arg(long, value_parser = parse_number)]
    pub reply_to: Option<i64>,
    /// The client id that makes retries safe (default: a new random one).
    #[arg(long)]
    pub id: Option<String>,
    /// A file to send instead of text.
    #[arg(long, value_name = "PATH")]
    pub file: Option<std::path::PathBuf>,
    /// The file's caption.
    #[arg(long, requires = "file")]
    pub caption: Option<String>,
    /// What the file is: photo, voice, video, audio or file. Without it, the kind is guessed
    /// from the file's extension (photos, videos and audio by their usual extensions; a voice
    /// message only when asked for), and anything else is sent as a file.
    #[arg(long = "as", value_name = "KIND", requires = "file", value_parser = parse_kind)]
    pub kind: Option<peyvand_api::MediaKind>,
}

fn parse_kind(raw: &str) -> Result<peyvand_api::MediaKind, String> {
    peyvand_api::MediaKind::parse(raw.trim()).ok_or_else(|| "one of photo, voice, video, audio, file".to_owned())
}

#[derive(Debug, Args)]
pub struct DownloadArgs {
    /// The chat the message is in: `chat:12`, a phone number, `@username` or an address.
    pub recipient: String,
    /// The message, by its number in the chat.
    #[arg(value_parser = parse_number)]
    pub seq: i64,
    /// Where to write it: a file, or a directory to put it in under its own name (default:
    /// the current directory). An existing file is not overwritten.
    #[arg(long, value_name = "PATH")]
    pub out: Option<std::path::PathBuf>,
    /// The thumbnail of a photo or video instead of the file.
    #[arg(long)]
    pub thumbnail: bool,
}

#[derive(Debug, Args)]
pub struct ForwardArgs {
    /// Where to forward to: a chat (`chat:12`), a phone number, `@username` or an address.
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
    /// The chat: as `chats` prints it (`chat:12`), or the person it is with.
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
