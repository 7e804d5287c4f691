//! From uploaded bytes to 8-bit RGB pixels: the format from the magic bytes, the header's
//! dimensions against the limits (before a pixel is decoded), decoding under an allocation
//! limit, EXIF orientation, and every colour mode to RGB as Pillow's `convert("RGB")` does
//! (alpha dropped, not composited; grey replicated; palettes expanded; 16-bit samples keep
//! their high byte).

use std::io::Cursor;

use image::codecs::jpeg::JpegDecoder;
use image::codecs::png::PngDecoder;
use image::codecs::webp::WebPDecoder;
use image::{DynamicImage, ImageDecoder, RgbImage};

use crate::imaging::ImageError;

/// The formats accepted. Everything else is refused before decoding: fewer decoders, a
/// smaller attack surface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Jpeg,
    Png,
    WebP,
}

impl Format {
    /// The media type, for logs and messages.
    pub fn mime(self) -> &'static str {
        match self {
            Self::Jpeg => "image/jpeg",
            Self::Png => "image/png",
            Self::WebP => "image/webp",
        }
    }
}

/// Bounds on what an upload may decode to.
#[derive(Debug, Clone, Copy)]
pub struct DecodeLimits {
    /// Widest and tallest image accepted, pixels.
    pub max_dimension: u32,
    /// Most pixels (width × height) accepted.
    pub max_pixels: u64,
    /// Most bytes a decoder may allocate.
    pub max_alloc: u64,
}

/// The format of `bytes`, from its first bytes.
pub fn sniff(bytes: &[u8]) -> Result<Format, ImageError> {
    if bytes.is_empty() {
        return Err(ImageError::Empty);
    }
    let starts = |magic: &[u8]| bytes.starts_with(magic);
    if starts(&[0xFF, 0xD8, 0xFF]) {
        return Ok(Format::Jpeg);
    }
    if starts(b"\x89PNG\r\n\x1a\n") {
        return Ok(Format::Png);
    }
    if bytes.len() >= 12 && starts(b"RIFF") && &bytes[8..12] == b"WEBP" {
        return Ok(Format::WebP);
    }
    let other = if starts(b"GIF87a") || starts(b"GIF89a") {
        Some("GIF")
    } else if starts(b"II*\0") || starts(b"MM\0*") {
        Some("TIFF")
    } else if starts(b"BM") && bytes.len() >= 14 {
        Some("BMP")
    } else if bytes.len() >= 12 && &bytes[4..8] == b"ftyp" {
        Some("AVIF/HEIF")
    } else if starts(&[0, 0, 1, 0]) {
        Some("ICO")
    } else if starts(b"\xff\x0a") || starts(b"\0\0\0\x0cJXL ") {
        Some("JPEG XL")
    } else {
        None
    };
    Err(match other {
        Some(format) => ImageError::UnsupportedFormat(format),
        None => ImageError::NotAnImage,
    })
}

/// Reads only the header and checks the dimensions against `limits`.
pub fn check_header(
    bytes: &[u8],
    format: Format,
    limits: &DecodeLimits,
) -> Result<(u32, u32), ImageError> {
    let (width, height) = with_decoder(bytes, format, |d| Ok(d.dimensions()))?;
    check_dimensions(width, height, limits)?;
    Ok((width, height))
}

fn check_dimensions(width: u32, height: u32, limits: &DecodeLimits) -> Result<(), ImageError> {
    if width == 0 || height == 0 {
        return Err(ImageError::Invalid(format!(
            "the image is {width}×{height} pixels"
        )));
    }
    let pixels = u64::from(width) * u64::from(height);
    if width > limits.max_dimension || height > limits.max_dimension || pixels > limits.max_pixels {
        return Err(ImageError::TooLarge {
            width,
            height,
            max_dimension: limits.max_dimension,
            max_pixels: limits.max_pixels,
        });
    }
    Ok(())
}

