//! Sends over each person's own update stream, as `send` client frames, instead of one HTTP
//! request per message: the way a busy client talks to the server.

use std::sync::Arc;
use std::time::Instant;

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use peyvand_api::{ClientFrame, Content, SendMessage};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

use crate::signup::Person;
use crate::tracker::{Tracker, client_id};
use crate::ws::{Seen, Socket, classify};

/// Reads one person's stream until it closes: messages from others count as delivered, and
/// answers to the person's own sends (made on this stream) as acknowledged or failed.
pub async fn read_frames(mut socket: SplitStream<Socket>, me: i64, tracker: Arc<Tracker>) {
    while let Some(Ok(message)) = socket.next().await {
        let Message::Text(text) = message else { continue };
        match classify(&text) {
            Seen::Message { sender_id, client_id } if sender_id != me => tracker.delivered(&client_id, Instant::now()),
            Seen::Sent { request, created: true } => tracker.acked(request, Instant::now()),
            Seen::Sent { created: false, .. } => tracker.failed("retry".into()),
            Seen::Refused { code, .. } => tracker.failed(code.into_owned()),
            _ => {}
        }
    }
}

/// Writes the person's messages (by index) to the stream as `send` frames, several per
/// flush when they queue up.
async fn write_frames(mut sink: SplitSink<Socket, Message>, chat_id: i64, mut due: mpsc::UnboundedReceiver<u64>) {
    while let Some(first) = due.recv().await {
        let mut next = Some(first);
        while let Some(i) = next {
            let frame = ClientFrame::Send {
                request: i,
                chat_id,
                message: SendMessage {
                    client_id: client_id(i),
                    content: Some(Content::Text { text: format!("bench message {i}") }),
                    reply_to: None,
                    forward: None,
                    media: None,
                },
            };
            let Ok(text) = serde_json::to_string(&frame) else { return };
            if sink.feed(Message::Text(text.into())).await.is_err() {
                return;
            }
            next = due.try_recv().ok();
        }
        if sink.flush().await.is_err() {
            return;
        }
    }
}

/// Splits every person's socket into a reader and a writer task. Returns the tasks and, per
/// person, where to put the indexes of the messages they are due to send.
pub fn start(
    sockets: Vec<Socket>,
    people: &[Person],
    chats: &[i64],
    tracker: &Arc<Tracker>,
) -> (Vec<JoinHandle<()>>, Vec<mpsc::UnboundedSender<u64>>) {
    let mut tasks = Vec::with_capacity(2 * sockets.len());
    let mut queues = Vec::with_capacity(sockets.len());
    for (u, (socket, person)) in sockets.into_iter().zip(people).enumerate() {
        let (sink, stream) = socket.split();
        let (queue, due) = mpsc::unbounded_channel();
        tasks.push(tokio::spawn(read_frames(stream, person.id, tracker.clone())));
        tasks.push(tokio::spawn(write_frames(sink, chats[u / 2], due)));
        queues.push(queue);
    }
    (tasks, queues)
}
