//! Header-only parsing: magic-number sniffing and dimension reading.
//!
//! Everything here works on a borrowed byte slice, allocates nothing and never
//! touches compressed pixel data, so it is safe to run on hostile input before
//! any decoder sees it. That is what lets [`crate::process`] refuse a
//! decompression bomb (a tiny file whose header claims billions of pixels)
//! without ever allocating the pixel buffer.

use crate::{Format, MediaError};

const PNG_SIGNATURE: &[u8; 8] = b"\x89PNG\r\n\x1a\n";

/// Identify the container from its magic number.
///
/// Only the leading bytes are consulted; a file name or a declared MIME type
/// is attacker-controlled and therefore never used.
pub(crate) fn sniff(bytes: &[u8]) -> Option<Format> {
    if bytes.starts_with(PNG_SIGNATURE) {
        Some(Format::Png)
    } else if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some(Format::Jpeg)
    } else if bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a") {
        Some(Format::Gif)
    } else if bytes.len() >= 12 && &bytes[0..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        Some(Format::Webp)
    } else {
        None
    }
}

fn corrupt(format: Format, what: &str) -> MediaError {
    MediaError::Corrupt(format!("{}: {what}", format.ext()))
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn le16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn le24(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at + 3)?;
    Some(u32::from(s[0]) | u32::from(s[1]) << 8 | u32::from(s[2]) << 16)
}

fn le32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// Read `(width, height)` from the header of `format`.
///
/// Returns [`MediaError::Corrupt`] when the header is missing, truncated or
/// claims a zero-sized image.
pub(crate) fn dimensions(bytes: &[u8], format: Format) -> Result<(u32, u32), MediaError> {
    let dims = match format {
        Format::Png => png(bytes),
        Format::Jpeg => jpeg(bytes).map(|j| (j.width, j.height)),
        Format::Gif => gif(bytes),
        Format::Webp => webp(bytes),
    }
    .ok_or_else(|| corrupt(format, "unreadable or truncated header"))?;
    if dims.0 == 0 || dims.1 == 0 {
        return Err(corrupt(format, "header declares a zero-sized image"));
    }
    Ok(dims)
}

/// PNG: the first chunk must be IHDR (13 bytes); width and height are the
/// first two big-endian u32s of its data.
fn png(b: &[u8]) -> Option<(u32, u32)> {
    if !b.starts_with(PNG_SIGNATURE) || be32(b, 8)? != 13 || b.get(12..16)? != b"IHDR" {
        return None;
    }
    Some((be32(b, 16)?, be32(b, 20)?))
}

/// What the JPEG segment walk found.
pub(crate) struct JpegHeader {
    pub width: u32,
    pub height: u32,
    /// Offset of the first top-level SOS marker, i.e. where entropy-coded
    /// data begins. Used to check for a terminating EOI after it.
    pub scan_start: Option<usize>,
}