/// Decodes `bytes` to upright 8-bit RGB under `limits`.
pub fn decode(bytes: &[u8], format: Format, limits: &DecodeLimits) -> Result<RgbImage, ImageError> {
    if format == Format::Jpeg && !jpeg_is_complete(bytes) {
        // The JPEG decoder fills a truncated scan with grey and carries on; Pillow refuses
        // such a file ("image file is truncated"), and a prediction on half an image is
        // not one a client asked for.
        return Err(ImageError::Invalid(
            "the JPEG is truncated (no end-of-image marker after its scan)".to_owned(),
        ));
    }
    let image = with_decoder(bytes, format, |mut decoder| {
        let (width, height) = decoder.dimensions();
        check_dimensions(width, height, limits)?;
        let mut bounds = image::Limits::default();
        bounds.max_image_width = Some(limits.max_dimension);
        bounds.max_image_height = Some(limits.max_dimension);
        bounds.max_alloc = Some(limits.max_alloc);
        decoder.set_limits(bounds).map_err(decode_error)?;
        // A missing or unreadable EXIF block means "as stored", as it does for Pillow.
        let orientation = decoder
            .orientation()
            .unwrap_or(image::metadata::Orientation::NoTransforms);
        let mut image = DynamicImage::from_decoder(decoder).map_err(decode_error)?;
        image.apply_orientation(orientation);
        Ok(image)
    })?;
    Ok(to_rgb8(image))
}

/// Whether an end-of-image marker (`FF D9`) follows the first start-of-scan (`FF DA`).
/// Entropy-coded data never holds `FF D9` (a data `FF` is stuffed as `FF 00`), so the marker
/// after the scan is the image's end, and a file cut short lacks it.
fn jpeg_is_complete(bytes: &[u8]) -> bool {
    let Some(sos) = bytes.windows(2).position(|w| w == [0xFF, 0xDA]) else {
        return false;
    };
    bytes[sos..].windows(2).any(|w| w == [0xFF, 0xD9])
}

