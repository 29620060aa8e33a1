//! Uploads, media items and blobs.

use async_trait::async_trait;
use deadpool_postgres::GenericClient;
use tokio_postgres::Row;

use super::{Attempt, PgStore, big, retry};
use crate::{BlobRecord, BlobsPut, MediaItemRecord, MediaStore, StoreError, StoreResult, UploadPiece, UploadRecord};

const UPLOAD_COLUMNS: &str = "id, owner, kind, length, \"offset\", metadata, created_at, expires_at";

fn upload_from_row(r: &Row) -> Attempt<UploadRecord> {
    Ok(UploadRecord {
        id: r.try_get(0)?,
        owner: r.try_get(1)?,
        kind: r.try_get(2)?,
        length: r.try_get(3)?,
        offset: r.try_get(4)?,
        metadata: r.try_get(5)?,
        created_at: r.try_get(6)?,
        expires_at: r.try_get(7)?,
    })
}

/// Stores each blob unless one with its hash is stored already (that one is touched instead):
/// the upsert's row lock decides between two writes of the same bytes.
async fn put_blobs(db: &impl GenericClient, blobs: Vec<BlobRecord>, now: i64) -> Attempt<BlobsPut> {
    let statement = db
        .prepare_cached(
            "INSERT INTO blobs (sha256, key, size, touched_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (sha256) DO UPDATE SET touched_at = GREATEST(blobs.touched_at, excluded.touched_at) \
             RETURNING key",
        )
        .await?;
    let mut put = BlobsPut::default();
    for blob in blobs {
        let key: String = db.query_one(&statement, &[&blob.sha256, &blob.key, &blob.size, &now]).await?.try_get(0)?;
        if key != blob.key {
            put.redundant.push(blob.key);
        }
        put.keys.push(key);
    }
    Ok(put)
}

async fn remove_upload(db: &impl GenericClient, id: &str) -> Attempt<Vec<String>> {
    let statement = db.prepare_cached("DELETE FROM uploads WHERE id = $1").await?;
    if db.execute(&statement, &[&id]).await? == 0 {
        return Err(StoreError::NotFound.into());
    }
    let statement = db.prepare_cached("DELETE FROM upload_pieces WHERE upload_id = $1 RETURNING key").await?;
    db.query(&statement, &[&id]).await?.iter().map(|r| Ok(r.try_get(0)?)).collect()
}

