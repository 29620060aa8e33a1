//! Uploads: the tus state, pieces as they arrive, and the finish that makes a media item.

use super::*;

/// Checks what the uploader said of the file.
fn validate_meta(kind: MediaKind, meta: &mut UploadMeta) -> Result<(), ApiError> {
    if let Some(name) = &meta.name {
        // Only the last path component, with no control or direction characters.
        let base = name.rsplit(['/', '\\']).next().unwrap_or("");
        let clean: String = base
            .chars()
            .filter(|c| !c.is_control() && !peyvand_core::chars::is_direction_control(*c))
            .take(NAME_CHARS)
            .collect();
        let clean = clean.trim().to_owned();
        meta.name = (!clean.is_empty() && clean != "." && clean != "..").then_some(clean);
    }
    if let Some(waveform) = &meta.waveform {
        if kind != MediaKind::Voice {
            return Err(err(ErrorCode::BadRequest, "only a voice message has a waveform"));
        }
        if waveform.len() > WAVEFORM_VALUES || waveform.iter().any(|v| *v > 31) {
            return Err(err(ErrorCode::BadRequest, "a waveform has at most 100 values, each 0 to 31"));
        }
    }
    if meta.thumbnail.is_some() && kind != MediaKind::Video {
        return Err(err(ErrorCode::BadRequest, "only a video takes a thumbnail upload"));
    }
    Ok(())
}

/// Whether the pieces cover `[0, length)` without a gap.
fn contiguous(pieces: &[UploadPiece], length: i64) -> bool {
    let mut at = 0;
    for piece in pieces {
        if piece.start != at {
            return false;
        }
        at += piece.len;
    }
    at == length
}

impl Service {
    /// `POST /v1/uploads`: starts an upload of `length` bytes of a file of `kind`, within the
    /// size limit, the uploads per hour and the bytes per day.
    pub async fn create_upload(
        &self,
        session: Session,
        kind: &str,
        length: u64,
        mut meta: UploadMeta,
    ) -> Result<UploadState, ApiError> {
        self.blobs()?;
        let kind = MediaKind::parse(kind)
            .ok_or_else(|| err(ErrorCode::BadRequest, "the kind must be one of photo, voice, video, audio, file"))?;
        let config = &self.config.media;
        if length == 0 {
            return Err(err(ErrorCode::MediaInvalid, "the file is empty"));
        }
        let max = if kind == MediaKind::Photo { config.max_photo_bytes } else { config.max_upload_bytes };
        if length > max {
            return Err(err(ErrorCode::MediaTooLarge, format!("a {} may have at most {max} bytes", kind.as_str())));
        }
        validate_meta(kind, &mut meta)?;
        if let Some(thumbnail) = &meta.thumbnail {
            self.own_photo(session, thumbnail).await?;
        }
        let me = session.user_id;
        self.limit(format!("uploads:{me}"), HOUR_MS, config.uploads_per_hour, "uploads").await?;
        let mib = |bytes: u64| u32::try_from(bytes.div_ceil(MIB)).unwrap_or(u32::MAX);
        self.limit_cost(
            format!("upload-mib:{me}"),
            DAY_MS,
            mib(config.upload_bytes_per_day),
            mib(length),
            "bytes uploaded today",
        )
        .await?;
        let now = now_millis();
        let upload = UploadRecord {
            id: random_id(),
            owner: me,
            kind: kind.as_str().to_owned(),
            length: length as i64,
            offset: 0,
            metadata: serde_json::to_string(&meta).map_err(|e| err(ErrorCode::Internal, e.to_string()))?,
            created_at: now,
            expires_at: now + config.upload_expiry_secs as i64 * 1000,
        };
        self.store.create_upload(upload.clone()).await.map_err(store_error)?;
        Ok(UploadState::of(&upload))
    }

    /// The upload, if it is the person's and has not expired.
    pub(super) async fn own_upload(&self, session: Session, id: &str) -> Result<UploadRecord, ApiError> {
        let upload = self.store.upload(id).await.map_err(store_error)?;
        match upload {
            Some(u) if u.owner == session.user_id && u.expires_at > now_millis() => Ok(u),
            _ => Err(gone()),
        }
    }

    /// A finished photo upload of the person's, to be a video's thumbnail.
    pub(super) async fn own_photo(&self, session: Session, id: &str) -> Result<MediaItemRecord, ApiError> {
        match self.store.media_item(id).await.map_err(store_error)? {
            Some(item) if item.owner == session.user_id && item.media.kind == MediaKind::Photo => Ok(item),
            _ => Err(err(ErrorCode::BadRequest, "the thumbnail must be a finished photo upload of yours")),
        }
    }

