//! Media across messengers (docs/protocol/media.md): the holder's answer to a provider in the
//! room, the fetch of a peer's file checked against its message, and the bounds of a peer's
//! description.

use super::*;

/// Checks a media description that did not come from this server's own inspection (another
/// provider's): every field within what this server would make (media.md, MEDIA-4).
pub(crate) fn check_description(media: &Media) -> Result<(), ApiError> {
    let bad = |what: &str| Err(err(ErrorCode::InvalidContent, format!("the media description's {what} is not valid")));
    let hex64 = |s: &str| s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if !inspect::may_serve(media.kind, &media.mime) {
        return Err(err(
            ErrorCode::MediaTypeMismatch,
            format!("a {} is never served as {}", media.kind.as_str(), media.mime),
        ));
    }
    if !hex64(&media.sha256) {
        return bad("sha256");
    }
    if media.size == 0 {
        return bad("size");
    }
    if let Some(name) = &media.name
        && (name.is_empty()
            || name.chars().count() > NAME_CHARS
            || name.contains(['/', '\\'])
            || name.chars().any(|c| c.is_control() || peyvand_core::chars::is_direction_control(c)))
    {
        return bad("name");
    }
    let side = |v: Option<u32>| v.is_none_or(|v| (1..=100_000).contains(&v));
    if !side(media.width) || !side(media.height) {
        return bad("width or height");
    }
    if media.duration_ms.is_some_and(|d| d > 100 * 3600 * 1000) {
        return bad("duration");
    }
    if let Some(waveform) = &media.waveform
        && (media.kind != MediaKind::Voice || waveform.len() > WAVEFORM_VALUES || waveform.iter().any(|v| *v > 31))
    {
        return bad("waveform");
    }
    if media
        .preview
        .as_ref()
        .is_some_and(|p| p.len() > 64 || base64::engine::general_purpose::STANDARD.decode(p).is_err())
    {
        return bad("preview");
    }
    if let Some(t) = &media.thumbnail
        && (!hex64(&t.sha256)
            || t.size == 0
            || t.size > 1 << 20
            || !(1..=320).contains(&t.width)
            || !(1..=320).contains(&t.height))
    {
        return bad("thumbnail");
    }
    if media.thumbnail.is_some() && !matches!(media.kind, MediaKind::Photo | MediaKind::Video) {
        return bad("thumbnail");
    }
    Ok(())
}

impl Service {
    /// `GET /interconnect/v1/media` from `peer`: a media message's bytes, if `peer` takes
    /// part in the room and this provider holds them (media.md, MEDIA-5 to MEDIA-7).
    pub async fn peer_media(&self, peer: &str, request: &wire::MediaRequest) -> Result<Download, ApiError> {
        let variant = Variant::parse(&request.variant)
            .ok_or_else(|| err(ErrorCode::BadRequest, "the variant is `content` or `thumbnail`"))?;
        let me = self.federation()?.provider_id().to_owned();
        let chat_id = if request.hub == me {
            Some(request.room)
        } else {
            let link = peyvand_store::RoomLink { hub: request.hub.clone(), hub_chat: request.room };
            self.store.chat_by_room(&link).await.map_err(store_error)?
        };
        let not_shared = || err(ErrorCode::Forbidden, "this room is not one your provider takes part in");
        let chat_id = chat_id.ok_or_else(not_shared)?;
        let members = self.store.members(chat_id).await.map_err(store_error)?;
        let takes_part = members
            .iter()
            .any(|m| m.remote_address.as_deref().is_some_and(|a| a.rsplit_once('@').is_some_and(|(_, p)| p == peer)));
        if !takes_part {
            return Err(not_shared());
        }
        let message = self.store.message(chat_id, request.seq).await.map_err(store_error)?;
        let message = message.filter(|m| m.content.media().is_some()).ok_or_else(no_media)?;
        // Only what was sent from here: a copy fetched from elsewhere is not passed on.
        if message.sender_address.is_some() {
            return Err(err(ErrorCode::MediaUnavailable, "this provider does not hold this file: its sender's does"));
        }
        let media = message.content.media().cloned().ok_or_else(no_media)?;
        self.download_of(media, variant).await
    }

    /// The room a chat here is, as providers name it.
    pub(super) async fn room_of(&self, chat_id: i64) -> Result<wire::RoomId, ApiError> {
        Ok(match self.store.room_link(chat_id).await.map_err(store_error)? {
            Some(link) => wire::RoomId { hub: link.hub, id: link.hub_chat },
            None => wire::RoomId { hub: self.federation()?.provider_id().to_owned(), id: chat_id },
        })
    }