/// JPEG: walk the marker segments (skipping APPn/COM/DQT/... by their length
/// fields, so an EXIF thumbnail inside APP1 is never mistaken for the main
/// frame) until a SOFn segment, whose data is precision, height, width.
pub(crate) fn jpeg(b: &[u8]) -> Option<JpegHeader> {
    if !b.starts_with(&[0xFF, 0xD8]) {
        return None;
    }
    let mut pos = 2;
    let mut frame: Option<(u32, u32)> = None;
    loop {
        if *b.get(pos)? != 0xFF {
            return None;
        }
        // Any number of 0xFF fill bytes may precede a marker.
        while *b.get(pos)? == 0xFF {
            pos += 1;
        }
        let marker = *b.get(pos)?;
        pos += 1;
        match marker {
            // Standalone markers without a length field.
            0x01 | 0xD0..=0xD7 => continue,
            // End of image before any scan: there is no pixel data, but a
            // frame header seen so far is still reported so that the pixel
            // budget is enforced before the decoder calls the file corrupt.
            0xD9 => {
                let (width, height) = frame?;
                return Some(JpegHeader {
                    width,
                    height,
                    scan_start: None,
                });
            }
            0xDA => {
                let (width, height) = frame?;
                return Some(JpegHeader {
                    width,
                    height,
                    scan_start: Some(pos - 2),
                });
            }
            _ => {}
        }
        let len = usize::from(be16(b, pos)?);
        if len < 2 {
            return None;
        }
        // SOF0..SOF15 except DHT (C4), JPG (C8) and DAC (CC).
        let is_sof = matches!(marker, 0xC0..=0xCF) && !matches!(marker, 0xC4 | 0xC8 | 0xCC);
        if is_sof && frame.is_none() {
            let height = u32::from(be16(b, pos + 3)?);
            let width = u32::from(be16(b, pos + 5)?);
            // Height 0 means "defined later by a DNL marker"; we do not
            // accept that, since the size must be known up front.
            frame = Some((width, height));
        }
        pos = pos.checked_add(len)?;
        if pos >= b.len() {
            // The header ended without a scan. If we did see a frame header
            // report it (the decoder will call the file corrupt); this keeps
            // the pixel-count check effective even for header-only bombs.
            let (width, height) = frame?;
            return Some(JpegHeader {
                width,
                height,
                scan_start: None,
            });
        }
    }
}

/// GIF: the logical screen descriptor follows the 6-byte signature as two
/// little-endian u16s, but a frame may extend beyond the screen, and the decoder
/// allocates for the frame. The size reported is the screen grown to cover every
/// frame descriptor found (walking the blocks without decompressing), so the pixel
/// check and its message name the size that would really be allocated.
fn gif(b: &[u8]) -> Option<(u32, u32)> {
    let (mut w, mut h) = (u32::from(le16(b, 6)?), u32::from(le16(b, 8)?));
    let flags = *b.get(10)?;
    let mut at = 13;
    if flags & 0x80 != 0 {
        at += 3 << ((flags & 0x07) + 1);
    }
    // Skip data sub-blocks (length-prefixed, ended by a zero length).
    let skip_sub_blocks = |mut at: usize| -> Option<usize> {
        loop {
            let len = usize::from(*b.get(at)?);
            at += 1;
            if len == 0 {
                return Some(at);
            }
            at += len;
        }
    };
    // A truncated stream keeps what was seen so far: the decoder reports the rest.
    while let Some(&block) = b.get(at) {
        match block {
            0x21 => match skip_sub_blocks(at + 2) {
                Some(next) => at = next,
                None => break,
            },
            0x2C => {
                let (Some(left), Some(top), Some(fw), Some(fh), Some(&fflags)) = (
                    le16(b, at + 1),
                    le16(b, at + 3),
                    le16(b, at + 5),
                    le16(b, at + 7),
                    b.get(at + 9),
                ) else {
                    break;
                };
                w = w.max(u32::from(left) + u32::from(fw));
                h = h.max(u32::from(top) + u32::from(fh));
                at += 10;
                if fflags & 0x80 != 0 {
                    at += 3 << ((fflags & 0x07) + 1);
                }
                // LZW minimum code size, then the image data.
                match skip_sub_blocks(at + 1) {
                    Some(next) => at = next,
                    None => break,
                }
            }
            _ => break,
        }
    }
    Some((w, h))
}

/// WebP: the RIFF header states the file length. The WebP decoder tolerates
/// some truncation (and lossless streams can lose trailing bytes without an
/// error), so a file shorter than its declared length is refused up front.
pub(crate) fn webp_complete(b: &[u8]) -> bool {
    le32(b, 4).is_some_and(|riff| (riff as usize).saturating_add(8) <= b.len())
}