    /// `HEAD /v1/uploads/{id}`: where the upload stands; one with every byte stored is
    /// finished first.
    pub async fn upload_state(&self, session: Session, id: &str) -> Result<UploadState, ApiError> {
        let upload = self.own_upload(session, id).await?;
        if upload.offset == upload.length {
            // Every byte is here but the upload was not finished (the request that brought the
            // last ones failed afterwards): finish it now, so that a client that takes it as
            // complete finds its media item.
            self.finish_upload(upload.clone()).await?;
        }
        Ok(UploadState::of(&upload))
    }

    /// `DELETE /v1/uploads/{id}`: cancels the upload and removes its bytes.
    pub async fn cancel_upload(&self, session: Session, id: &str) -> Result<(), ApiError> {
        let upload = self.own_upload(session, id).await?;
        let keys = match self.store.delete_upload(&upload.id).await {
            Ok(keys) => keys,
            Err(peyvand_store::StoreError::NotFound) => return Err(gone()),
            Err(e) => return Err(store_error(e)),
        };
        self.remove_keys(&keys).await;
        Ok(())
    }

    /// `PATCH /v1/uploads/{id}`: stores the request's bytes at `offset`, which must be where
    /// the upload stands. With a `checksum` (SHA-256 of the request's bytes), the bytes count
    /// only if they match; without one, every piece that arrived counts, even when the
    /// request breaks off. The request that brings the last byte finishes the upload.
    pub async fn append_upload<S, E>(
        &self,
        session: Session,
        id: &str,
        offset: u64,
        checksum: Option<[u8; 32]>,
        mut body: S,
    ) -> Result<Appended, ApiError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin + Send,
        E: std::fmt::Display,
    {
        let blobs = self.blobs()?.clone();
        let upload = self.own_upload(session, id).await?;
        if offset != upload.offset as u64 {
            return Err(err(
                ErrorCode::UploadOffsetMismatch,
                format!("the upload is at offset {}, not {offset}", upload.offset),
            ));
        }
        let length = upload.length as u64;
        let piece_bytes = self.config.media.piece_bytes.max(64 * 1024);
        let mut hasher = checksum.map(|_| Sha256::new());
        // Pieces written but, under a checksum, not yet recorded.
        let mut pending: Vec<(u64, u64, String)> = Vec::new();
        let mut at = offset;
        let mut buffer = BytesMut::new();
        let mut broken: Option<String> = None;
        loop {
            let chunk = match body.next().await {
                Some(Ok(chunk)) => chunk,
                Some(Err(e)) => {
                    broken = Some(e.to_string());
                    break;
                }
                None => break,
            };
            if at + buffer.len() as u64 + chunk.len() as u64 > length {
                self.drop_pieces(&blobs, &pending).await;
                return Err(err(
                    ErrorCode::MediaTooLarge,
                    format!("the request goes past the upload's length, {length}"),
                ));
            }
            if let Some(h) = hasher.as_mut() {
                h.update(&chunk);
            }
            buffer.extend_from_slice(&chunk);
            while buffer.len() as u64 >= piece_bytes {
                let piece = buffer.split_to(piece_bytes as usize).freeze();
                at = self.store_piece(&blobs, &upload, at, piece, checksum.is_none(), &mut pending).await?;
            }
        }
        if broken.is_some() && checksum.is_some() {
            // Bytes that cannot be checked do not count.
            self.drop_pieces(&blobs, &pending).await;
            return Err(err(ErrorCode::BadRequest, "the request broke off before its checksum could be checked"));
        }
        if !buffer.is_empty() {
            at = self.store_piece(&blobs, &upload, at, buffer.freeze(), checksum.is_none(), &mut pending).await?;
        }
        if let (Some(expected), Some(h)) = (checksum, hasher) {
            if h.finalize().as_slice() != expected {
                self.drop_pieces(&blobs, &pending).await;
                return Err(err(ErrorCode::ChecksumMismatch, "the bytes do not match Upload-Checksum; none were kept"));
            }
            let mut unrecorded = std::mem::take(&mut pending).into_iter();
            while let Some((start, len, key)) = unrecorded.next() {
                let recorded = self.store.add_upload_piece(&upload.id, start as i64, len as i64, &key).await;
                // The pieces after one that is not recorded never will be: nothing refers to
                // them, so they go now (else they would stay in the storage for good).
                let rest: Vec<(u64, u64, String)> = match &recorded {
                    Ok(true) => continue,
                    Ok(false) => unrecorded.chain([(start, len, key)]).collect(),
                    // Whether this one was recorded is not known; the rest were not.
                    Err(_) => unrecorded.collect(),
                };
                self.drop_pieces(&blobs, &rest).await;
                recorded.map_err(store_error)?;
                return Err(err(ErrorCode::UploadOffsetMismatch, "another request moved the upload on"));
            }
        }
        if let Some(why) = broken {
            return Err(err(ErrorCode::BadRequest, format!("the request broke off: {why}")));
        }
        let kind = MediaKind::parse(&upload.kind).unwrap_or(MediaKind::File);
        self.metrics.media.uploaded[MediaCounters::index(kind)].fetch_add(at - offset, Ordering::Relaxed);
        let state = UploadState { offset: at, ..UploadState::of(&upload) };
        if at < length {
            return Ok(Appended::Partial(state));
        }
        let item = self.finish_upload(UploadRecord { offset: at as i64, ..upload }).await?;
        Ok(Appended::Finished(state, Box::new(item)))
    }

