//! Each person's update stream.

use async_trait::async_trait;
use deadpool_postgres::GenericClient;
use peyvand_api::{Event, Update};

use super::chats::{MESSAGE_COLUMNS, message_from_row};
use super::{Attempt, PgStore, big, json, once, retry};
use crate::{StoreError, StoreResult, UpdateStore};

/// Appends updates to streams in one statement, inside the caller's transaction.
///
/// `entries` pairs each person with the index of their event in `events`, in the order the
/// updates are appended (a person may appear more than once). The streams are locked in
/// ascending user id before any is changed, so that concurrent writes touching the same
/// people cannot deadlock. A closed stream (a deleted account) takes nothing; the updates of
/// the others come back, in the order of `entries`, to be published.
pub(super) async fn push(
    tx: &impl GenericClient,
    entries: &[(i64, usize)],
    events: &[Event],
    now: i64,
) -> Attempt<Vec<(i64, Update)>> {
    push_at(tx, entries, events, &vec![now; events.len()]).await
}

/// [`push`], with each event's own time (`at[i]` for `events[i]`).
pub(super) async fn push_at(
    tx: &impl GenericClient,
    entries: &[(i64, usize)],
    events: &[Event],
    at: &[i64],
) -> Attempt<Vec<(i64, Update)>> {
    if at.len() != events.len() {
        return Err(StoreError::Backend("each event needs its time".into()).into());
    }
    if entries.is_empty() {
        return Ok(Vec::new());
    }
    let users: Vec<i64> = entries.iter().map(|&(user, _)| user).collect();
    let indexes = entries
        .iter()
        .map(|&(_, event)| i32::try_from(event))
        .collect::<Result<Vec<i32>, _>>()
        .map_err(|_| StoreError::Backend("too many distinct events in one write".into()))?;
    // A new message is stored by reference to its row in `messages` (no JSON), anything else
    // as JSON: the three arrays are indexed like `events`.
    let mut raw: Vec<Option<String>> = Vec::with_capacity(events.len());
    let mut chat_ids: Vec<Option<i64>> = Vec::with_capacity(events.len());
    let mut seqs: Vec<Option<i64>> = Vec::with_capacity(events.len());
    for event in events {
        match event {
            Event::MessageNew { message } => {
                raw.push(None);
                chat_ids.push(Some(message.chat_id));
                seqs.push(Some(message.seq));
            }
            other => {
                raw.push(Some(serde_json::to_string(other)?));
                chat_ids.push(None);
                seqs.push(None);
            }
        }
    }
    // `wanted`: the entries, numbered; `counts`: how many updates each stream takes; `locked`:
    // the open streams among them, locked in ascending user id; `bumped`: their cursors raised
    // by that many; `numbered`: each entry's cursor; `stored`: the updates written.
    let statement = tx
        .prepare_cached(
            "WITH wanted AS ( \
                 SELECT user_id, event, ord FROM unnest($1::bigint[], $2::int[]) WITH ORDINALITY AS w (user_id, event, ord) \
             ), counts AS ( \
                 SELECT user_id, count(*) AS n FROM wanted GROUP BY user_id \
             ), locked AS ( \
                 SELECT s.user_id, c.n FROM streams s JOIN counts c ON c.user_id = s.user_id \
                 WHERE NOT s.closed ORDER BY s.user_id FOR UPDATE OF s \
             ), bumped AS ( \
                 UPDATE streams s SET cursor = s.cursor + l.n FROM locked l WHERE s.user_id = l.user_id \
                 RETURNING s.user_id, s.cursor - l.n AS base \
             ), numbered AS ( \
                 SELECT w.ord, w.user_id, w.event, \
                        b.base + row_number() OVER (PARTITION BY w.user_id ORDER BY w.ord) AS cursor \
                 FROM wanted w JOIN bumped b ON b.user_id = w.user_id \
             ), stored AS ( \
                 INSERT INTO updates (user_id, cursor, at, event, chat_id, seq) \
                 SELECT user_id, cursor, ($3::bigint[])[event + 1], ($4::text[])[event + 1], \
                        ($5::bigint[])[event + 1], ($6::bigint[])[event + 1] FROM numbered \
             ) \
             SELECT ord, cursor FROM numbered ORDER BY ord",
        )
        .await?;
    let rows = tx.query(&statement, &[&users, &indexes, &at, &raw, &chat_ids, &seqs]).await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let (ord, cursor): (i64, i64) = (row.try_get(0)?, row.try_get(1)?);
        let (user, event) = usize::try_from(ord - 1)
            .ok()
            .and_then(|i| entries.get(i))
            .ok_or_else(|| StoreError::Backend(format!("an appended update has an unknown position {ord}")))?;
        out.push((*user, Update { cursor: Some(cursor), at: at[*event], event: events[*event].clone() }));
    }
    Ok(out)
}

/// Appends the same event to several people's streams; see [`push`].
pub(super) async fn push_all(
    tx: &impl GenericClient,
    users: &[i64],
    event: Event,
    now: i64,
) -> Attempt<Vec<(i64, Update)>> {
    let entries: Vec<(i64, usize)> = users.iter().map(|&user| (user, 0)).collect();
    push(tx, &entries, &[event], now).await
}

/// Locks people's streams in ascending user id, inside the caller's transaction, for a write
/// that must read something only once no other write can still append to those streams
/// before its own updates. Rows already locked by the transaction are not waited for.
pub(super) async fn lock_streams(tx: &impl GenericClient, users: &[i64]) -> Attempt<()> {
    let statement =
        tx.prepare_cached("SELECT user_id FROM streams WHERE user_id = ANY($1) ORDER BY user_id FOR UPDATE").await?;
    tx.query(&statement, &[&users]).await?;
    Ok(())
}

