//! Blobs by key on local disk or an S3-compatible object store.
