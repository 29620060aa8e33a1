//! Group commit for sends: the messages waiting to be stored go into PostgreSQL together, in
//! one transaction with one WAL flush, instead of a transaction (and a flush, and a wait for
//! the previous one's row locks) each. This is what lets PostgreSQL carry the send rate; see
//! docs/BENCHMARKS.md.
//!
//! A few workers each take what has queued up (at most [`MAX_BATCH`] sends) and store it:
//!
//! 1. lock every chat of the batch, then the senders' member rows, then every stream that
//!    will take an update, each set in ascending order: the order every other write takes its
//!    locks in (chat rows before member rows before streams), so batches wait for each other
//!    and for single writes but never deadlock with them;
//! 2. store each message (skipping one whose client id is already stored: the chat's lock
//!    makes that check reliable), then every stored message's updates in one statement;
//! 3. commit, then answer every send.
//!
//! If the batch fails as a whole (a deadlock nonetheless, a lost connection), each of its
//! sends is tried again on its own, with the single-send path and its retries.

use std::collections::HashMap;

use peyvand_api::{Event, Message, Update};
use tokio::sync::{Mutex, mpsc, oneshot};
use tokio_postgres::types::ToSql;

use super::chats::{append_message, earlier_send};
use super::updates::{lock_streams, push_at};
use super::{Attempt, Failure, PgStore, is_retryable, retry};
use crate::{NewMessage, StoreError, StoreResult};

/// The most sends one transaction takes.
const MAX_BATCH: usize = 256;
/// Sends waiting for a batch, at most: past that a send waits for a place (back-pressure on
/// its request), nothing is dropped.
const QUEUE: usize = 16_384;

pub(super) type Stored = (Message, bool, Vec<(i64, Update)>);

/// A send waiting for its batch.
pub(super) struct Job {
    pub new: NewMessage,
    pub notify: Vec<i64>,
    pub reply: oneshot::Sender<StoreResult<Stored>>,
}

/// What became of one send inside a batch.
enum Outcome {
    Stored(Box<Message>, Vec<(i64, Update)>),
    /// Its client id was stored already: answered after the commit with that message.
    Duplicate,
    NotFound,
}

/// Starts `workers` batch workers on `store` (whose own queue must be `None`) and returns the
/// queue they take sends from. The workers stop when every sender of the queue is gone.
pub(super) fn start(store: PgStore, workers: usize) -> mpsc::Sender<Job> {
    let (tx, rx) = mpsc::channel(QUEUE);
    let rx = std::sync::Arc::new(Mutex::new(rx));
    for _ in 0..workers.max(1) {
        let (store, rx) = (store.clone(), rx.clone());
        tokio::spawn(async move {
            loop {
                let jobs = {
                    let mut rx = rx.lock().await;
                    let Some(first) = rx.recv().await else { return };
                    let mut jobs = vec![first];
                    while jobs.len() < MAX_BATCH
                        && let Ok(next) = rx.try_recv()
                    {
                        jobs.push(next);
                    }
                    jobs
                };
                // In a task of its own, so that a panic (a bug) costs its batch, whose sends
                // are answered `unavailable` when their replies drop, and not the worker.
                let batch = store.clone();
                if let Err(e) = tokio::spawn(async move { run(&batch, jobs).await }).await {
                    tracing::error!(error = %e, "a batch of sends failed unexpectedly");
                }
            }
        });
    }
    tx
}

async fn run(store: &PgStore, jobs: Vec<Job>) {
    match store_batch(store, &jobs).await {
        Ok(outcomes) => {
            for (job, outcome) in jobs.into_iter().zip(outcomes) {
                let answer = match outcome {
                    Outcome::Stored(message, updates) => Ok((*message, true, updates)),
                    Outcome::NotFound => Err(StoreError::NotFound),
                    Outcome::Duplicate => match store.client().await {
                        Ok(client) => earlier_send(&client, &job.new).await.map_err(StoreError::from),
                        Err(e) => Err(e.into()),
                    },
                };
                let _ = job.reply.send(answer);
            }
        }
        Err(failure) => match failure {
            // A deadlock or serialization failure: the sends may well succeed on their own.
            Failure::Db(e) if is_retryable(&e) => one_by_one(store, jobs, &e.to_string()).await,
            failure => match StoreError::from(failure) {
                // The database cannot be reached: every send would wait for the same outage
                // in turn. Answer them all now; a retry with the same client id is safe.
                StoreError::Unavailable(why) => {
                    for job in jobs {
                        let _ = job.reply.send(Err(StoreError::Unavailable(why.clone())));
                    }
                }
                other => one_by_one(store, jobs, &other.to_string()).await,
            },
        },
    }
}

/// Stores the sends of a failed batch each on its own, at once, with the single-send retries.
async fn one_by_one(store: &PgStore, jobs: Vec<Job>, why: &str) {
    tracing::debug!(error = why, sends = jobs.len(), "a batch of sends failed; storing them one by one");
    let each = jobs.into_iter().map(|job| async move {
        let answer = retry(|| append_message(store, &job.new, &job.notify)).await;
        let _ = job.reply.send(answer);
    });
    futures_util::future::join_all(each).await;
}
fn sorted_unique(mut items: Vec<i64>) -> Vec<i64> {
    items.sort_unstable();
    items.dedup();
    items
}