async fn finish_upload(store: &PgStore, item: &MediaItemRecord, blobs: &[BlobRecord], now: i64) -> Attempt<BlobsPut> {
    let mut client = store.client().await?;
    let tx = client.transaction().await?;
    remove_upload(&tx, &item.id).await?;
    let put = put_blobs(&tx, blobs.to_vec(), now).await?;
    let media = serde_json::to_string(&item.media)?;
    let statement = tx
        .prepare_cached(
            "INSERT INTO media_items (id, owner, media, sha256, thumbnail_sha256, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .await?;
    let thumbnail = item.media.thumbnail.as_ref().map(|t| t.sha256.clone());
    tx.execute(&statement, &[&item.id, &item.owner, &media, &item.media.sha256, &thumbnail, &item.created_at]).await?;
    tx.commit().await?;
    Ok(put)
}

#[async_trait]
impl MediaStore for PgStore {
    async fn create_upload(&self, upload: UploadRecord) -> StoreResult<()> {
        retry(|| async {
            let client = self.client().await?;
            let statement = client
                .prepare_cached(&format!(
                    "INSERT INTO uploads ({UPLOAD_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
                     ON CONFLICT (id) DO NOTHING"
                ))
                .await?;
            client
                .execute(
                    &statement,
                    &[
                        &upload.id,
                        &upload.owner,
                        &upload.kind,
                        &upload.length,
                        &upload.offset,
                        &upload.metadata,
                        &upload.created_at,
                        &upload.expires_at,
                    ],
                )
                .await?;
            Ok(())
        })
        .await
    }

    async fn upload(&self, id: &str) -> StoreResult<Option<UploadRecord>> {
        retry(|| async {
            let client = self.client().await?;
            let statement =
                client.prepare_cached(&format!("SELECT {UPLOAD_COLUMNS} FROM uploads WHERE id = $1")).await?;
            client.query_opt(&statement, &[&id]).await?.as_ref().map(upload_from_row).transpose()
        })
        .await
    }

    async fn add_upload_piece(&self, id: &str, start: i64, len: i64, key: &str) -> StoreResult<bool> {
        retry(|| async {
            let mut client = self.client().await?;
            let tx = client.transaction().await?;
            let statement = tx
                .prepare_cached(
                    "UPDATE uploads SET \"offset\" = $2 + $3 WHERE id = $1 AND \"offset\" = $2 AND $2 + $3 <= length",
                )
                .await?;
            if tx.execute(&statement, &[&id, &start, &len]).await? == 0 {
                return Ok(false);
            }
            let statement = tx
                .prepare_cached(
                    "INSERT INTO upload_pieces (upload_id, start, len, key) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (upload_id, start) DO UPDATE SET len = excluded.len, key = excluded.key",
                )
                .await?;
            tx.execute(&statement, &[&id, &start, &len, &key]).await?;
            tx.commit().await?;
            Ok(true)
        })
        .await
    }

    async fn upload_pieces(&self, id: &str) -> StoreResult<Vec<UploadPiece>> {
        retry(|| async {
            let client = self.client().await?;
            let statement = client
                .prepare_cached("SELECT start, len, key FROM upload_pieces WHERE upload_id = $1 ORDER BY start")
                .await?;
            client
                .query(&statement, &[&id])
                .await?
                .iter()
                .map(|r| Ok(UploadPiece { start: r.try_get(0)?, len: r.try_get(1)?, key: r.try_get(2)? }))
                .collect()
        })
        .await
    }

    async fn delete_upload(&self, id: &str) -> StoreResult<Vec<String>> {
        retry(|| async {
            let mut client = self.client().await?;
            let tx = client.transaction().await?;
            let keys = remove_upload(&tx, id).await?;
            tx.commit().await?;
            Ok(keys)
        })
        .await
    }

    async fn expired_uploads(&self, now: i64, limit: u32) -> StoreResult<Vec<UploadRecord>> {
        retry(|| async {
            let client = self.client().await?;
            let statement = client
                .prepare_cached(&format!(
                    "SELECT {UPLOAD_COLUMNS} FROM uploads WHERE expires_at < $1 ORDER BY expires_at LIMIT $2"
                ))
                .await?;
            client.query(&statement, &[&now, &big(limit)]).await?.iter().map(upload_from_row).collect()
        })
        .await
    }

    async fn finish_upload(&self, item: MediaItemRecord, blobs: Vec<BlobRecord>, now: i64) -> StoreResult<BlobsPut> {
        retry(|| finish_upload(self, &item, &blobs, now)).await
    }

    async fn put_blobs(&self, blobs: Vec<BlobRecord>, now: i64) -> StoreResult<BlobsPut> {
        retry(|| async {
            let client = self.client().await?;
            put_blobs(&client, blobs.clone(), now).await
        })
        .await
    }

    async fn media_item(&self, id: &str) -> StoreResult<Option<MediaItemRecord>> {
        retry(|| async {
            let client = self.client().await?;
            let statement =
                client.prepare_cached("SELECT id, owner, media, created_at FROM media_items WHERE id = $1").await?;
            let Some(row) = client.query_opt(&statement, &[&id]).await? else {
                return Ok(None);
            };
            let media: String = row.try_get(2)?;
            Ok(Some(MediaItemRecord {
                id: row.try_get(0)?,
                owner: row.try_get(1)?,
                media: serde_json::from_str(&media)?,
                created_at: row.try_get(3)?,
            }))
        })
        .await
    }

    async fn blob(&self, sha256: &str) -> StoreResult<Option<BlobRecord>> {
        retry(|| async {
            let client = self.client().await?;
            let statement = client.prepare_cached("SELECT sha256, key, size FROM blobs WHERE sha256 = $1").await?;
            client
                .query_opt(&statement, &[&sha256])
                .await?
                .map(|r| Ok(BlobRecord { sha256: r.try_get(0)?, key: r.try_get(1)?, size: r.try_get(2)? }))
                .transpose()
        })
        .await
    }

    async fn expire_media_items(&self, before: i64) -> StoreResult<u64> {
        retry(|| async {
            let client = self.client().await?;
            let statement = client.prepare_cached("DELETE FROM media_items WHERE created_at < $1").await?;
            Ok(client.execute(&statement, &[&before]).await?)
        })
        .await
    }

    async fn collect_blobs(&self, before: i64, limit: u32) -> StoreResult<Vec<String>> {
        retry(|| async {
            let client = self.client().await?;
            // A blob touched by a write racing this one is skipped: the row the DELETE finds
            // is re-checked against `touched_at` after that write commits.
            let statement = client
                .prepare_cached(
                    "DELETE FROM blobs WHERE sha256 IN ( \
                       SELECT b.sha256 FROM blobs b WHERE b.touched_at < $1 \
                       AND NOT EXISTS (SELECT 1 FROM media_items i WHERE i.sha256 = b.sha256) \
                       AND NOT EXISTS (SELECT 1 FROM media_items i WHERE i.thumbnail_sha256 = b.sha256) \
                       AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.content LIKE '{\"type\":\"media\"%' \
                                       AND (m.content::jsonb) #>> '{media,sha256}' = b.sha256) \
                       AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.content LIKE '{\"type\":\"media\"%' \
                                       AND (m.content::jsonb) #>> '{media,thumbnail,sha256}' = b.sha256) \
                       LIMIT $2) AND touched_at < $1 RETURNING key",
                )
                .await?;
            client.query(&statement, &[&before, &big(limit)]).await?.iter().map(|r| Ok(r.try_get(0)?)).collect()
        })
        .await
    }

    async fn media_link_key(&self, candidate: Vec<u8>) -> StoreResult<Vec<u8>> {
        retry(|| async {
            let client = self.client().await?;
            let statement = client
                .prepare_cached(
                    "INSERT INTO secrets (name, value) VALUES ('media_links', $1) ON CONFLICT (name) DO NOTHING",
                )
                .await?;
            client.execute(&statement, &[&candidate]).await?;
            let statement = client.prepare_cached("SELECT value FROM secrets WHERE name = 'media_links'").await?;
            Ok(client.query_one(&statement, &[]).await?.try_get(0)?)
        })
        .await
    }
}
