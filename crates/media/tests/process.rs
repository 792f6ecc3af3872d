//! End-to-end tests of the intake pipeline. Every fixture is generated here,
//! so the repository holds no binary files.

use std::borrow::Cow;
use std::io::Cursor;

use image::codecs::jpeg::JpegEncoder;
use image::{DynamicImage, GenericImageView, ImageFormat, Rgb, RgbImage, Rgba, RgbaImage};
use lingshi_media::{dimensions, process, sniff, Format, Limits, MediaError, Processed};

// ---------------------------------------------------------------- fixtures

/// A gradient with a pure red 32x32 square in the top-left corner, so that
/// rotations can be verified by looking at where the red ended up.
fn photo(w: u32, h: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| {
        if x < 32 && y < 32 {
            Rgb([255, 0, 0])
        } else {
            Rgb([0, (x * 255 / w) as u8, (y * 255 / h) as u8])
        }
    })
}

fn encode(img: &DynamicImage, format: ImageFormat) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, format).expect("fixture encodes");
    out.into_inner()
}

fn png_bytes(w: u32, h: u32) -> Vec<u8> {
    encode(&DynamicImage::ImageRgb8(photo(w, h)), ImageFormat::Png)
}

fn jpeg_bytes(w: u32, h: u32) -> Vec<u8> {
    let mut out = Vec::new();
    DynamicImage::ImageRgb8(photo(w, h))
        .write_with_encoder(JpegEncoder::new_with_quality(&mut out, 90))
        .expect("fixture encodes");
    out
}

fn webp_bytes(w: u32, h: u32) -> Vec<u8> {
    encode(&DynamicImage::ImageRgb8(photo(w, h)), ImageFormat::WebP)
}

/// A GIF with a 4-colour palette and horizontal stripes.
fn gif_bytes(w: u16, h: u16) -> Vec<u8> {
    let palette = [255, 0, 0, 0, 255, 0, 0, 0, 255, 255, 255, 255];
    let indices: Vec<u8> = (0..u32::from(w) * u32::from(h))
        .map(|i| ((i / u32::from(w) / 8) % 4) as u8)
        .collect();
    let mut out = Vec::new();
    {
        let mut enc = gif::Encoder::new(&mut out, w, h, &palette).expect("gif header");
        let frame = gif::Frame {
            width: w,
            height: h,
            buffer: Cow::Borrowed(&indices),
            ..gif::Frame::default()
        };
        enc.write_frame(&frame).expect("gif frame");
    }
    out
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn png_chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
    let mut c = (data.len() as u32).to_be_bytes().to_vec();
    c.extend_from_slice(kind);
    c.extend_from_slice(data);
    let mut crc_input = kind.to_vec();
    crc_input.extend_from_slice(data);
    c.extend_from_slice(&crc32(&crc_input).to_be_bytes());
    c
}

/// Insert a chunk right after IHDR (signature 8 bytes + IHDR 25 bytes).
fn png_with_chunk(png: &[u8], chunk: &[u8]) -> Vec<u8> {
    let mut out = png[..33].to_vec();
    out.extend_from_slice(chunk);
    out.extend_from_slice(&png[33..]);
    out
}

const LATITUDE: [(u32, u32); 3] = [(55, 1), (45, 1), (216_317, 10_000)];
const LONGITUDE: [(u32, u32); 3] = [(37, 1), (37, 1), (93_441, 10_000)];

fn rationals(values: &[(u32, u32); 3]) -> Vec<u8> {
    values
        .iter()
        .flat_map(|(n, d)| n.to_le_bytes().into_iter().chain(d.to_le_bytes()))
        .collect()
}

fn ifd_entry(tag: u16, kind: u16, count: u32, value: [u8; 4]) -> Vec<u8> {
    let mut e = tag.to_le_bytes().to_vec();
    e.extend_from_slice(&kind.to_le_bytes());
    e.extend_from_slice(&count.to_le_bytes());
    e.extend_from_slice(&value);
    e
}

