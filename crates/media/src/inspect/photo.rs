//! Photos: checked before decoding, stripped of metadata, turned upright, thumbnailed.

use super::{InspectError, Limits, detect, strip};
use image::codecs::jpeg::JpegEncoder;
use image::codecs::png::PngEncoder;
use image::metadata::Orientation;
use image::{DynamicImage, ImageDecoder, ImageEncoder, ImageError, ImageFormat, ImageReader};
use peyvand_api::MediaKind;
use std::io::Cursor;

/// A photo as it is stored and shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Photo {
    /// The stored form: the photo without its metadata, upright.
    pub bytes: Vec<u8>,
    /// The MIME type of [`Photo::bytes`].
    pub mime: &'static str,
    /// The width as shown (after any EXIF rotation), in pixels.
    pub width: u32,
    /// The height as shown, in pixels.
    pub height: u32,
    /// A JPEG whose longer side is at most [`Limits::thumbnail_side`].
    pub thumbnail: Vec<u8>,
    /// The thumbnail's width, in pixels.
    pub thumbnail_width: u32,
    /// The thumbnail's height, in pixels.
    pub thumbnail_height: u32,
    /// A ThumbHash of the photo (a few dozen bytes), which a client draws as a blurred
    /// preview while the thumbnail loads.
    pub preview: Vec<u8>,
}

/// The JPEG quality of a photo that had to be re-encoded to turn it upright.
const STORED_QUALITY: u8 = 90;
/// The JPEG quality of thumbnails.
const THUMBNAIL_QUALITY: u8 = 80;
/// ThumbHash is made from at most 100×100 pixels.
const PREVIEW_SIDE: u32 = 100;
/// A client-made video thumbnail is small: at most this many bytes…
const VIDEO_THUMBNAIL_BYTES: u64 = 1024 * 1024;
/// …and this many pixels on either side.
const VIDEO_THUMBNAIL_SIDE: u32 = 1280;

/// Checks a photo (JPEG, PNG or WebP) and makes what is stored and shown of it.
///
/// In order, each step only when the previous passed: the size in bytes; the type from the
/// bytes; the structure and the amount of metadata, by walking the segments or chunks;
/// the dimensions from the header, so that a decompression bomb is refused before a pixel
/// is decoded; then the decoding itself, within [`Limits::decoder_alloc`].
///
/// The stored bytes are the original ones less their metadata when the photo is upright.
/// When its EXIF orientation says it is turned or mirrored, it is decoded, turned upright
/// and encoded again (a JPEG or WebP as a JPEG of quality 90, or as a PNG when it has
/// transparency; a PNG as a PNG), since without the metadata nothing else would say how
/// to show it.
pub fn photo(bytes: &[u8], limits: &Limits) -> Result<Photo, InspectError> {
    if bytes.len() as u64 > limits.max_photo_bytes {
        return Err(InspectError::TooLarge(format!("a photo may have at most {} bytes", limits.max_photo_bytes)));
    }
    let found = detect(bytes);
    let format = match found.map(|d| d.mime) {
        Some("image/jpeg") => ImageFormat::Jpeg,
        Some("image/png") => ImageFormat::Png,
        Some("image/webp") => ImageFormat::WebP,
        other => return Err(InspectError::TypeMismatch { declared: MediaKind::Photo, found: other }),
    };
    inspect(bytes, format, limits)
}

/// Checks the JPEG thumbnail a client made of a video, as strictly as a photo and smaller
/// (at most 1 MiB and 1280 pixels a side), and makes it again at most
/// [`Limits::thumbnail_side`] a side, upright and without metadata.
///
/// [`Photo::bytes`] and [`Photo::thumbnail`] are then the same JPEG.
pub fn video_thumbnail(jpeg: &[u8], limits: &Limits) -> Result<Photo, InspectError> {
    let found = detect(jpeg).map(|d| d.mime);
    if found != Some("image/jpeg") {
        return Err(InspectError::TypeMismatch { declared: MediaKind::Video, found });
    }
    let limits = Limits {
        max_photo_bytes: limits.max_photo_bytes.min(VIDEO_THUMBNAIL_BYTES),
        max_width: limits.max_width.min(VIDEO_THUMBNAIL_SIDE),
        max_height: limits.max_height.min(VIDEO_THUMBNAIL_SIDE),
        ..limits.clone()
    };
    if jpeg.len() as u64 > limits.max_photo_bytes {
        return Err(InspectError::TooLarge(format!(
            "a video thumbnail may have at most {} bytes",
            limits.max_photo_bytes
        )));
    }
    let mut shown = inspect(jpeg, ImageFormat::Jpeg, &limits)?;
    shown.bytes = shown.thumbnail.clone();
    shown.mime = "image/jpeg";
    shown.width = shown.thumbnail_width;
    shown.height = shown.thumbnail_height;
    Ok(shown)
}

