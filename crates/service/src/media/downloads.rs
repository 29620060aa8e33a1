//! Downloads: a media item's or a media message's bytes, and the signed links for browsers.

use super::*;

impl Service {
    /// A media item's bytes for its owner (`GET /v1/media/{id}/content`).
    pub async fn item_download(&self, session: Session, id: &str, variant: Variant) -> Result<Download, ApiError> {
        let item = self.media_item(session, id).await?;
        self.download_of(item.media, variant).await
    }

    /// A media message's bytes for a member of its chat
    /// (`GET /v1/chats/{chat_id}/messages/{seq}/media`).
    pub async fn message_download(
        &self,
        session: Session,
        chat_id: i64,
        seq: i64,
        variant: Variant,
    ) -> Result<Download, ApiError> {
        let message = self.media_message(session.user_id, chat_id, seq).await?;
        self.local_download(&message, variant).await
    }

    /// A media message the person may see.
    pub(super) async fn media_message(
        &self,
        user_id: i64,
        chat_id: i64,
        seq: i64,
    ) -> Result<peyvand_api::Message, ApiError> {
        let members = self.store.members(chat_id).await.map_err(store_error)?;
        if !members.iter().any(|m| m.user_id == user_id) {
            return Err(no_media());
        }
        let message = self.store.message(chat_id, seq).await.map_err(store_error)?;
        message.filter(|m| m.content.media().is_some()).ok_or_else(no_media)
    }

    /// The media of a message the person may see.
    pub(super) async fn message_media(&self, user_id: i64, chat_id: i64, seq: i64) -> Result<Media, ApiError> {
        let message = self.media_message(user_id, chat_id, seq).await?;
        message.content.media().cloned().ok_or_else(no_media)
    }

    /// A media message's bytes here: stored here already, or fetched now from the provider
    /// that holds them (the sender's, for a message from another messenger) and kept.
    pub(crate) async fn local_download(
        &self,
        message: &peyvand_api::Message,
        variant: Variant,
    ) -> Result<Download, ApiError> {
        let media = message.content.media().cloned().ok_or_else(no_media)?;
        match self.download_of(media.clone(), variant).await {
            Err(e) if e.code == ErrorCode::MediaUnavailable && message.sender_address.is_some() => {
                self.fetch_from_holder(message, &media, variant).await?;
                self.download_of(media, variant).await
            }
            other => other,
        }
    }

    pub(super) async fn download_of(&self, media: Media, variant: Variant) -> Result<Download, ApiError> {
        let (sha256, mime) = match variant {
            Variant::Content => (media.sha256.clone(), media.mime.clone()),
            Variant::Thumbnail => match &media.thumbnail {
                Some(t) => (t.sha256.clone(), "image/jpeg".to_owned()),
                None => return Err(err(ErrorCode::NotFound, "this media has no thumbnail")),
            },
        };
        let blob = self.store.blob(&sha256).await.map_err(store_error)?;
        let blob = blob.ok_or_else(|| err(ErrorCode::MediaUnavailable, "the file's bytes are not available"))?;
        Ok(Download { media, variant, mime, size: blob.size as u64, sha256, key: blob.key })
    }

    /// Opens a download's bytes, all or `range` (end exclusive), and counts them.
    pub async fn read_download(&self, download: &Download, range: Option<Range<u64>>) -> Result<BlobStream, ApiError> {
        let blobs = self.blobs()?;
        let stream = blobs.get(&download.key, range.clone()).await.map_err(storage_error)?;
        let bytes = range.map_or(download.size, |r| r.end - r.start);
        self.metrics.media.downloaded[MediaCounters::index(download.media.kind)].fetch_add(bytes, Ordering::Relaxed);
        Ok(stream)
    }

    /// Opens a download's bytes for another provider (`peer`), and counts them as sent to it.
    pub async fn read_for_peer(
        &self,
        peer: &str,
        download: &Download,
        range: Option<Range<u64>>,
    ) -> Result<BlobStream, ApiError> {
        let blobs = self.blobs()?;
        let stream = blobs.get(&download.key, range.clone()).await.map_err(storage_error)?;
        if let Ok(federation) = self.federation() {
            federation.media_served(peer, range.map_or(download.size, |r| r.end - r.start));
        }
        Ok(stream)
    }

    /// The key that signs media links, read from the store once.
    pub(super) async fn link_key(&self) -> Result<Arc<Vec<u8>>, ApiError> {
        self.link_key
            .get_or_try_init(|| async {
                let candidate = rand::random::<[u8; 32]>().to_vec();
                self.store.media_link_key(candidate).await.map(Arc::new).map_err(store_error)
            })
            .await
            .cloned()
    }

    pub(super) async fn link_signature(
        &self,
        chat_id: i64,
        seq: i64,
        variant: Variant,
        expires: i64,
    ) -> Result<String, ApiError> {
        let key = self.link_key().await?;
        let mut mac = Hmac::<Sha256>::new_from_slice(&key).map_err(|e| err(ErrorCode::Internal, e.to_string()))?;
        mac.update(format!("peyvand-media-link-v1\n{chat_id}\n{seq}\n{}\n{expires}", variant.as_str()).as_bytes());
        Ok(hex::encode(mac.finalize().into_bytes()))
    }

    /// `GET /v1/chats/{chat_id}/messages/{seq}/media/links`: addresses of a media message's
    /// bytes that work without the session token, for `link_ttl_secs`.
    pub async fn media_links(&self, session: Session, chat_id: i64, seq: i64) -> Result<MediaLinks, ApiError> {
        let media = self.message_media(session.user_id, chat_id, seq).await?;
        let expires_at = now_millis() + self.config.media.link_ttl_secs as i64 * 1000;
        let link = |variant: Variant, sig: String| {
            format!("/v1/files/{chat_id}/{seq}/{}?expires={expires_at}&sig={sig}", variant.as_str())
        };
        let url = link(Variant::Content, self.link_signature(chat_id, seq, Variant::Content, expires_at).await?);
        let thumbnail_url = match media.thumbnail {
            Some(_) => {
                Some(link(Variant::Thumbnail, self.link_signature(chat_id, seq, Variant::Thumbnail, expires_at).await?))
            }
            None => None,
        };
        Ok(MediaLinks { url, thumbnail_url, expires_at })
    }

    /// `GET /v1/files/{chat_id}/{seq}/{variant}`: a media link's bytes, if the link is good.
    pub async fn link_download(
        &self,
        chat_id: i64,
        seq: i64,
        variant: Variant,
        expires: i64,
        sig: &str,
    ) -> Result<Download, ApiError> {
        let expected = self.link_signature(chat_id, seq, variant, expires).await?;
        if !crate::auth::same(sig, &expected) {
            return Err(err(ErrorCode::Forbidden, "this media link is not valid"));
        }
        if expires < now_millis() {
            return Err(err(ErrorCode::Forbidden, "this media link has expired: ask for a new one"));
        }
        let message = self.store.message(chat_id, seq).await.map_err(store_error)?;
        let message = message.filter(|m| m.content.media().is_some()).ok_or_else(no_media)?;
        self.local_download(&message, variant).await
    }
}
