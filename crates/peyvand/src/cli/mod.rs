//! The client commands of `peyvand`: a person's messenger on the command line, speaking the
//! client API through `peyvand-client`, with the session saved per server.

mod account;
mod args;
mod auth;
mod failure;
mod format;
mod input;
mod listen;
mod media;
mod messages;
mod output;
mod people;
mod recipient;
mod session;

use std::io;

use anyhow::Result;
use peyvand_client::Client;

pub use args::{ClientCommand, GlobalArgs, OutputArgs, OutputFormat};
use failure::NotSignedIn;
pub use failure::{EXIT_STATUS_HELP, command_line_failure, report};
use output::Output;
use session::{Session, SessionStore};

/// What every command works with: the server, the saved session, and where output goes.
#[derive(Debug)]
pub struct Context {
    out: Output,
    store: SessionStore,
    session: Option<Session>,
    /// Signed in with the saved session's token, when there is one.
    client: Client,
}

impl Context {
    fn new(global: &GlobalArgs) -> Result<Self> {
        let mut client = Client::new(&global.server)?;
        let store = SessionStore::for_server(client.base_url().as_str())?;
        let session = store.load()?;
        if let Some(session) = &session {
            client.set_token(Some(session.token.clone()));
        }
        Ok(Self { out: Output::new(global.output.output), store, session, client })
    }

    fn server(&self) -> &str {
        self.client.base_url().as_str()
    }

    /// The saved session, or an error telling how to get one.
    fn session(&self) -> Result<&Session> {
        match &self.session {
            Some(session) => Ok(session),
            None => Err(NotSignedIn { server: self.server().to_owned() }.into()),
        }
    }

    /// The signed-in client.
    fn client(&self) -> Result<&Client> {
        self.session()?;
        Ok(&self.client)
    }

    /// Forgets the saved session, after the server has revoked it.
    fn forget_session(&mut self) -> Result<()> {
        self.store.remove()?;
        self.session = None;
        self.client.set_token(None);
        Ok(())
    }
}

/// Runs one client command.
pub async fn run(global: GlobalArgs, command: ClientCommand) -> Result<()> {
    let mut cx = Context::new(&global)?;
    match command {
        ClientCommand::Login(args) => auth::login(&mut cx, args).await,
        ClientCommand::Logout => auth::logout(&mut cx).await,
        ClientCommand::Whoami => auth::whoami(&cx).await,
        ClientCommand::Profile(command) => account::profile(&cx, command).await,
        ClientCommand::Pin(command) => account::pin(&cx, command).await,
        ClientCommand::Devices { action } => account::devices(&mut cx, action).await,
        ClientCommand::Account(command) => account::account(&mut cx, command).await,
        ClientCommand::Settings { action } => account::settings(&cx, action).await,
        ClientCommand::Contacts { action } => people::contacts(&cx, action).await,
        ClientCommand::Lookup { phone } => people::lookup(&cx, &phone).await,
        ClientCommand::Block { user } => people::block(&cx, &user, true).await,
        ClientCommand::Unblock { user } => people::block(&cx, &user, false).await,
        ClientCommand::Blocks => people::blocks(&cx).await,
        ClientCommand::Report { user, reason } => people::report(&cx, &user, &reason).await,
        ClientCommand::Chats => messages::chats(&cx).await,
        ClientCommand::Send(args) if args.file.is_some() => media::send_file(&cx, args).await,
        ClientCommand::Send(args) => messages::send(&cx, args).await,
        ClientCommand::Download(args) => media::download(&cx, args).await,
        ClientCommand::Forward(args) => messages::forward(&cx, args).await,
        ClientCommand::History(args) => messages::history(&cx, args).await,
        ClientCommand::Edit { recipient, seq, text } => messages::edit(&cx, &recipient, seq, text.join(" ")).await,
        ClientCommand::Delete { recipient, seq, for_everyone } => {
            messages::delete(&cx, &recipient, seq, for_everyone).await
        }
        ClientCommand::React { recipient, seq, emoji, remove } => {
            messages::react(&cx, &recipient, seq, if remove { None } else { emoji }).await
        }
        ClientCommand::Read { recipient, up_to } => messages::read(&cx, &recipient, up_to).await,
        ClientCommand::Typing { recipient } => messages::typing(&cx, &recipient).await,
        ClientCommand::Search { query, limit } => messages::search(&cx, &query, limit).await,
        ClientCommand::Listen { after } => listen::listen(&cx, after).await,
    }
}

/// Whether the error is stdout having been closed (`peyvand listen | head`): not a failure.
pub fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| cause.downcast_ref::<io::Error>().is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe))
}