    /// Fetches a message's file (or thumbnail) from the provider of its sender, checks it is
    /// what the message says (size, SHA-256, type), and keeps it (media.md, MEDIA-8). Bytes
    /// that do not match are refused and dropped: the file stays unavailable.
    pub(super) async fn fetch_from_holder(
        &self,
        message: &peyvand_api::Message,
        media: &Media,
        variant: Variant,
    ) -> Result<(), ApiError> {
        let blobs = self.blobs()?.clone();
        let holder = message
            .sender_address
            .as_deref()
            .and_then(|a| a.rsplit_once('@').map(|(_, p)| p.to_owned()))
            .ok_or_else(no_media)?;
        let (sha256, size) = match variant {
            Variant::Content => (media.sha256.clone(), media.size),
            Variant::Thumbnail => match &media.thumbnail {
                Some(t) => (t.sha256.clone(), t.size),
                None => return Err(no_media()),
            },
        };
        if size > self.config.media.max_upload_bytes {
            return Err(err(ErrorCode::MediaTooLarge, "the file is larger than this provider takes from others"));
        }
        let room = self.room_of(message.chat_id).await?;
        let request =
            wire::MediaRequest { hub: room.hub, room: room.id, seq: message.seq, variant: variant.as_str().to_owned() };
        let unavailable =
            |why: &str| err(ErrorCode::MediaUnavailable, format!("the file could not be had from `{holder}`: {why}"));
        let mut stream = self.federation()?.fetch_media(&holder, &request, size).await?;
        let key = format!("blobs/r-{}", random_id());
        let (sender, receiver) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
        let writer = {
            let (blobs, key) = (blobs.clone(), key.clone());
            tokio::spawn(async move { blobs.put_stream(&key, channel_stream(receiver)).await })
        };
        let mut hasher = Sha256::new();
        let mut received = 0u64;
        let mut head = BytesMut::new();
        let mut failure = None;
        while let Some(chunk) = stream.next().await {
            match chunk {
                Ok(chunk) => {
                    received += chunk.len() as u64;
                    if received > size {
                        failure = Some(unavailable("it sent more bytes than the message says"));
                        break;
                    }
                    if (head.len() as u64) < HEAD_BYTES {
                        let take = (HEAD_BYTES as usize - head.len()).min(chunk.len());
                        head.extend_from_slice(&chunk[..take]);
                    }
                    hasher.update(&chunk);
                    if sender.send(Ok(chunk)).await.is_err() {
                        break;
                    }
                }
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        if failure.is_none() && received != size {
            failure = Some(unavailable("it sent fewer bytes than the message says"));
        }
        if failure.is_none() && hex::encode(hasher.finalize()) != sha256 {
            failure = Some(unavailable("its bytes do not match the message's SHA-256"));
        }
        if failure.is_none() && variant == Variant::Content {
            let served = inspect::check_kind(media.kind, inspect::detect(&head).as_ref());
            if served.map_or(true, |mime| mime != media.mime) {
                failure = Some(unavailable("its bytes are not of the type the message says"));
            }
        }
        match &failure {
            Some(_) => drop(sender.send(Err(std::io::Error::other("refused"))).await),
            None => drop(sender),
        }
        let written = writer.await.map_err(|e| err(ErrorCode::Internal, format!("storing the file failed: {e}")))?;
        if let Some(refused) = failure {
            let _ = blobs.delete(&key).await;
            tracing::warn!(peer = %holder, code = %refused.code, message = %refused.message, "refused a peer's media");
            return Err(refused);
        }
        written.map_err(storage_error)?;
        let put = self
            .store
            .put_blobs(vec![BlobRecord { sha256, key, size: size as i64 }], now_millis())
            .await
            .map_err(store_error)?;
        self.remove_keys(&put.redundant).await;
        Ok(())
    }

    /// Makes sure a media message's bytes are here (fetched from their holder if need be),
    /// before it is forwarded from here.
    pub(crate) async fn keep_media_of(&self, message: &peyvand_api::Message) -> Result<(), ApiError> {
        let Some(media) = message.content.media() else { return Ok(()) };
        self.local_download(message, Variant::Content).await?;
        if media.thumbnail.is_some() {
            self.local_download(message, Variant::Thumbnail).await?;
        }
        Ok(())
    }
}
