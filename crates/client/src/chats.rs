//! Chats and messages: `/v1/chats*` and `/v1/search`.

use peyvand_api::{
    Chat, ChatList, Content, EditMessage, HistoryQuery, Message, MessageList, OpenDirect, Receipt, SearchQuery,
    SearchResults, SendMessage, SetReaction,
};
use reqwest::Method;

use crate::{Client, ClientError};

/// The answer to a send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    pub message: Message,
    /// `true` when this request stored the message (201), `false` when an earlier send with
    /// the same client id had already stored it (200).
    pub created: bool,
}

impl Client {
    /// `GET /v1/chats`: the chat list, most recently active first.
    pub async fn chats(&self) -> Result<ChatList, ClientError> {
        Self::json(self.request(Method::GET, "v1/chats")?).await
    }

    /// `POST /v1/chats/direct`: the direct chat with a person, made if it does not exist yet.
    pub async fn open_direct(&self, user_id: i64) -> Result<Chat, ClientError> {
        let body = OpenDirect { user_id: Some(user_id), address: None };
        Self::json(self.request(Method::POST, "v1/chats/direct")?.json(&body)).await
    }

    /// `POST /v1/chats/direct` by address: the chat with a person on another messenger
    /// (`PHONE@PROVIDER-ID`).
    pub async fn open_address(&self, address: &str) -> Result<Chat, ClientError> {
        let body = OpenDirect { user_id: None, address: Some(address.to_owned()) };
        Self::json(self.request(Method::POST, "v1/chats/direct")?.json(&body)).await
    }

    /// `GET /v1/chats/{id}`
    pub async fn chat(&self, chat_id: i64) -> Result<Chat, ClientError> {
        Self::json(self.request(Method::GET, &format!("v1/chats/{chat_id}"))?).await
    }

    /// `GET /v1/chats/{id}/messages`: a page of history, in ascending `seq` order.
    pub async fn history(&self, chat_id: i64, query: &HistoryQuery) -> Result<MessageList, ClientError> {
        let builder = self.request(Method::GET, &format!("v1/chats/{chat_id}/messages"))?.query(query);
        Self::json(builder).await
    }

    /// `GET /v1/chats/{id}/messages/{seq}`: one message.
    pub async fn message(&self, chat_id: i64, seq: i64) -> Result<Message, ClientError> {
        Self::json(self.request(Method::GET, &format!("v1/chats/{chat_id}/messages/{seq}"))?).await
    }

    /// `POST /v1/chats/{id}/messages`: sends a message; retrying with the same client id is
    /// safe and answers with the message stored the first time.
    pub async fn send(&self, chat_id: i64, message: &SendMessage) -> Result<Sent, ClientError> {
        let builder = self.request(Method::POST, &format!("v1/chats/{chat_id}/messages"))?.json(message);
        let (status, message) = Self::fetch(builder).await?;
        Ok(Sent { message, created: status == 201 })
    }

    /// Sends a text message with a fresh client id.
    pub async fn send_text(&self, chat_id: i64, text: &str) -> Result<Sent, ClientError> {
        let message = SendMessage {
            client_id: crate::new_client_id(),
            content: Some(Content::Text { text: text.to_owned() }),
            reply_to: None,
            forward: None,
            media: None,
        };
        self.send(chat_id, &message).await
    }

    /// `PATCH /v1/chats/{id}/messages/{seq}`: replaces a message's content.
    pub async fn edit(&self, chat_id: i64, seq: i64, content: Content) -> Result<Message, ClientError> {
        let builder = self.request(Method::PATCH, &format!("v1/chats/{chat_id}/messages/{seq}"))?;
        Self::json(builder.json(&EditMessage { content })).await
    }

    /// `DELETE /v1/chats/{id}/messages/{seq}?for_everyone=`
    pub async fn delete_message(&self, chat_id: i64, seq: i64, for_everyone: bool) -> Result<(), ClientError> {
        let builder = self.request(Method::DELETE, &format!("v1/chats/{chat_id}/messages/{seq}"))?;
        Self::empty(builder.query(&[("for_everyone", for_everyone)])).await
    }

    /// `PUT /v1/chats/{id}/messages/{seq}/reaction`: sets (or replaces) my reaction.
    pub async fn react(&self, chat_id: i64, seq: i64, emoji: &str) -> Result<Message, ClientError> {
        let builder = self.request(Method::PUT, &format!("v1/chats/{chat_id}/messages/{seq}/reaction"))?;
        Self::json(builder.json(&SetReaction { emoji: emoji.to_owned() })).await
    }

    /// `DELETE /v1/chats/{id}/messages/{seq}/reaction`: removes my reaction.
    pub async fn unreact(&self, chat_id: i64, seq: i64) -> Result<Message, ClientError> {
        Self::json(self.request(Method::DELETE, &format!("v1/chats/{chat_id}/messages/{seq}/reaction"))?).await
    }

    /// `POST /v1/chats/{id}/read`: I have read the chat up to `up_to`.
    pub async fn mark_read(&self, chat_id: i64, up_to: i64) -> Result<(), ClientError> {
        let builder = self.request(Method::POST, &format!("v1/chats/{chat_id}/read"))?;
        Self::empty(builder.json(&Receipt { up_to })).await
    }

    /// `POST /v1/chats/{id}/delivered`: this device has received the chat up to `up_to`.
    pub async fn mark_delivered(&self, chat_id: i64, up_to: i64) -> Result<(), ClientError> {
        let builder = self.request(Method::POST, &format!("v1/chats/{chat_id}/delivered"))?;
        Self::empty(builder.json(&Receipt { up_to })).await
    }

    /// `POST /v1/chats/{id}/typing`: I am typing (the others see it for a few seconds).
    pub async fn typing(&self, chat_id: i64) -> Result<(), ClientError> {
        Self::empty(self.request(Method::POST, &format!("v1/chats/{chat_id}/typing"))?).await
    }

    /// `GET /v1/search?q=&limit=`: chats and messages matching a query.
    pub async fn search(&self, query: &str, limit: Option<u32>) -> Result<SearchResults, ClientError> {
        let query = SearchQuery { q: query.to_owned(), limit };
        Self::json(self.request(Method::GET, "v1/search")?.query(&query)).await
    }
}