/// WebP: the first chunk after `RIFF....WEBP` is VP8 (lossy), VP8L
/// (lossless) or VP8X (extended, carries the canvas size).
fn webp(b: &[u8]) -> Option<(u32, u32)> {
    let fourcc = b.get(12..16)?;
    let data = 20;
    match fourcc {
        b"VP8 " => {
            // 3-byte frame tag, then the start code 9D 01 2A, then 14-bit
            // width and height (the top two bits are scaling hints).
            if b.get(data + 3..data + 6)? != [0x9D, 0x01, 0x2A] {
                return None;
            }
            let w = u32::from(le16(b, data + 6)? & 0x3FFF);
            let h = u32::from(le16(b, data + 8)? & 0x3FFF);
            Some((w, h))
        }
        b"VP8L" => {
            if *b.get(data)? != 0x2F {
                return None;
            }
            let bits = le32(b, data + 1)?;
            Some(((bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1))
        }
        b"VP8X" => Some((le24(b, data + 4)? + 1, le24(b, data + 7)? + 1)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniff_needs_full_magic() {
        assert_eq!(sniff(b""), None);
        assert_eq!(sniff(b"\x89PNG"), None);
        assert_eq!(sniff(b"\xFF\xD8"), None);
        assert_eq!(sniff(b"RIFF\0\0\0\0WAVE"), None);
        assert_eq!(sniff(b"GIF89a"), Some(Format::Gif));
        assert_eq!(sniff(b"RIFF\0\0\0\0WEBP"), Some(Format::Webp));
    }

    #[test]
    fn jpeg_skips_app_segments_and_fill_bytes() {
        // SOI, APP1 whose payload contains a fake SOF, fill bytes, SOF0, SOS.
        let mut j = vec![0xFF, 0xD8, 0xFF, 0xE1, 0x00, 0x09];
        j.extend_from_slice(&[0xFF, 0xC0, 0x00, 0x11, 0x08, 0x00, 0x01]);
        j.extend_from_slice(&[0xFF, 0xFF, 0xFF, 0xC0, 0x00, 0x0B, 0x08]);
        j.extend_from_slice(&[0x00, 0x20, 0x00, 0x40, 0x01, 0x01, 0x11, 0x00]);
        j.extend_from_slice(&[0xFF, 0xDA, 0x00, 0x02]);
        let h = jpeg(&j).expect("parsed");
        assert_eq!((h.width, h.height), (64, 32));
        assert!(h.scan_start.is_some());
    }

    #[test]
    fn webp_variants() {
        let mut vp8x = b"RIFF\0\0\0\0WEBPVP8X\x0a\0\0\0\0\0\0\0".to_vec();
        vp8x.extend_from_slice(&[0x1F, 0x03, 0x00, 0xDF, 0x01, 0x00]);
        assert_eq!(webp(&vp8x), Some((800, 480)));

        let mut vp8 = b"RIFF\0\0\0\0WEBPVP8 \0\0\0\0\0\0\0\x9d\x01\x2a".to_vec();
        vp8.extend_from_slice(&[0x80, 0x02, 0xE0, 0x41]); // 640, 480 | scale bits
        assert_eq!(webp(&vp8), Some((640, 480)));

        let mut vp8l = b"RIFF\0\0\0\0WEBPVP8L\0\0\0\0".to_vec();
        let bits: u32 = 99 | (49 << 14);
        vp8l.push(0x2F);
        vp8l.extend_from_slice(&bits.to_le_bytes());
        assert_eq!(webp(&vp8l), Some((100, 50)));
    }

    #[test]
    fn zero_and_truncated_headers_are_corrupt() {
        assert!(matches!(
            dimensions(b"GIF89a\0\0\x01\0", Format::Gif),
            Err(MediaError::Corrupt(_))
        ));
        assert!(matches!(
            dimensions(b"GIF89a\x01", Format::Gif),
            Err(MediaError::Corrupt(_))
        ));
        assert!(matches!(
            dimensions(b"\xFF\xD8\xFF\xE0\x00", Format::Jpeg),
            Err(MediaError::Corrupt(_))
        ));
    }
}