/// A little-endian TIFF structure as found after `Exif\0\0`: IFD0 holds
/// Orientation and a GPSInfo pointer; the GPS IFD holds latitude/longitude.
fn exif_tiff(orientation: u16) -> Vec<u8> {
    const SHORT: u16 = 3;
    const LONG: u16 = 4;
    const ASCII: u16 = 2;
    const RATIONAL: u16 = 5;
    let ifd0_at = 8u32;
    let gps_at = ifd0_at + 2 + 2 * 12 + 4; // 38
    let lat_at = gps_at + 2 + 4 * 12 + 4; // 92
    let lon_at = lat_at + 24;

    let mut t = b"II*\0".to_vec();
    t.extend_from_slice(&ifd0_at.to_le_bytes());
    t.extend_from_slice(&2u16.to_le_bytes());
    let mut o = [0u8; 4];
    o[..2].copy_from_slice(&orientation.to_le_bytes());
    t.extend(ifd_entry(0x0112, SHORT, 1, o));
    t.extend(ifd_entry(0x8825, LONG, 1, gps_at.to_le_bytes()));
    t.extend_from_slice(&0u32.to_le_bytes());
    assert_eq!(t.len() as u32, gps_at);

    t.extend_from_slice(&4u16.to_le_bytes());
    t.extend(ifd_entry(0x0001, ASCII, 2, *b"N\0\0\0"));
    t.extend(ifd_entry(0x0002, RATIONAL, 3, lat_at.to_le_bytes()));
    t.extend(ifd_entry(0x0003, ASCII, 2, *b"E\0\0\0"));
    t.extend(ifd_entry(0x0004, RATIONAL, 3, lon_at.to_le_bytes()));
    t.extend_from_slice(&0u32.to_le_bytes());
    assert_eq!(t.len() as u32, lat_at);
    t.extend(rationals(&LATITUDE));
    t.extend(rationals(&LONGITUDE));
    t
}