    /// Writes one piece of an upload at `at` and, unless it waits for a checksum, records it;
    /// returns the offset after it.
    pub(super) async fn store_piece(
        &self,
        blobs: &BlobStore,
        upload: &UploadRecord,
        at: u64,
        piece: Bytes,
        record: bool,
        pending: &mut Vec<(u64, u64, String)>,
    ) -> Result<u64, ApiError> {
        let len = piece.len() as u64;
        let key = format!("uploads/{}/{at:020}-{}", upload.id, random_id());
        if let Err(e) = blobs.put(&key, piece).await {
            // The pieces before it, waiting for the checksum, will not be recorded either.
            self.drop_pieces(blobs, pending).await;
            return Err(storage_error(e));
        }
        if record {
            let recorded =
                self.store.add_upload_piece(&upload.id, at as i64, len as i64, &key).await.map_err(store_error)?;
            if !recorded {
                let _ = blobs.delete(&key).await;
                return Err(err(ErrorCode::UploadOffsetMismatch, "another request moved the upload on"));
            }
        } else {
            pending.push((at, len, key));
        }
        Ok(at + len)
    }

    pub(super) async fn drop_pieces(&self, blobs: &BlobStore, pending: &[(u64, u64, String)]) {
        for (_, _, key) in pending {
            let _ = blobs.delete(key).await;
        }
    }

    /// Discards an upload whose file was refused, with its bytes.
    pub(super) async fn discard(&self, upload: &UploadRecord, also: &[String]) {
        if let Ok(keys) = self.store.delete_upload(&upload.id).await {
            self.remove_keys(&keys).await;
        }
        self.remove_keys(also).await;
    }

    /// Turns a complete upload into a media item: checks and inspects the file, stores it
    /// once as a blob, and removes the pieces. A refused file is discarded with its upload.
    pub(super) async fn finish_upload(&self, upload: UploadRecord) -> Result<MediaItem, ApiError> {
        let pieces = self.store.upload_pieces(&upload.id).await.map_err(store_error)?;
        if !contiguous(&pieces, upload.length) {
            return Err(err(ErrorCode::Internal, "the upload's pieces do not cover it"));
        }
        let kind = MediaKind::parse(&upload.kind).unwrap_or(MediaKind::File);
        let meta: UploadMeta = serde_json::from_str(&upload.metadata).unwrap_or_default();
        let (media, blobs, keys) = match self.make_media(&upload, &pieces, kind, &meta).await {
            Ok(made) => made,
            Err(refused) => {
                // A storage failure may pass; a refused file never will.
                if refused.code != ErrorCode::Unavailable {
                    self.discard(&upload, &[]).await;
                }
                return Err(refused);
            }
        };
        let now = now_millis();
        let item = MediaItemRecord { id: upload.id.clone(), owner: upload.owner, media, created_at: now };
        let put = match self.store.finish_upload(item.clone(), blobs, now).await {
            Ok(put) => put,
            Err(e) => {
                self.remove_keys(&keys).await;
                return Err(match e {
                    peyvand_store::StoreError::NotFound => gone(),
                    other => store_error(other),
                });
            }
        };
        self.remove_keys(&put.redundant).await;
        let piece_keys: Vec<String> = pieces.into_iter().map(|p| p.key).collect();
        self.remove_keys(&piece_keys).await;
        Ok(MediaItem { id: item.id, media: item.media, created_at: item.created_at })
    }

