//! Uploads, media items and blobs.

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, Row, params};

use super::SqliteStore;
use crate::{BlobRecord, BlobsPut, MediaItemRecord, MediaStore, StoreError, StoreResult, UploadPiece, UploadRecord};

const UPLOAD_COLUMNS: &str = "id, owner, kind, length, \"offset\", metadata, created_at, expires_at";

fn upload_from_row(r: &Row<'_>) -> rusqlite::Result<UploadRecord> {
    Ok(UploadRecord {
        id: r.get(0)?,
        owner: r.get(1)?,
        kind: r.get(2)?,
        length: r.get(3)?,
        offset: r.get(4)?,
        metadata: r.get(5)?,
        created_at: r.get(6)?,
        expires_at: r.get(7)?,
    })
}

/// Stores each blob unless one with its hash is stored already (that one is touched instead).
fn put_blobs(conn: &Connection, blobs: Vec<BlobRecord>, now: i64) -> StoreResult<BlobsPut> {
    let mut put = BlobsPut::default();
    for blob in blobs {
        let stored: Option<String> = conn
            .prepare_cached("UPDATE blobs SET touched_at = max(touched_at, ?2) WHERE sha256 = ?1 RETURNING key")?
            .query_row(params![blob.sha256, now], |r| r.get(0))
            .optional()?;
        match stored {
            Some(key) => {
                if key != blob.key {
                    put.redundant.push(blob.key);
                }
                put.keys.push(key);
            }
            None => {
                conn.prepare_cached("INSERT INTO blobs (sha256, key, size, touched_at) VALUES (?1, ?2, ?3, ?4)")?
                    .execute(params![blob.sha256, blob.key, blob.size, now])?;
                put.keys.push(blob.key);
            }
        }
    }
    Ok(put)
}