async fn store_batch(store: &PgStore, jobs: &[Job]) -> Attempt<Vec<Outcome>> {
    let mut client = store.client().await?;
    let tx = client.transaction().await?;

    // The statements of a batch are pipelined: sent one after the other without waiting for
    // each answer, and run by PostgreSQL in the order sent, so a batch costs a handful of
    // round trips however many sends it holds.
    let chats = sorted_unique(jobs.iter().map(|j| j.new.chat_id).collect());
    let mut senders: Vec<(i64, i64)> = jobs.iter().map(|j| (j.new.chat_id, j.new.sender_id)).collect();
    senders.sort_unstable();
    senders.dedup();
    let (member_chats, member_users): (Vec<i64>, Vec<i64>) = senders.into_iter().unzip();
    let streams = sorted_unique(jobs.iter().flat_map(|j| j.notify.iter().copied()).collect());
    let lock_chats = tx.prepare_cached("SELECT id FROM chats WHERE id = ANY($1) ORDER BY id FOR UPDATE").await?;
    let lock_members = tx
        .prepare_cached(
            "SELECT 1 FROM members m JOIN unnest($1::bigint[], $2::bigint[]) AS s (chat_id, user_id) \
             ON m.chat_id = s.chat_id AND m.user_id = s.user_id \
             ORDER BY m.chat_id, m.user_id FOR UPDATE OF m",
        )
        .await?;
    // With the chat locked, a committed message with this client id is visible to the check,
    // and so is one stored earlier in this batch.
    let insert = tx
        .prepare_cached(
            "WITH chat AS ( \
                 UPDATE chats SET last_seq = last_seq + 1, updated_at = $8 WHERE id = $1 AND NOT EXISTS \
                   (SELECT 1 FROM messages WHERE chat_id = $1 AND sender_id = $2 AND client_id = $3) \
                 RETURNING last_seq \
             ), message AS ( \
                 INSERT INTO messages \
                   (chat_id, seq, sender_id, client_id, content, folded, reply_to, forwarded_from, sent_at, delivery) \
                 SELECT $1, last_seq, $2, $3, $4, $5, $6, $7, $8, $9 FROM chat RETURNING seq \
             ), sender AS ( \
                 UPDATE members SET read_up_to = message.seq, delivered_up_to = message.seq FROM message \
                 WHERE chat_id = $1 AND user_id = $2 \
             ) SELECT EXISTS (SELECT 1 FROM chats WHERE id = $1), (SELECT seq FROM message), \
                 (SELECT remote_address FROM users WHERE id = $2)",
        )
        .await?;
    // Chats, then members, then streams: the order of every other write's locks.
    tokio::try_join!(
        async { tx.query(&lock_chats, &[&chats]).await.map_err(Failure::from) },
        async { tx.query(&lock_members, &[&member_chats, &member_users]).await.map_err(Failure::from) },
        lock_streams(&tx, &streams),
    )?;

    let columns = jobs
        .iter()
        .map(|Job { new, .. }| {
            let content = serde_json::to_string(&new.content)?;
            let forwarded = new.forwarded_from.as_ref().map(serde_json::to_string).transpose()?;
            let delivery = new.delivery.as_ref().map(serde_json::to_string).transpose()?;
            Ok((content, forwarded, delivery))
        })
        .collect::<Attempt<Vec<_>>>()?;
    let (db, insert) = (&tx, &insert);
    let inserts = jobs.iter().zip(&columns).map(|(Job { new, .. }, (content, forwarded, delivery))| async move {
        let params: [&(dyn ToSql + Sync); 9] = [
            &new.chat_id,
            &new.sender_id,
            &new.client_id,
            content,
            &new.folded,
            &new.reply_to,
            forwarded,
            &new.sent_at,
            delivery,
        ];
        db.query_one(insert, &params).await
    });
    let rows = futures_util::future::try_join_all(inserts).await?;

    let mut outcomes = Vec::with_capacity(jobs.len());
    let (mut entries, mut events, mut at) = (Vec::new(), Vec::new(), Vec::new());
    for (Job { new, notify, .. }, row) in jobs.iter().zip(rows) {
        let (chat_exists, seq): (bool, Option<i64>) = (row.try_get(0)?, row.try_get(1)?);
        // A sender on another messenger (a stand-in, in a room hosted here) reads back with
        // their address.
        let sender_address: Option<String> = row.try_get(2)?;
        outcomes.push(match (chat_exists, seq) {
            (false, _) => Outcome::NotFound,
            (true, None) => Outcome::Duplicate,
            (true, Some(seq)) => {
                let message = Message { sender_address, ..new.stored(seq) };
                entries.extend(notify.iter().map(|&user| (user, events.len())));
                events.push(Event::MessageNew { message: message.clone() });
                at.push(new.sent_at);
                Outcome::Stored(Box::new(message), Vec::new())
            }
        });
    }
    // Every stored message's updates, in one statement.
    let appended = push_at(&tx, &entries, &events, &at).await?;
    tx.commit().await?;
    let by_message: HashMap<(i64, i64), usize> = outcomes
        .iter()
        .enumerate()
        .filter_map(|(i, o)| match o {
            Outcome::Stored(m, _) => Some(((m.chat_id, m.seq), i)),
            _ => None,
        })
        .collect();
    for (user, update) in appended {
        let Event::MessageNew { message } = &update.event else { continue };
        if let Some(&i) = by_message.get(&(message.chat_id, message.seq))
            && let Outcome::Stored(_, updates) = &mut outcomes[i]
        {
            updates.push((user, update));
        }
    }
    Ok(outcomes)
}