    /// Reads `[range)` of an upload from its pieces, into memory.
    pub(super) async fn read_pieces(&self, pieces: &[UploadPiece], range: Range<u64>) -> Result<Bytes, ApiError> {
        let blobs = self.blobs()?;
        let mut out = BytesMut::with_capacity((range.end - range.start) as usize);
        for piece in pieces {
            let (start, end) = (piece.start as u64, (piece.start + piece.len) as u64);
            if end <= range.start || start >= range.end {
                continue;
            }
            let from = range.start.max(start) - start;
            let to = range.end.min(end) - start;
            let mut stream = blobs.get(&piece.key, Some(from..to)).await.map_err(storage_error)?.stream;
            while let Some(chunk) = stream.next().await {
                out.extend_from_slice(&chunk.map_err(storage_error)?);
            }
        }
        Ok(out.freeze())
    }

    /// Checks the file and makes its media description and blobs; returns them with the
    /// keys written (to remove should the item not be stored).
    pub(super) async fn make_media(
        &self,
        upload: &UploadRecord,
        pieces: &[UploadPiece],
        kind: MediaKind,
        meta: &UploadMeta,
    ) -> Result<(Media, Vec<BlobRecord>, Vec<String>), ApiError> {
        let blobs = self.blobs()?.clone();
        let length = upload.length as u64;
        let head = self.read_pieces(pieces, 0..length.min(HEAD_BYTES)).await?;
        let detected = inspect::detect(&head);
        let mime = inspect::check_kind(kind, detected.as_ref()).map_err(inspect_error)?;
        // Unique to this attempt: should two requests finish the same upload at once, the one
        // whose item is not stored removes only its own bytes.
        let attempt = &random_id()[..8];
        let key = format!("blobs/{}-{attempt}", upload.id);
        let base = Media {
            kind,
            mime: mime.to_owned(),
            size: length,
            sha256: String::new(),
            name: meta.name.clone(),
            width: None,
            height: None,
            duration_ms: None,
            waveform: meta.waveform.clone(),
            preview: None,
            thumbnail: None,
        };
        if kind == MediaKind::Photo {
            let bytes = self.read_pieces(pieces, 0..length).await?;
            let limits = self.photo_limits();
            let photo = tokio::task::spawn_blocking(move || inspect::photo(&bytes, &limits))
                .await
                .map_err(|e| err(ErrorCode::Internal, format!("photo inspection failed: {e}")))?
                .map_err(inspect_error)?;
            let sha = hex::encode(Sha256::digest(&photo.bytes));
            let thumb_sha = hex::encode(Sha256::digest(&photo.thumbnail));
            let thumb_key = format!("blobs/{}-{attempt}-t", upload.id);
            let (size, thumb_size) = (photo.bytes.len() as u64, photo.thumbnail.len() as u64);
            blobs.put(&key, Bytes::from(photo.bytes)).await.map_err(storage_error)?;
            if let Err(e) = blobs.put(&thumb_key, Bytes::from(photo.thumbnail)).await {
                let _ = blobs.delete(&key).await;
                return Err(storage_error(e));
            }
            let media = Media {
                mime: photo.mime.to_owned(),
                size,
                sha256: sha.clone(),
                width: Some(photo.width),
                height: Some(photo.height),
                preview: Some(base64::engine::general_purpose::STANDARD.encode(&photo.preview)),
                thumbnail: Some(Thumbnail {
                    sha256: thumb_sha.clone(),
                    size: thumb_size,
                    width: photo.thumbnail_width,
                    height: photo.thumbnail_height,
                }),
                ..base
            };
            let records = vec![
                BlobRecord { sha256: sha, key: key.clone(), size: size as i64 },
                BlobRecord { sha256: thumb_sha, key: thumb_key.clone(), size: thumb_size as i64 },
            ];
            return Ok((media, records, vec![key, thumb_key]));
        }

        let sha = self.concatenate(&blobs, pieces, &key).await?;
        let mut media = Media { sha256: sha.clone(), ..base };
        if matches!(kind, MediaKind::Voice | MediaKind::Video | MediaKind::Audio) {
            let reader = match RangeReader::open(&blobs, &key).await {
                Ok(reader) => reader,
                Err(e) => {
                    let _ = blobs.delete(&key).await;
                    return Err(storage_error(e));
                }
            };
            let mime = mime.to_owned();
            let timed = tokio::task::spawn_blocking(move || inspect::timed(reader, &mime))
                .await
                .map_err(|e| err(ErrorCode::Internal, format!("inspection failed: {e}")));
            let timed = match timed.and_then(|t| t.map_err(inspect_error)) {
                Ok(t) => t,
                Err(e) => {
                    let _ = blobs.delete(&key).await;
                    return Err(e);
                }
            };
            if let Err(e) = inspect::check_timed(kind, &timed) {
                let _ = blobs.delete(&key).await;
                return Err(inspect_error(e));
            }
            media.duration_ms = timed.duration_ms;
            if kind == MediaKind::Video {
                media.width = timed.width;
                media.height = timed.height;
            }
        }
        if let Some(thumbnail) = &meta.thumbnail {
            let session = Session { user_id: upload.owner, device_id: 0 };
            match self.own_photo(session, thumbnail).await {
                Ok(photo) => {
                    media.thumbnail = photo.media.thumbnail;
                    media.preview = photo.media.preview;
                }
                Err(e) => {
                    let _ = blobs.delete(&key).await;
                    return Err(e);
                }
            }
        }
        Ok((media, vec![BlobRecord { sha256: sha, key: key.clone(), size: length as i64 }], vec![key]))
    }