/// Runs `f` on a decoder for `format` over `bytes`.
fn with_decoder<T>(
    bytes: &[u8],
    format: Format,
    f: impl FnOnce(Box<dyn ImageDecoder + '_>) -> Result<T, ImageError>,
) -> Result<T, ImageError> {
    let cursor = Cursor::new(bytes);
    let decoder: Box<dyn ImageDecoder> = match format {
        Format::Jpeg => Box::new(JpegDecoder::new(cursor).map_err(decode_error)?),
        Format::Png => Box::new(PngDecoder::new(cursor).map_err(decode_error)?),
        Format::WebP => Box::new(WebPDecoder::new(cursor).map_err(decode_error)?),
    };
    f(decoder)
}

fn decode_error(e: image::ImageError) -> ImageError {
    match e {
        image::ImageError::Limits(l) => ImageError::DecodeLimit(l.to_string()),
        other => ImageError::Invalid(other.to_string()),
    }
}

/// Pillow's `convert("RGB")`: alpha dropped, grey replicated, 16-bit samples reduced to
/// their high byte (what Pillow does for 16-bit RGB PNGs; for 16-bit grey Pillow clips at
/// 255, which whitens the image, so there we scale like RGB instead).
fn to_rgb8(image: DynamicImage) -> RgbImage {
    let (width, height) = (image.width(), image.height());
    let high = |v: u16| (v >> 8) as u8;
    match image {
        DynamicImage::ImageRgb8(rgb) => rgb,
        DynamicImage::ImageRgba8(rgba) => RgbImage::from_fn(width, height, |x, y| {
            let p = rgba.get_pixel(x, y).0;
            image::Rgb([p[0], p[1], p[2]])
        }),
        DynamicImage::ImageLuma8(l) => RgbImage::from_fn(width, height, |x, y| {
            let v = l.get_pixel(x, y).0[0];
            image::Rgb([v, v, v])
        }),
        DynamicImage::ImageLumaA8(la) => RgbImage::from_fn(width, height, |x, y| {
            let v = la.get_pixel(x, y).0[0];
            image::Rgb([v, v, v])
        }),
        DynamicImage::ImageRgb16(rgb) => RgbImage::from_fn(width, height, |x, y| {
            let p = rgb.get_pixel(x, y).0;
            image::Rgb([high(p[0]), high(p[1]), high(p[2])])
        }),
        DynamicImage::ImageRgba16(rgba) => RgbImage::from_fn(width, height, |x, y| {
            let p = rgba.get_pixel(x, y).0;
            image::Rgb([high(p[0]), high(p[1]), high(p[2])])
        }),
        DynamicImage::ImageLuma16(l) => RgbImage::from_fn(width, height, |x, y| {
            let v = high(l.get_pixel(x, y).0[0]);
            image::Rgb([v, v, v])
        }),
        DynamicImage::ImageLumaA16(la) => RgbImage::from_fn(width, height, |x, y| {
            let v = high(la.get_pixel(x, y).0[0]);
            image::Rgb([v, v, v])
        }),
        // Float images come from none of the accepted formats; the crate's conversion
        // (clamp and round) is as good as any.
        other => other.to_rgb8(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_are_told_by_their_magic() {
        assert_eq!(sniff(&[0xFF, 0xD8, 0xFF, 0xE0]).ok(), Some(Format::Jpeg));
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\n....").ok(), Some(Format::Png));
        assert_eq!(sniff(b"RIFF\0\0\0\0WEBPVP8 ").ok(), Some(Format::WebP));
        assert!(matches!(sniff(b""), Err(ImageError::Empty)));
        assert!(matches!(
            sniff(b"GIF89a\x01\0"),
            Err(ImageError::UnsupportedFormat("GIF"))
        ));
        assert!(matches!(
            sniff(b"II*\0\x08\0\0\0"),
            Err(ImageError::UnsupportedFormat("TIFF"))
        ));
        assert!(matches!(sniff(b"hello world"), Err(ImageError::NotAnImage)));
        assert!(matches!(
            sniff(b"RIFF\0\0\0\0WAVE"),
            Err(ImageError::NotAnImage)
        ));
    }

    #[test]
    fn modes_become_rgb_as_pillow_converts_them() {
        let rgba = DynamicImage::ImageRgba8(image::RgbaImage::from_pixel(
            1,
            1,
            image::Rgba([10, 20, 30, 0]),
        ));
        assert_eq!(to_rgb8(rgba).get_pixel(0, 0).0, [10, 20, 30]);
        let grey = DynamicImage::ImageLuma8(image::GrayImage::from_pixel(1, 1, image::Luma([7])));
        assert_eq!(to_rgb8(grey).get_pixel(0, 0).0, [7, 7, 7]);
        let deep = DynamicImage::ImageRgb16(image::ImageBuffer::from_pixel(
            1,
            1,
            image::Rgb([0x12ff, 0xff00, 0x00ff]),
        ));
        assert_eq!(to_rgb8(deep).get_pixel(0, 0).0, [0x12, 0xff, 0x00]);
    }

    #[test]
    fn a_jpeg_without_its_end_marker_is_truncated() {
        let whole = [
            0xFF, 0xD8, 0xFF, 0xDA, 0x00, 0x01, 0xFF, 0x00, 0x12, 0xFF, 0xD9,
        ];
        assert!(jpeg_is_complete(&whole));
        assert!(!jpeg_is_complete(&whole[..whole.len() - 2]));
        // An EOI before the scan (an EXIF thumbnail's) does not count.
        assert!(!jpeg_is_complete(&[
            0xFF, 0xD8, 0xFF, 0xD9, 0xFF, 0xDA, 0x01
        ]));
        assert!(!jpeg_is_complete(&[0xFF, 0xD8, 0xFF, 0xE0]));
    }

    #[test]
    fn dimensions_over_the_limits_are_refused() {
        let limits = DecodeLimits {
            max_dimension: 100,
            max_pixels: 5000,
            max_alloc: 1 << 20,
        };
        assert!(check_dimensions(100, 50, &limits).is_ok());
        assert!(matches!(
            check_dimensions(101, 1, &limits),
            Err(ImageError::TooLarge { .. })
        ));
        assert!(matches!(
            check_dimensions(100, 51, &limits),
            Err(ImageError::TooLarge { .. })
        ));
        assert!(matches!(
            check_dimensions(0, 5, &limits),
            Err(ImageError::Invalid(_))
        ));
    }
}