fn inspect(bytes: &[u8], format: ImageFormat, limits: &Limits) -> Result<Photo, InspectError> {
    let stripped = match format {
        ImageFormat::Png => strip::png(bytes)?,
        ImageFormat::WebP => strip::webp(bytes)?,
        _ => strip::jpeg(bytes)?,
    };
    if stripped.metadata_bytes > limits.max_metadata_bytes {
        return Err(InspectError::TooLarge(format!(
            "a photo may carry at most {} bytes of metadata",
            limits.max_metadata_bytes
        )));
    }

    let reader = || ImageReader::with_format(Cursor::new(bytes), format);
    let (width, height) = reader().into_dimensions().map_err(decoding_error)?;
    check_dimensions(width, height, limits)?;

    let mut decoder_limits = image::Limits::default();
    decoder_limits.max_image_width = Some(limits.max_width);
    decoder_limits.max_image_height = Some(limits.max_height);
    decoder_limits.max_alloc = Some(limits.decoder_alloc);
    let mut reader = reader();
    reader.limits(decoder_limits.clone());
    let mut decoder = reader.into_decoder().map_err(decoding_error)?;
    // The decoded pixels count against the allowance too (as `ImageReader::decode` counts
    // them), and the decoder has what is left for its own buffers.
    decoder_limits.reserve(decoder.total_bytes()).map_err(decoding_error)?;
    decoder.set_limits(decoder_limits).map_err(decoding_error)?;
    // An unreadable EXIF block only loses the rotation: the photo is shown as stored.
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    let icc_profile = decoder.icc_profile().ok().flatten();
    let mut image = DynamicImage::from_decoder(decoder).map_err(decoding_error)?;

    let (stored, mime) = if orientation == Orientation::NoTransforms {
        let mime = match format {
            ImageFormat::Png => "image/png",
            ImageFormat::WebP => "image/webp",
            _ => "image/jpeg",
        };
        (stripped.bytes, mime)
    } else {
        image.apply_orientation(orientation);
        if format == ImageFormat::Png || image.color().has_alpha() {
            (encode_png(&image, icc_profile.clone())?, "image/png")
        } else {
            (encode_jpeg(&image, STORED_QUALITY, icc_profile.clone())?, "image/jpeg")
        }
    };

    let side = limits.thumbnail_side.max(1);
    let small = if image.width() > side || image.height() > side { image.thumbnail(side, side) } else { image.clone() };
    let thumbnail = encode_jpeg(&small, THUMBNAIL_QUALITY, icc_profile.clone())?;
    let tiny = if small.width() > PREVIEW_SIDE || small.height() > PREVIEW_SIDE {
        small.thumbnail(PREVIEW_SIDE, PREVIEW_SIDE)
    } else {
        small.clone()
    };
    let rgba = tiny.to_rgba8();
    let preview = thumbhash::rgba_to_thumb_hash(rgba.width() as usize, rgba.height() as usize, rgba.as_raw());

    Ok(Photo {
        bytes: stored,
        mime,
        width: image.width(),
        height: image.height(),
        thumbnail,
        thumbnail_width: small.width(),
        thumbnail_height: small.height(),
        preview,
    })
}

fn check_dimensions(width: u32, height: u32, limits: &Limits) -> Result<(), InspectError> {
    if width == 0 || height == 0 {
        return Err(InspectError::invalid("the photo has no pixels"));
    }
    if width > limits.max_width || height > limits.max_height {
        return Err(InspectError::TooLarge(format!(
            "a photo may be at most {}×{} pixels, this one is {width}×{height}",
            limits.max_width, limits.max_height
        )));
    }
    if u64::from(width) * u64::from(height) > limits.max_pixels {
        return Err(InspectError::TooLarge(format!(
            "a photo may have at most {} pixels, this one has {}",
            limits.max_pixels,
            u64::from(width) * u64::from(height)
        )));
    }
    Ok(())
}

fn decoding_error(error: ImageError) -> InspectError {
    match error {
        ImageError::Limits(e) => InspectError::TooLarge(format!("decoding the photo needs too much: {e}")),
        e => InspectError::Invalid(format!("the photo cannot be decoded: {e}")),
    }
}

fn encoding_error(error: ImageError) -> InspectError {
    InspectError::Invalid(format!("the photo cannot be encoded again: {error}"))
}

/// A JPEG of the image, transparency flattened onto white.
fn encode_jpeg(image: &DynamicImage, quality: u8, icc_profile: Option<Vec<u8>>) -> Result<Vec<u8>, InspectError> {
    let rgb = if image.color().has_alpha() {
        let mut rgba = image.to_rgba8();
        for pixel in rgba.pixels_mut() {
            let [r, g, b, a] = pixel.0;
            let over_white = |c: u8| ((u16::from(c) * u16::from(a) + 255 * (255 - u16::from(a))) / 255) as u8;
            pixel.0 = [over_white(r), over_white(g), over_white(b), 255];
        }
        DynamicImage::ImageRgba8(rgba).to_rgb8()
    } else {
        image.to_rgb8()
    };
    let mut out = Vec::new();
    let mut encoder = JpegEncoder::new_with_quality(&mut out, quality);
    if let Some(icc) = icc_profile {
        // A profile the encoder cannot carry only costs colour accuracy.
        let _ = encoder.set_icc_profile(icc);
    }
    encoder
        .write_image(rgb.as_raw(), rgb.width(), rgb.height(), image::ExtendedColorType::Rgb8)
        .map_err(encoding_error)?;
    Ok(out)
}

fn encode_png(image: &DynamicImage, icc_profile: Option<Vec<u8>>) -> Result<Vec<u8>, InspectError> {
    let mut out = Vec::new();
    let mut encoder = PngEncoder::new(&mut out);
    if let Some(icc) = icc_profile {
        let _ = encoder.set_icc_profile(icc);
    }
    // 16-bit and other layouts are kept where PNG has them; anything else becomes 8-bit RGBA.
    let image = match image {
        DynamicImage::ImageLuma8(_)
        | DynamicImage::ImageLumaA8(_)
        | DynamicImage::ImageRgb8(_)
        | DynamicImage::ImageRgba8(_)
        | DynamicImage::ImageLuma16(_)
        | DynamicImage::ImageLumaA16(_)
        | DynamicImage::ImageRgb16(_)
        | DynamicImage::ImageRgba16(_) => image.clone(),
        _ => DynamicImage::ImageRgba8(image.to_rgba8()),
    };
    encoder
        .write_image(image.as_bytes(), image.width(), image.height(), image.color().into())
        .map_err(encoding_error)?;
    Ok(out)
}