#[async_trait]
impl UpdateStore for PgStore {
    async fn updates_after(&self, user_id: i64, after: i64, limit: u32) -> StoreResult<Vec<Update>> {
        once(async {
            let client = self.client().await?;
            // One statement, so the stream's bounds and its updates come from one snapshot: a
            // prune committing in between cannot make updates vanish past a bound just checked.
            let statement = client
                .prepare_cached(&format!(
                    "SELECT s.pruned_through, s.cursor, u.cursor, u.at, u.event, {MESSAGE_COLUMNS} FROM streams s \
                         LEFT JOIN LATERAL ( \
                             SELECT cursor, at, event, chat_id, seq FROM updates \
                             WHERE user_id = s.user_id AND cursor > $2 ORDER BY cursor LIMIT $3 \
                         ) u ON true \
                         LEFT JOIN messages m ON u.event IS NULL AND m.chat_id = u.chat_id AND m.seq = u.seq \
                         WHERE s.user_id = $1 ORDER BY u.cursor"
                ))
                .await?;
            let rows = client.query(&statement, &[&user_id, &after, &big(limit)]).await?;
            let (pruned, newest): (i64, i64) = match rows.first() {
                Some(row) => (row.try_get(0)?, row.try_get(1)?),
                None => (0, 0),
            };
            if after < pruned {
                return Err(StoreError::CursorTooOld { oldest_kept: pruned }.into());
            }
            if after > newest {
                return Err(StoreError::CursorAhead { newest }.into());
            }
            let mut out = Vec::with_capacity(rows.len());
            for row in &rows {
                // A stream with nothing after `after` still gives its one row, without an update.
                if let Some(cursor) = row.try_get::<_, Option<i64>>(2)? {
                    // A new message is read as it is now, from its `messages` columns.
                    let event = match row.try_get::<_, Option<&str>>(4)? {
                        Some(raw) => json(raw)?,
                        None if row.try_get::<_, Option<i64>>(5)?.is_some() => {
                            Event::MessageNew { message: message_from_row(row, 5)? }
                        }
                        None => {
                            return Err(StoreError::Backend(format!(
                                "update {cursor} refers to a message that is not stored"
                            ))
                            .into());
                        }
                    };
                    out.push(Update { cursor: Some(cursor), at: row.try_get(3)?, event });
                }
            }
            Ok(out)
        })
        .await
    }

    async fn cursor(&self, user_id: i64) -> StoreResult<i64> {
        once(async {
            let client = self.client().await?;
            let statement = client.prepare_cached("SELECT cursor FROM streams WHERE user_id = $1").await?;
            let row = client.query_opt(&statement, &[&user_id]).await?;
            Ok(row.map(|r| r.try_get(0)).transpose()?.unwrap_or(0))
        })
        .await
    }

    async fn prune_updates(&self, before: i64, keep_last: i64) -> StoreResult<u64> {
        retry(|| prune(self, before, keep_last)).await
    }

    async fn append_update(&self, user_id: i64, event: Event, now: i64) -> StoreResult<Update> {
        retry(|| async {
            let mut client = self.client().await?;
            let tx = client.transaction().await?;
            let mut pushed = push(&tx, &[(user_id, 0)], std::slice::from_ref(&event), now).await?;
            tx.commit().await?;
            // A closed stream takes nothing: the update goes out without a cursor, as in the
            // embedded backend.
            Ok(pushed.pop().map(|(_, update)| update).unwrap_or(Update { cursor: None, at: now, event: event.clone() }))
        })
        .await
    }
}

/// Drops old updates and moves the pruning marks of the streams that lost some.
///
/// A stream's mark is the cursor just before its oldest kept update, or its newest cursor
/// when it keeps none; only the streams this run pruned can have a new mark, so only their
/// rows are written (locked in ascending user id, like every write to `streams`).
async fn prune(store: &PgStore, before: i64, keep_last: i64) -> Attempt<u64> {
    let mut client = store.client().await?;
    let tx = client.transaction().await?;
    // Every node prunes on the same schedule; one at a time is enough, the others skip.
    let solo = tx
        .prepare_cached("SELECT pg_try_advisory_xact_lock(hashtext('peyvand-prune'), hashtext(current_schema()))")
        .await?;
    if !tx.query_one(&solo, &[]).await?.try_get::<_, bool>(0)? {
        return Ok(0);
    }
    let pruned = tx
        .prepare_cached(
            "WITH gone AS ( \
                 DELETE FROM updates u USING streams s \
                 WHERE s.user_id = u.user_id AND u.at < $1 AND u.cursor <= s.cursor - $2 \
                 RETURNING u.user_id \
             ) SELECT user_id, count(*) FROM gone GROUP BY user_id",
        )
        .await?;
    let mut users = Vec::new();
    let mut deleted = 0u64;
    for row in tx.query(&pruned, &[&before, &keep_last]).await? {
        users.push(row.try_get::<_, i64>(0)?);
        deleted += u64::try_from(row.try_get::<_, i64>(1)?).unwrap_or(0);
    }
    if !users.is_empty() {
        let mark = tx
            .prepare_cached(
                "UPDATE streams s SET pruned_through = COALESCE( \
                     (SELECT min(cursor) - 1 FROM updates u WHERE u.user_id = s.user_id), s.cursor) \
                 FROM (SELECT user_id FROM streams WHERE user_id = ANY($1) ORDER BY user_id FOR UPDATE) l \
                 WHERE s.user_id = l.user_id",
            )
            .await?;
        tx.execute(&mark, &[&users]).await?;
    }
    tx.commit().await?;
    Ok(deleted)
}
