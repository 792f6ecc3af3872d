//! Safe intake of images that citizens attach in chat (a police report, a
//! damaged passport page).
//!
//! Uploaded bytes are hostile until proven otherwise: they may not be an image
//! at all (SVG with script, HTML, PDF), may be a decompression bomb, or may
//! carry metadata the citizen never meant to share (GPS position, camera
//! serial, editing history). [`process`] turns such bytes into a freshly
//! encoded image plus thumbnail that contain pixels and nothing else.
//!
//! The pipeline, in order, and why each step sits where it does:
//!
//! 1. **Size check** on the raw byte count, before any parsing, so oversized
//!    uploads cost nothing.
//! 2. **Sniff** the format from magic numbers ([`sniff`]); names and declared
//!    MIME types are ignored because the sender controls them.
//! 3. **Header dimensions** ([`dimensions`]) parsed by hand and checked
//!    against [`Limits::max_pixels`], so a bomb is refused before a single
//!    pixel buffer is allocated.
//! 4. **Decode** with `image`'s own [`image::Limits`] (maximum width/height
//!    pinned to the vetted header, bounded allocation) as a second guard in
//!    case a decoder disagrees with our header parse.
//! 5. **Orient**: apply the EXIF Orientation tag to the pixels, because the tag
//!    itself is about to be thrown away with the rest of the metadata.
//! 6. **Re-encode** from pixels, which is what strips EXIF/GPS/XMP/ICC/text
//!    chunks: nothing from the original container is copied.
//! 7. **Thumbnail**: longest side at most [`Limits::thumb_max_side`], never
//!    upscaled; JPEG unless the image has real transparency, then PNG.

#![warn(missing_docs)]

mod header;

use std::io::Cursor;
use std::panic::{catch_unwind, AssertUnwindSafe};

use image::codecs::jpeg::JpegEncoder;
use image::codecs::png::PngEncoder;
use image::metadata::Orientation;
use image::{DynamicImage, ImageDecoder, ImageError, ImageFormat, ImageReader};

/// JPEG quality for the stored copy: high enough that text on a photographed
/// document stays legible after one more lossy generation.
pub const JPEG_QUALITY: u8 = 88;

/// JPEG quality for thumbnails, which are only previews in the agent console.
pub const THUMB_JPEG_QUALITY: u8 = 80;

/// Resource limits for one upload.
///
/// Exists so the HTTP layer and tests can tighten or relax the budget without
/// touching the pipeline; the defaults suit phone photos of documents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest accepted upload in bytes (default 10 MiB); checked before any
    /// parsing so oversized bodies cost nothing.
    pub max_bytes: usize,
    /// Largest accepted `width * height` (default 40 000 000, above any phone
    /// camera); checked on the header to refuse decompression bombs.
    pub max_pixels: u64,
    /// Longest side of the generated thumbnail in pixels (default 512).
    pub thumb_max_side: u32,
}

impl Default for Limits {
    /// 10 MiB, 40 megapixels, 512 px thumbnails: generous for a phone photo
    /// of a document, small enough to bound server memory per request.
    fn default() -> Self {
        Limits {
            max_bytes: 10 * 1024 * 1024,
            max_pixels: 40_000_000,
            thumb_max_side: 512,
        }
    }
}

/// Why an upload was refused. Each variant maps to one HTTP status (see
/// [`MediaError::http_status`]) so the handler does not have to guess.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    /// The upload exceeds [`Limits::max_bytes`]; refused before parsing.
    #[error("upload is {bytes} bytes, the limit is {max}")]
    TooLarge {
        /// Size of the upload.
        bytes: usize,
        /// The configured limit.
        max: usize,
    },
    /// The bytes are not PNG, JPEG, WebP or GIF (SVG, PDF, HTML, text, empty
    /// or unrecognisable input), or use a feature the decoder refuses.
    #[error("unsupported media: {0}")]
    Unsupported(String),
    /// The header declares more pixels than [`Limits::max_pixels`]: a
    /// probable decompression bomb, refused before decoding.
    #[error("image is {width}x{height} pixels, the limit is {max} pixels")]
    TooManyPixels {
        /// Width declared by the header.
        width: u32,
        /// Height declared by the header.
        height: u32,
        /// The configured pixel budget.
        max: u64,
    },
    /// The bytes start like a supported image but cannot be decoded
    /// (truncated, damaged, inconsistent header).
    #[error("corrupt image: {0}")]
    Corrupt(String),
}