    /// Streams an upload's pieces, in order, into one blob at `key`; returns its SHA-256.
    pub(super) async fn concatenate(
        &self,
        blobs: &BlobStore,
        pieces: &[UploadPiece],
        key: &str,
    ) -> Result<String, ApiError> {
        let (sender, receiver) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
        let reader = {
            let (blobs, pieces) = (blobs.clone(), pieces.to_vec());
            tokio::spawn(async move {
                let mut hasher = Sha256::new();
                for piece in pieces {
                    let mut stream = match blobs.get(&piece.key, None).await {
                        Ok(blob) => blob.stream,
                        Err(e) => {
                            let _ = sender.send(Err(std::io::Error::other(e.to_string()))).await;
                            return None;
                        }
                    };
                    while let Some(chunk) = stream.next().await {
                        match chunk {
                            Ok(chunk) => {
                                hasher.update(&chunk);
                                if sender.send(Ok(chunk)).await.is_err() {
                                    return None;
                                }
                            }
                            Err(e) => {
                                let _ = sender.send(Err(std::io::Error::other(e.to_string()))).await;
                                return None;
                            }
                        }
                    }
                }
                Some(hex::encode(hasher.finalize()))
            })
        };
        let written = blobs.put_stream(key, channel_stream(receiver)).await.map_err(storage_error);
        let sha = reader.await.map_err(|e| err(ErrorCode::Internal, format!("reading the upload failed: {e}")))?;
        written?;
        sha.ok_or_else(|| {
            err(ErrorCode::Unavailable, "the upload's bytes could not be read back from the media storage")
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_keep_persian_and_lose_paths_and_controls() {
        let mut meta = UploadMeta { name: Some("../../etc/گزارش\u{202e}فصل.pdf".into()), ..Default::default() };
        validate_meta(MediaKind::File, &mut meta).expect("valid");
        assert_eq!(meta.name.as_deref(), Some("گزارشفصل.pdf"));
        let mut meta = UploadMeta { name: Some("..".into()), ..Default::default() };
        validate_meta(MediaKind::File, &mut meta).expect("valid");
        assert_eq!(meta.name, None);
    }

    #[test]
    fn waveforms_are_bounded_and_only_for_voice() {
        let mut ok = UploadMeta { waveform: Some(vec![31; 100]), ..Default::default() };
        assert!(validate_meta(MediaKind::Voice, &mut ok).is_ok());
        let mut long = UploadMeta { waveform: Some(vec![1; 101]), ..Default::default() };
        assert!(validate_meta(MediaKind::Voice, &mut long).is_err());
        let mut high = UploadMeta { waveform: Some(vec![32]), ..Default::default() };
        assert!(validate_meta(MediaKind::Voice, &mut high).is_err());
        let mut photo = UploadMeta { waveform: Some(vec![1]), ..Default::default() };
        assert!(validate_meta(MediaKind::Photo, &mut photo).is_err());
    }

    #[test]
    fn pieces_must_cover_the_upload() {
        let piece = |start, len| UploadPiece { start, len, key: String::new() };
        assert!(contiguous(&[piece(0, 4), piece(4, 6)], 10));
        assert!(!contiguous(&[piece(0, 4), piece(5, 5)], 10));
        assert!(!contiguous(&[piece(0, 4)], 10));
        assert!(contiguous(&[], 0));
    }
}