fn remove_upload(conn: &Connection, id: &str) -> StoreResult<Vec<String>> {
    let keys: Vec<String> = conn
        .prepare_cached("DELETE FROM upload_pieces WHERE upload_id = ?1 RETURNING key")?
        .query_map([id], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    if conn.prepare_cached("DELETE FROM uploads WHERE id = ?1")?.execute([id])? == 0 {
        return Err(StoreError::NotFound);
    }
    Ok(keys)
}

#[async_trait]
impl MediaStore for SqliteStore {
    async fn create_upload(&self, upload: UploadRecord) -> StoreResult<()> {
        self.write(move |conn| {
            conn.prepare_cached(&format!(
                "INSERT INTO uploads ({UPLOAD_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
            ))?
            .execute(params![
                upload.id,
                upload.owner,
                upload.kind,
                upload.length,
                upload.offset,
                upload.metadata,
                upload.created_at,
                upload.expires_at
            ])?;
            Ok(())
        })
        .await
    }

    async fn upload(&self, id: &str) -> StoreResult<Option<UploadRecord>> {
        let id = id.to_owned();
        self.read(move |conn| {
            Ok(conn
                .prepare_cached(&format!("SELECT {UPLOAD_COLUMNS} FROM uploads WHERE id = ?1"))?
                .query_row([id], upload_from_row)
                .optional()?)
        })
        .await
    }

    async fn add_upload_piece(&self, id: &str, start: i64, len: i64, key: &str) -> StoreResult<bool> {
        let (id, key) = (id.to_owned(), key.to_owned());
        self.write(move |conn| {
            let moved = conn
                .prepare_cached(
                    "UPDATE uploads SET \"offset\" = ?2 + ?3 WHERE id = ?1 AND \"offset\" = ?2 AND ?2 + ?3 <= length",
                )?
                .execute(params![id, start, len])?;
            if moved == 0 {
                return Ok(false);
            }
            conn.prepare_cached("INSERT INTO upload_pieces (upload_id, start, len, key) VALUES (?1, ?2, ?3, ?4)")?
                .execute(params![id, start, len, key])?;
            Ok(true)
        })
        .await
    }

    async fn upload_pieces(&self, id: &str) -> StoreResult<Vec<UploadPiece>> {
        let id = id.to_owned();
        self.read(move |conn| {
            Ok(conn
                .prepare_cached("SELECT start, len, key FROM upload_pieces WHERE upload_id = ?1 ORDER BY start")?
                .query_map([id], |r| Ok(UploadPiece { start: r.get(0)?, len: r.get(1)?, key: r.get(2)? }))?
                .collect::<Result<_, _>>()?)
        })
        .await
    }

    async fn delete_upload(&self, id: &str) -> StoreResult<Vec<String>> {
        let id = id.to_owned();
        self.write(move |conn| remove_upload(conn, &id)).await
    }

    async fn expired_uploads(&self, now: i64, limit: u32) -> StoreResult<Vec<UploadRecord>> {
        self.read(move |conn| {
            Ok(conn
                .prepare_cached(&format!(
                    "SELECT {UPLOAD_COLUMNS} FROM uploads WHERE expires_at < ?1 ORDER BY expires_at LIMIT ?2"
                ))?
                .query_map(params![now, limit], upload_from_row)?
                .collect::<Result<_, _>>()?)
        })
        .await
    }

    async fn finish_upload(&self, item: MediaItemRecord, blobs: Vec<BlobRecord>, now: i64) -> StoreResult<BlobsPut> {
        self.write(move |conn| {
            remove_upload(conn, &item.id)?;
            let put = put_blobs(conn, blobs, now)?;
            let media = serde_json::to_string(&item.media)?;
            conn.prepare_cached(
                "INSERT INTO media_items (id, owner, media, sha256, thumbnail_sha256, created_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![
                item.id,
                item.owner,
                media,
                item.media.sha256,
                item.media.thumbnail.as_ref().map(|t| &t.sha256),
                item.created_at
            ])?;
            Ok(put)
        })
        .await
    }

    async fn put_blobs(&self, blobs: Vec<BlobRecord>, now: i64) -> StoreResult<BlobsPut> {
        self.write(move |conn| put_blobs(conn, blobs, now)).await
    }

    async fn media_item(&self, id: &str) -> StoreResult<Option<MediaItemRecord>> {
        let id = id.to_owned();
        self.read(move |conn| {
            let row: Option<(String, i64, String, i64)> = conn
                .prepare_cached("SELECT id, owner, media, created_at FROM media_items WHERE id = ?1")?
                .query_row([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
                .optional()?;
            row.map(|(id, owner, media, created_at)| {
                Ok(MediaItemRecord { id, owner, media: serde_json::from_str(&media)?, created_at })
            })
            .transpose()
        })
        .await
    }

    async fn blob(&self, sha256: &str) -> StoreResult<Option<BlobRecord>> {
        let sha256 = sha256.to_owned();
        self.read(move |conn| {
            Ok(conn
                .prepare_cached("SELECT sha256, key, size FROM blobs WHERE sha256 = ?1")?
                .query_row([sha256], |r| Ok(BlobRecord { sha256: r.get(0)?, key: r.get(1)?, size: r.get(2)? }))
                .optional()?)
        })
        .await
    }

    async fn expire_media_items(&self, before: i64) -> StoreResult<u64> {
        self.write(move |conn| Ok(conn.execute("DELETE FROM media_items WHERE created_at < ?1", [before])? as u64))
            .await
    }

    async fn collect_blobs(&self, before: i64, limit: u32) -> StoreResult<Vec<String>> {
        self.write(move |conn| {
            Ok(conn
                .prepare_cached(
                    "DELETE FROM blobs WHERE sha256 IN ( \
                       SELECT b.sha256 FROM blobs b WHERE b.touched_at < ?1 \
                       AND NOT EXISTS (SELECT 1 FROM media_items i WHERE i.sha256 = b.sha256) \
                       AND NOT EXISTS (SELECT 1 FROM media_items i WHERE i.thumbnail_sha256 = b.sha256) \
                       AND NOT EXISTS (SELECT 1 FROM messages m WHERE json_extract(m.content, '$.type') = 'media' \
                                       AND json_extract(m.content, '$.media.sha256') = b.sha256) \
                       AND NOT EXISTS (SELECT 1 FROM messages m WHERE json_extract(m.content, '$.type') = 'media' \
                                       AND json_extract(m.content, '$.media.thumbnail.sha256') = b.sha256) \
                       LIMIT ?2) RETURNING key",
                )?
                .query_map(params![before, limit], |r| r.get(0))?
                .collect::<Result<_, _>>()?)
        })
        .await
    }

    async fn media_link_key(&self, candidate: Vec<u8>) -> StoreResult<Vec<u8>> {
        self.write(move |conn| {
            conn.prepare_cached("INSERT OR IGNORE INTO secrets (name, value) VALUES ('media_links', ?1)")?
                .execute([candidate])?;
            Ok(conn
                .prepare_cached("SELECT value FROM secrets WHERE name = 'media_links'")?
                .query_row([], |r| r.get(0))?)
        })
        .await
    }
}