impl MediaError {
    /// The HTTP status the upload endpoint should answer with, kept here so
    /// every caller maps errors the same way: 413 for anything too big, 415
    /// for anything that is not an acceptable image.
    pub fn http_status(&self) -> u16 {
        match self {
            MediaError::TooLarge { .. } | MediaError::TooManyPixels { .. } => 413,
            MediaError::Unsupported(_) | MediaError::Corrupt(_) => 415,
        }
    }
}

/// The image containers accepted from citizens. Anything else (notably SVG,
/// which can carry script) is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// Portable Network Graphics.
    Png,
    /// JPEG (JFIF or EXIF container).
    Jpeg,
    /// WebP, lossy or lossless, possibly in an extended (VP8X) container.
    Webp,
    /// GIF 87a/89a; only the first frame is kept.
    Gif,
}

impl Format {
    /// MIME type, for `Content-Type` headers when serving the file.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Png => "image/png",
            Format::Jpeg => "image/jpeg",
            Format::Webp => "image/webp",
            Format::Gif => "image/gif",
        }
    }

    /// File extension (without dot), for the storage key.
    pub fn ext(self) -> &'static str {
        match self {
            Format::Png => "png",
            Format::Jpeg => "jpg",
            Format::Webp => "webp",
            Format::Gif => "gif",
        }
    }

    fn image_format(self) -> ImageFormat {
        match self {
            Format::Png => ImageFormat::Png,
            Format::Jpeg => ImageFormat::Jpeg,
            Format::Webp => ImageFormat::WebP,
            Format::Gif => ImageFormat::Gif,
        }
    }

    /// Format of the stored copy. JPEG stays JPEG (re-encoding a photo
    /// losslessly would multiply its size); PNG stays PNG. WebP and GIF become
    /// PNG: lossless, so no second generation loss, universally viewable in
    /// the agent console and case-file exports, and `image` has a mature PNG
    /// encoder (its WebP encoder is lossless-only and less compact).
    fn output(self) -> Format {
        match self {
            Format::Jpeg => Format::Jpeg,
            Format::Png | Format::Webp | Format::Gif => Format::Png,
        }
    }
}

/// A sanitised upload, ready to store: only pixels survived.
#[derive(Debug, Clone)]
pub struct Processed {
    /// MIME type of [`Processed::bytes`]: `image/png` or `image/jpeg` (WebP
    /// and GIF input are stored as PNG).
    pub content_type: &'static str,
    /// Extension matching `content_type`: `png` or `jpg`.
    pub ext: &'static str,
    /// The re-encoded image, free of any metadata from the upload.
    pub bytes: Vec<u8>,
    /// Width after applying the EXIF orientation, i.e. as displayed.
    pub width: u32,
    /// Height after applying the EXIF orientation, i.e. as displayed.
    pub height: u32,
    /// Preview whose longest side is at most [`Limits::thumb_max_side`];
    /// never larger than the image itself.
    pub thumb: Vec<u8>,
    /// MIME type of the thumbnail: `image/jpeg`, or `image/png` when the
    /// image has transparent pixels.
    pub thumb_content_type: &'static str,
}

/// Decide the type from the bytes only (magic numbers), never a file name or
/// declared type, since both are chosen by the sender.
pub fn sniff(bytes: &[u8]) -> Option<Format> {
    header::sniff(bytes)
}

/// Read dimensions from the header without decoding pixel data, so the pixel
/// budget can be enforced before any allocation proportional to the image.
///
/// Returns [`MediaError::Corrupt`] if the header is truncated, malformed or
/// declares a zero-sized image.
pub fn dimensions(bytes: &[u8], format: Format) -> Result<(u32, u32), MediaError> {
    header::dimensions(bytes, format)
}