/// Insert an APP1 EXIF segment right after SOI.
fn jpeg_with_exif(jpeg: &[u8], tiff: &[u8]) -> Vec<u8> {
    let mut out = jpeg[..2].to_vec();
    out.extend_from_slice(&[0xFF, 0xE1]);
    out.extend_from_slice(&((2 + 6 + tiff.len()) as u16).to_be_bytes());
    out.extend_from_slice(b"Exif\0\0");
    out.extend_from_slice(tiff);
    out.extend_from_slice(&jpeg[2..]);
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn decode(bytes: &[u8]) -> DynamicImage {
    image::load_from_memory(bytes).expect("output decodes")
}

/// Common checks for an accepted upload.
fn check_accepted(p: &Processed, content_type: &str, ext: &str, w: u32, h: u32) {
    assert_eq!(p.content_type, content_type);
    assert_eq!(p.ext, ext);
    assert_eq!((p.width, p.height), (w, h));
    let stored = decode(&p.bytes);
    assert_eq!(stored.dimensions(), (w, h));
    let expected_format = if content_type == "image/jpeg" {
        ImageFormat::Jpeg
    } else {
        ImageFormat::Png
    };
    assert_eq!(image::guess_format(&p.bytes).unwrap(), expected_format);

    let thumb = decode(&p.thumb);
    let (tw, th) = thumb.dimensions();
    assert!(tw.max(th) <= 512, "thumb {tw}x{th} too big");
    assert!(tw <= w && th <= h, "thumb {tw}x{th} upscaled from {w}x{h}");
    if w.max(h) > 512 {
        assert_eq!(tw.max(th), 512, "longest side scaled to the limit");
    }
    // Aspect ratio kept to within rounding of one pixel.
    let expected_th = f64::from(tw) * f64::from(h) / f64::from(w);
    assert!(
        (f64::from(th) - expected_th).abs() <= 1.0,
        "thumb {tw}x{th} does not keep the aspect of {w}x{h}"
    );
}

fn is_red(p: Rgba<u8>) -> bool {
    p.0[0] > 200 && p.0[1] < 60 && p.0[2] < 60
}

// ---------------------------------------------------------------- accepted

#[test]
fn png_accepted() {
    let p = process(&png_bytes(900, 600), &Limits::default()).unwrap();
    check_accepted(&p, "image/png", "png", 900, 600);
    assert_eq!(p.thumb_content_type, "image/jpeg");
}

#[test]
fn png_with_transparency_gets_png_thumbnail_and_is_not_upscaled() {
    let img = RgbaImage::from_fn(300, 200, |x, _| Rgba([0, 0, 255, (x % 256) as u8]));
    let bytes = encode(&DynamicImage::ImageRgba8(img), ImageFormat::Png);
    let p = process(&bytes, &Limits::default()).unwrap();
    check_accepted(&p, "image/png", "png", 300, 200);
    assert_eq!(p.thumb_content_type, "image/png");
    assert_eq!(decode(&p.thumb).dimensions(), (300, 200));
    assert!(decode(&p.bytes).color().has_alpha());
}

#[test]
fn jpeg_accepted() {
    let p = process(&jpeg_bytes(1024, 640), &Limits::default()).unwrap();
    check_accepted(&p, "image/jpeg", "jpg", 1024, 640);
    assert_eq!(p.thumb_content_type, "image/jpeg");
    assert_eq!(decode(&p.thumb).dimensions(), (512, 320));
}

#[test]
fn webp_accepted_and_stored_as_png() {
    let bytes = webp_bytes(800, 600);
    assert_eq!(sniff(&bytes), Some(Format::Webp));
    assert_eq!(dimensions(&bytes, Format::Webp).unwrap(), (800, 600));
    let p = process(&bytes, &Limits::default()).unwrap();
    check_accepted(&p, "image/png", "png", 800, 600);
    assert_eq!(decode(&p.thumb).dimensions(), (512, 384));
}

#[test]
fn gif_first_frame_accepted_and_stored_as_png() {
    let bytes = gif_bytes(600, 300);
    assert_eq!(sniff(&bytes), Some(Format::Gif));
    let p = process(&bytes, &Limits::default()).unwrap();
    check_accepted(&p, "image/png", "png", 600, 300);
    // Fully opaque GIF: the alpha channel is dropped, so a JPEG thumbnail.
    assert_eq!(p.thumb_content_type, "image/jpeg");
    assert_eq!(decode(&p.thumb).dimensions(), (512, 256));
}

#[test]
fn small_image_is_not_upscaled() {
    let p = process(&jpeg_bytes(120, 80), &Limits::default()).unwrap();
    check_accepted(&p, "image/jpeg", "jpg", 120, 80);
    assert_eq!(decode(&p.thumb).dimensions(), (120, 80));
}

#[test]
fn custom_thumbnail_side_is_honoured() {
    let limits = Limits {
        thumb_max_side: 100,
        ..Limits::default()
    };
    let p = process(&png_bytes(400, 200), &limits).unwrap();
    assert_eq!(decode(&p.thumb).dimensions(), (100, 50));
}

#[test]
fn extreme_aspect_ratio_keeps_a_visible_thumbnail() {
    let p = process(&png_bytes(3000, 2), &Limits::default()).unwrap();
    let (tw, th) = decode(&p.thumb).dimensions();
    assert_eq!(tw, 512);
    assert!(th >= 1);
}

#[test]
fn http_status_mapping() {
    let too_large = MediaError::TooLarge { bytes: 2, max: 1 };
    let bomb = MediaError::TooManyPixels {
        width: 1,
        height: 1,
        max: 0,
    };
    assert_eq!(too_large.http_status(), 413);
    assert_eq!(bomb.http_status(), 413);
    assert_eq!(MediaError::Unsupported(String::new()).http_status(), 415);
    assert_eq!(MediaError::Corrupt(String::new()).http_status(), 415);
}

// ---------------------------------------------------------------- refused

#[test]
fn non_images_are_unsupported() {
    let samples: [&[u8]; 6] = [
        b"",
        b"Dear consul, my passport was stolen.",
        b"%PDF-1.7\n1 0 obj\n<< /Type /Catalog >>\nendobj\n",
        b"<svg xmlns=\"http://www.w3.org/2000/svg\"><script>alert(1)</script></svg>",
        b"<?xml version=\"1.0\"?><svg xmlns=\"http://www.w3.org/2000/svg\"/>",
        b"<!DOCTYPE html><html><body><img src=x onerror=alert(1)></body></html>",
    ];
    for s in samples {
        assert_eq!(sniff(s), None);
        let err = process(s, &Limits::default()).unwrap_err();
        assert!(
            matches!(err, MediaError::Unsupported(_)),
            "{:?} gave {err:?}",
            String::from_utf8_lossy(s)
        );
        assert_eq!(err.http_status(), 415);
    }
}

#[test]
fn png_bomb_is_refused_from_the_header() {
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&30_000u32.to_be_bytes());
    ihdr.extend_from_slice(&30_000u32.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]); // 8-bit RGB, no interlace
    let mut bomb = b"\x89PNG\r\n\x1a\n".to_vec();
    bomb.extend(png_chunk(b"IHDR", &ihdr));
    // A tiny (empty, valid) zlib stream; real bombs compress 2.7 GB of zeros.
    bomb.extend(png_chunk(
        b"IDAT",
        &[0x78, 0x9C, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01],
    ));
    bomb.extend(png_chunk(b"IEND", &[]));
    assert!(bomb.len() < 100);

    assert_eq!(dimensions(&bomb, Format::Png).unwrap(), (30_000, 30_000));
    // Refused from the header: the error names the claimed size, nothing was decoded.
    let err = process(&bomb, &Limits::default()).unwrap_err();
    match err {
        MediaError::TooManyPixels { width, height, max } => {
            assert_eq!((width, height, max), (30_000, 30_000, 40_000_000));
        }
        other => panic!("expected TooManyPixels, got {other:?}"),
    }
}