/// Turn an untrusted upload into a metadata-free image plus thumbnail.
///
/// Steps: size check, [`sniff`], header [`dimensions`] against
/// [`Limits::max_pixels`], decode under `image`'s own limits, apply the EXIF
/// orientation (JPEG APP1, WebP EXIF chunk, PNG eXIf), re-encode, thumbnail.
///
/// Output formats: JPEG is re-encoded as JPEG at quality [`JPEG_QUALITY`];
/// PNG as PNG; WebP as PNG (lossless); GIF as a PNG of its first frame only
/// (animation is dropped). An alpha channel in which every pixel is opaque is
/// removed, which makes the PNG smaller and the thumbnail a JPEG.
///
/// Never panics on malformed input: decoder panics are caught and reported as
/// [`MediaError::Corrupt`].
pub fn process(bytes: &[u8], limits: &Limits) -> Result<Processed, MediaError> {
    if bytes.len() > limits.max_bytes {
        return Err(MediaError::TooLarge {
            bytes: bytes.len(),
            max: limits.max_bytes,
        });
    }
    let format = sniff(bytes).ok_or_else(|| {
        MediaError::Unsupported(if bytes.is_empty() {
            "empty upload".to_owned()
        } else {
            "not a PNG, JPEG, WebP or GIF image".to_owned()
        })
    })?;
    let (width, height) = dimensions(bytes, format)?;
    let too_many = || MediaError::TooManyPixels {
        width,
        height,
        max: limits.max_pixels,
    };
    if u64::from(width) * u64::from(height) > limits.max_pixels {
        return Err(too_many());
    }
    match format {
        Format::Jpeg => require_jpeg_eoi(bytes)?,
        Format::Webp if !header::webp_complete(bytes) => {
            return Err(MediaError::Corrupt(
                "webp: truncated (shorter than its RIFF header says)".to_owned(),
            ));
        }
        _ => {}
    }

    let mut img = catch_unwind(AssertUnwindSafe(|| decode(bytes, format, width, height)))
        .map_err(|_| MediaError::Corrupt(format!("{} decoder failed", format.ext())))?
        .map_err(|e| match e {
            ImageError::Limits(_) => too_many(),
            ImageError::Unsupported(e) => MediaError::Unsupported(e.to_string()),
            other => MediaError::Corrupt(other.to_string()),
        })?;

    if img.color().has_alpha() && is_opaque(&img) {
        img = drop_alpha(img);
    }

    let out = format.output();
    let encoded = match out {
        Format::Jpeg => encode_jpeg(&img, JPEG_QUALITY),
        _ => encode_png(&img),
    }
    .map_err(|e| MediaError::Corrupt(format!("re-encoding failed: {e}")))?;

    let side = limits.thumb_max_side.max(1);
    let thumb_img = if img.width() > side || img.height() > side {
        img.thumbnail(side, side)
    } else {
        img.clone()
    };
    let (thumb, thumb_content_type) = if thumb_img.color().has_alpha() {
        (
            encode_png(&DynamicImage::ImageRgba8(thumb_img.to_rgba8())),
            "image/png",
        )
    } else {
        (encode_jpeg(&thumb_img, THUMB_JPEG_QUALITY), "image/jpeg")
    };
    let thumb = thumb.map_err(|e| MediaError::Corrupt(format!("thumbnail failed: {e}")))?;

    Ok(Processed {
        content_type: out.content_type(),
        ext: out.ext(),
        bytes: encoded,
        width: img.width(),
        height: img.height(),
        thumb,
        thumb_content_type,
    })
}

/// Decode with `image`'s limits pinned to the header we already vetted, then
/// apply the EXIF orientation.
fn decode(
    bytes: &[u8],
    format: Format,
    width: u32,
    height: u32,
) -> Result<DynamicImage, ImageError> {
    // Worst case among the accepted formats is 16-bit RGBA (8 bytes per
    // pixel); the headroom covers decoder scratch buffers.
    let budget = u64::from(width) * u64::from(height) * 8 + 64 * 1024 * 1024;
    let mut image_limits = image::Limits::default();
    image_limits.max_image_width = Some(width);
    image_limits.max_image_height = Some(height);
    image_limits.max_alloc = Some(budget);

    let mut reader = ImageReader::with_format(Cursor::new(bytes), format.image_format());
    reader.limits(image_limits.clone());
    let mut decoder = reader.into_decoder()?;
    // `into_decoder` does not account for the output buffer (only
    // `ImageReader::decode` does), so reserve it here.
    image_limits.reserve(decoder.total_bytes())?;
    // A damaged EXIF block must not block an upload whose pixels are fine:
    // the metadata is being discarded anyway.
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    let mut img = DynamicImage::from_decoder(decoder)?;
    img.apply_orientation(orientation);
    Ok(img)
}

/// The JPEG decoder pads a truncated scan with grey instead of failing, which
/// would silently store half a document. Require the EOI marker after the
/// first top-level scan (an EXIF thumbnail's EOI lives inside APP1, before it,
/// so it does not count).
fn require_jpeg_eoi(bytes: &[u8]) -> Result<(), MediaError> {
    let truncated = || MediaError::Corrupt("jpg: truncated (no end-of-image marker)".to_owned());
    let scan_start = header::jpeg(bytes)
        .and_then(|h| h.scan_start)
        .ok_or_else(truncated)?;
    if bytes[scan_start..].windows(2).any(|w| w == [0xFF, 0xD9]) {
        Ok(())
    } else {
        Err(truncated())
    }
}

fn is_opaque(img: &DynamicImage) -> bool {
    match img {
        DynamicImage::ImageLumaA8(b) => b.pixels().all(|p| p.0[1] == u8::MAX),
        DynamicImage::ImageRgba8(b) => b.pixels().all(|p| p.0[3] == u8::MAX),
        DynamicImage::ImageLumaA16(b) => b.pixels().all(|p| p.0[1] == u16::MAX),
        DynamicImage::ImageRgba16(b) => b.pixels().all(|p| p.0[3] == u16::MAX),
        DynamicImage::ImageRgba32F(b) => b.pixels().all(|p| p.0[3] >= 1.0),
        _ => !img.color().has_alpha(),
    }
}

fn drop_alpha(img: DynamicImage) -> DynamicImage {
    match img {
        DynamicImage::ImageLumaA8(_) => DynamicImage::ImageLuma8(img.to_luma8()),
        DynamicImage::ImageLumaA16(_) => DynamicImage::ImageLuma16(img.to_luma16()),
        DynamicImage::ImageRgba16(_) => DynamicImage::ImageRgb16(img.to_rgb16()),
        DynamicImage::ImageRgba8(_) | DynamicImage::ImageRgba32F(_) => {
            DynamicImage::ImageRgb8(img.to_rgb8())
        }
        other => other,
    }
}

/// JPEG has no alpha and only 8-bit samples: keep greyscale as greyscale,
/// everything else becomes 8-bit RGB.
fn encode_jpeg(img: &DynamicImage, quality: u8) -> Result<Vec<u8>, ImageError> {
    let mut out = Vec::new();
    let encoder = JpegEncoder::new_with_quality(&mut out, quality);
    match img {
        DynamicImage::ImageLuma8(_) => img.write_with_encoder(encoder)?,
        DynamicImage::ImageLuma16(_) | DynamicImage::ImageLumaA8(_) => {
            DynamicImage::ImageLuma8(img.to_luma8()).write_with_encoder(encoder)?
        }
        DynamicImage::ImageRgb8(_) => img.write_with_encoder(encoder)?,
        _ => DynamicImage::ImageRgb8(img.to_rgb8()).write_with_encoder(encoder)?,
    }
    Ok(out)
}

/// PNG keeps 8- and 16-bit data as is; float data (not produced by the
/// accepted decoders, handled for completeness) becomes 16-bit RGBA.
fn encode_png(img: &DynamicImage) -> Result<Vec<u8>, ImageError> {
    let mut out = Vec::new();
    let encoder = PngEncoder::new(&mut out);
    match img {
        DynamicImage::ImageRgb32F(_) | DynamicImage::ImageRgba32F(_) => {
            DynamicImage::ImageRgba16(img.to_rgba16()).write_with_encoder(encoder)?
        }
        _ => img.write_with_encoder(encoder)?,
    }
    Ok(out)
}