/// A GIF whose logical screen is tiny but whose one frame is large: the decoder would
/// allocate for the frame, so that is the size checked and reported.
#[test]
fn gif_frame_larger_than_its_screen_is_refused_with_the_frame_size() {
    let (fw, fh) = (1200u16, 1000u16);
    let indices = vec![0u8; usize::from(fw) * usize::from(fh)];
    let palette = [0, 0, 0, 255, 255, 255];
    let mut bytes = Vec::new();
    {
        let mut enc = gif::Encoder::new(&mut bytes, 10, 10, &palette).expect("gif header");
        let frame = gif::Frame {
            width: fw,
            height: fh,
            buffer: Cow::Borrowed(&indices),
            ..gif::Frame::default()
        };
        enc.write_frame(&frame).expect("gif frame");
    }
    let limits = Limits {
        max_pixels: 1_000_000,
        ..Limits::default()
    };
    match process(&bytes, &limits).unwrap_err() {
        MediaError::TooManyPixels { width, height, max } => {
            assert_eq!((width, height, max), (1200, 1000, 1_000_000));
        }
        other => panic!("expected TooManyPixels, got {other:?}"),
    }
    // The same frame inside a screen of its size, under the limit: accepted.
    assert!(process(&gif_bytes(600, 300), &limits).is_ok());
}

#[test]
fn jpeg_bomb_is_refused_from_the_header() {
    let mut bomb = vec![0xFF, 0xD8];
    // SOF0: length 17, precision 8, height, width, 3 components.
    bomb.extend_from_slice(&[0xFF, 0xC0, 0x00, 0x11, 0x08]);
    bomb.extend_from_slice(&20_000u16.to_be_bytes());
    bomb.extend_from_slice(&20_000u16.to_be_bytes());
    bomb.extend_from_slice(&[0x03, 0x01, 0x11, 0x00, 0x02, 0x11, 0x01, 0x03, 0x11, 0x01]);
    bomb.extend_from_slice(&[0xFF, 0xD9]);

    assert_eq!(sniff(&bomb), Some(Format::Jpeg));
    assert_eq!(dimensions(&bomb, Format::Jpeg).unwrap(), (20_000, 20_000));
    let err = process(&bomb, &Limits::default()).unwrap_err();
    assert!(matches!(
        err,
        MediaError::TooManyPixels {
            width: 20_000,
            height: 20_000,
            ..
        }
    ));
    assert_eq!(err.http_status(), 413);
}

#[test]
fn pixel_budget_is_configurable() {
    let limits = Limits {
        max_pixels: 100 * 100,
        ..Limits::default()
    };
    assert!(process(&png_bytes(100, 100), &limits).is_ok());
    assert!(matches!(
        process(&png_bytes(101, 100), &limits),
        Err(MediaError::TooManyPixels { .. })
    ));
}

#[test]
fn oversized_upload_is_refused_before_parsing() {
    // Starts like the PNG bomb: the size check must win.
    let mut big = b"\x89PNG\r\n\x1a\n".to_vec();
    big.resize(11 * 1024 * 1024, 0);
    let err = process(&big, &Limits::default()).unwrap_err();
    match err {
        MediaError::TooLarge { bytes, max } => {
            assert_eq!(bytes, 11 * 1024 * 1024);
            assert_eq!(max, 10 * 1024 * 1024);
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
}

// ---------------------------------------------------------------- metadata

#[test]
fn jpeg_exif_gps_is_stripped_and_orientation_applied() {
    let tiff = exif_tiff(6);
    let lat = rationals(&LATITUDE);
    let bytes = jpeg_with_exif(&jpeg_bytes(640, 400), &tiff);
    assert!(contains(&bytes, b"Exif\0\0"));
    assert!(contains(&bytes, &lat));
    // The header walk skips APP1 and still finds the stored (unrotated) size.
    assert_eq!(dimensions(&bytes, Format::Jpeg).unwrap(), (640, 400));

    let p = process(&bytes, &Limits::default()).unwrap();
    assert_eq!(p.content_type, "image/jpeg");
    for out in [&p.bytes, &p.thumb] {
        assert!(!contains(out, b"Exif"), "Exif marker survived");
        assert!(!contains(out, &lat), "GPS latitude survived");
        assert!(
            !contains(out, &rationals(&LONGITUDE)),
            "GPS longitude survived"
        );
        assert!(!contains(out, b"II*\0"), "TIFF structure survived");
    }

    // Orientation 6 = rotate 90 degrees clockwise for display.
    assert_eq!((p.width, p.height), (400, 640));
    let stored = decode(&p.bytes).to_rgba8();
    assert_eq!(stored.dimensions(), (400, 640));
    // The red top-left corner of the stored pixels is now top-right.
    assert!(is_red(*stored.get_pixel(400 - 8, 8)));
    assert!(!is_red(*stored.get_pixel(8, 8)));
    let thumb = decode(&p.thumb);
    assert_eq!(thumb.dimensions(), (320, 512));
}

#[test]
fn png_exif_orientation_is_applied_and_stripped() {
    let bytes = png_with_chunk(&png_bytes(200, 100), &png_chunk(b"eXIf", &exif_tiff(6)));
    let p = process(&bytes, &Limits::default()).unwrap();
    assert_eq!((p.width, p.height), (100, 200));
    assert!(!contains(&p.bytes, b"eXIf"));
    assert!(!contains(&p.bytes, &rationals(&LATITUDE)));
    let stored = decode(&p.bytes).to_rgba8();
    assert!(is_red(*stored.get_pixel(100 - 8, 8)));
}

/// Wrap a simple lossless WebP (`RIFF WEBP VP8L`) in an extended VP8X
/// container carrying an EXIF chunk, as phone cameras do.
fn webp_with_exif(simple: &[u8], w: u32, h: u32, tiff: &[u8]) -> Vec<u8> {
    assert_eq!(
        &simple[12..16],
        b"VP8L",
        "fixture is a simple lossless WebP"
    );
    let mut body = b"WEBP".to_vec();
    body.extend_from_slice(b"VP8X");
    body.extend_from_slice(&10u32.to_le_bytes());
    body.extend_from_slice(&[0x08, 0, 0, 0]); // EXIF flag
    body.extend_from_slice(&(w - 1).to_le_bytes()[..3]);
    body.extend_from_slice(&(h - 1).to_le_bytes()[..3]);
    body.extend_from_slice(&simple[12..]);
    body.extend_from_slice(b"EXIF");
    body.extend_from_slice(&(tiff.len() as u32).to_le_bytes());
    body.extend_from_slice(tiff);
    if tiff.len() % 2 == 1 {
        body.push(0);
    }
    let mut out = b"RIFF".to_vec();
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend(body);
    out
}

#[test]
fn webp_exif_orientation_is_applied_and_stripped() {
    let bytes = webp_with_exif(&webp_bytes(200, 100), 200, 100, &exif_tiff(6));
    assert_eq!(dimensions(&bytes, Format::Webp).unwrap(), (200, 100));
    let p = process(&bytes, &Limits::default()).unwrap();
    assert_eq!((p.width, p.height), (100, 200));
    assert!(!contains(&p.bytes, b"EXIF"));
    assert!(!contains(&p.bytes, &rationals(&LATITUDE)));
    let stored = decode(&p.bytes).to_rgba8();
    assert!(is_red(*stored.get_pixel(100 - 8, 8)));
}

#[test]
fn png_text_chunk_is_stripped() {
    let bytes = png_with_chunk(&png_bytes(64, 48), &png_chunk(b"tEXt", b"Comment\0secret"));
    assert!(contains(&bytes, b"secret"));
    let p = process(&bytes, &Limits::default()).unwrap();
    assert!(!contains(&p.bytes, b"secret"));
    assert!(!contains(&p.bytes, b"tEXt"));
    assert!(!contains(&p.thumb, b"secret"));
    check_accepted(&p, "image/png", "png", 64, 48);
}

// ---------------------------------------------------------------- damage

#[test]
fn truncated_images_are_refused_without_panicking() {
    // (name, bytes, length of the end marker: IEND chunk, EOI, and for GIF
    // the byte holding the LZW end code + block terminator + trailer).
    // Losing only the end marker leaves every pixel intact (checked: the GIF
    // decodes to identical pixels); PNG and GIF decoders accept that, as
    // browsers do. JPEG and WebP are stricter: see `process`.
    let fixtures = [
        ("png", png_bytes(96, 64), 12),
        ("jpeg", jpeg_bytes(96, 64), 2),
        ("webp", webp_bytes(96, 64), 0),
        ("gif", gif_bytes(96, 64), 3),
    ];
    for (name, full, trailer) in fixtures {
        assert!(process(&full, &Limits::default()).is_ok(), "{name} intact");
        // Cut at many points, from inside the header to the last byte before
        // the format's end marker.
        let last = full.len() - 1 - trailer;
        let cuts = (1..20).map(|i| full.len() * i / 20).chain([last]);
        for cut in cuts {
            let result = process(&full[..cut], &Limits::default());
            assert!(
                matches!(
                    result,
                    Err(MediaError::Corrupt(_)) | Err(MediaError::Unsupported(_))
                ),
                "{name} cut at {cut}/{} gave {:?}",
                full.len(),
                result.map(|p| (p.width, p.height))
            );
        }
    }
}

#[test]
fn garbage_after_a_valid_signature_is_refused() {
    for sig in [
        &b"\x89PNG\r\n\x1a\n"[..],
        b"\xFF\xD8\xFF\xE0",
        b"GIF89a",
        b"RIFF\0\0\0\0WEBP",
    ] {
        let mut bytes = sig.to_vec();
        bytes.extend((0..4096u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8));
        let result = process(&bytes, &Limits::default());
        assert!(
            matches!(
                result,
                Err(MediaError::Corrupt(_))
                    | Err(MediaError::Unsupported(_))
                    | Err(MediaError::TooManyPixels { .. })
            ),
            "{:?}",
            result.map(|p| (p.width, p.height))
        );
    }
}
