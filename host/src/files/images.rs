//! Images among uploads: a limit on pixels, read from the header before a single pixel is
//! decoded (a decompression bomb — a few KiB declaring a gigapixel — is refused there);
//! EXIF metadata (location, camera, times) stripped, the orientation alone kept; and a
//! PNG thumbnail for previews, so that clients never decode the original to show it.
//!
//! Decoding an image holds `width × height × 4` bytes at most (the pixel limit bounds it,
//! and the decoder is given that allocation limit too); everything here is CPU work, run on
//! the blocking pool by the caller.

use std::io::Cursor;

use bytes::Bytes;
use image::metadata::Orientation;
use image::{ImageFormat, ImageReader, Limits};
use img_parts::{DynImage, ImageEXIF as _};

use crate::config::ImagesConfig;

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error(
        "the image is {width}×{height} pixels, more than the {limit} allowed (files.images.max_pixels)"
    )]
    TooManyPixels { width: u32, height: u32, limit: u64 },
    #[error("images may have at most {limit} bytes to be processed (files.images.max_bytes)")]
    TooLarge { limit: u64 },
    #[error("the image cannot be read: {0}")]
    Unreadable(String),
}

/// The types handled here (what `files::sniff` calls them).
pub fn is_image(content_type: &str) -> bool {
    matches!(
        content_type,
        "image/png" | "image/jpeg" | "image/webp" | "image/gif"
    )
}

/// What processing made of an image.
#[derive(Debug)]
pub struct Processed {
    /// The bytes without their metadata, when there was metadata to strip.
    pub stripped: Option<Bytes>,
    /// A PNG of at most `thumbnail_px` on each side.
    pub thumbnail: Bytes,
    pub width: u32,
    pub height: u32,
}

/// Check, strip and thumbnail one image.
pub fn process(bytes: Bytes, config: &ImagesConfig) -> Result<Processed, ImageError> {
    let unreadable = |e: &dyn std::fmt::Display| ImageError::Unreadable(e.to_string());
    let reader = || {
        ImageReader::new(Cursor::new(bytes.as_ref()))
            .with_guessed_format()
            .map_err(|e| unreadable(&e))
    };
    // The header only: a bomb is refused before anything is allocated for its pixels.
    let (width, height) = reader()?.into_dimensions().map_err(|e| unreadable(&e))?;
    if u64::from(width) * u64::from(height) > config.max_pixels {
        return Err(ImageError::TooManyPixels {
            width,
            height,
            limit: config.max_pixels,
        });
    }

    let mut orientation = Orientation::NoTransforms;
    let mut stripped = None;
    if let Ok(Some(mut container)) = DynImage::from_bytes(bytes.clone())
        && let Some(exif) = container.exif()
    {
        orientation = Orientation::from_exif_chunk(&exif).unwrap_or(orientation);
        if config.strip_exif {
            container.set_exif(
                (orientation != Orientation::NoTransforms)
                    .then(|| orientation_only_exif(orientation)),
            );
            stripped = Some(container.encoder().bytes());
        }
    }

    let mut decoder = reader()?;
    let mut limits = Limits::default();
    limits.max_image_width = Some(width);
    limits.max_image_height = Some(height);
    limits.max_alloc = Some(config.max_pixels.saturating_mul(4) + (16 << 20));
    decoder.limits(limits);
    let mut picture = decoder.decode().map_err(|e| unreadable(&e))?;
    picture.apply_orientation(orientation);
    let side = config.thumbnail_px;
    if picture.width() > side || picture.height() > side {
        picture = picture.thumbnail(side, side);
    }
    let mut thumbnail = Cursor::new(Vec::new());
    picture
        .write_to(&mut thumbnail, ImageFormat::Png)
        .map_err(|e| unreadable(&e))?;
    Ok(Processed {
        stripped,
        thumbnail: Bytes::from(thumbnail.into_inner()),
        width,
        height,
    })
}

/// A minimal EXIF block (big-endian TIFF, one IFD entry) that says only how to turn the
/// picture: what stays of the metadata so that phones' photos are not shown sideways.
fn orientation_only_exif(orientation: Orientation) -> Bytes {
    let mut tiff = Vec::with_capacity(26);
    tiff.extend_from_slice(b"MM\0\x2a"); // big-endian TIFF
    tiff.extend_from_slice(&8u32.to_be_bytes()); // the IFD follows the header
    tiff.extend_from_slice(&1u16.to_be_bytes()); // one entry:
    tiff.extend_from_slice(&0x0112u16.to_be_bytes()); // Orientation,
    tiff.extend_from_slice(&3u16.to_be_bytes()); // SHORT,
    tiff.extend_from_slice(&1u32.to_be_bytes()); // one value,
    tiff.extend_from_slice(&u16::from(orientation.to_exif()).to_be_bytes());
    tiff.extend_from_slice(&[0, 0]); // (padding of the 4-byte value field)
    tiff.extend_from_slice(&0u32.to_be_bytes()); // no next IFD
    Bytes::from(tiff)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn config() -> ImagesConfig {
        ImagesConfig::default()
    }

    fn png(width: u32, height: u32) -> Vec<u8> {
        let picture = image::RgbImage::from_pixel(width, height, image::Rgb([200, 10, 10]));
        let mut out = Cursor::new(Vec::new());
        picture.write_to(&mut out, ImageFormat::Png).unwrap();
        out.into_inner()
    }

    /// A JPEG carrying an EXIF block with a GPS position and an orientation.
    fn jpeg_with_gps() -> Vec<u8> {
        let picture = image::RgbImage::from_pixel(40, 20, image::Rgb([0, 0, 255]));
        let mut out = Cursor::new(Vec::new());
        picture.write_to(&mut out, ImageFormat::Jpeg).unwrap();
        let mut jpeg = img_parts::jpeg::Jpeg::from_bytes(Bytes::from(out.into_inner())).unwrap();
        // TIFF: IFD0 with Orientation = 6 (rotate 90°) and a GPS IFD pointer; the GPS IFD
        // holds GPSLatitudeRef = "N".
        let mut tiff = Vec::new();
        tiff.extend_from_slice(b"MM\0\x2a\0\0\0\x08");
        tiff.extend_from_slice(&2u16.to_be_bytes());
        tiff.extend_from_slice(&[0x01, 0x12, 0, 3, 0, 0, 0, 1, 0, 6, 0, 0]);
        tiff.extend_from_slice(&[0x88, 0x25, 0, 4, 0, 0, 0, 1, 0, 0, 0, 38]);
        tiff.extend_from_slice(&0u32.to_be_bytes());
        tiff.extend_from_slice(&1u16.to_be_bytes());
        tiff.extend_from_slice(&[0x00, 0x01, 0, 2, 0, 0, 0, 2, b'N', 0, 0, 0]);
        tiff.extend_from_slice(&0u32.to_be_bytes());
        jpeg.set_exif(Some(Bytes::from(tiff)));
        jpeg.encoder().bytes().to_vec()
    }

    /// A valid PNG header declaring `side` × `side` pixels (the IHDR checksum fixed up).
    pub(crate) fn png_declaring(side: u32) -> Vec<u8> {
        let mut bomb = png(1, 1);
        bomb[16..20].copy_from_slice(&side.to_be_bytes());
        bomb[20..24].copy_from_slice(&side.to_be_bytes());
        let crc = crc32(&bomb[12..29]);
        bomb[29..33].copy_from_slice(&crc.to_be_bytes());
        bomb
    }

    fn crc32(bytes: &[u8]) -> u32 {
        let mut crc = !0u32;
        for &byte in bytes {
            crc ^= u32::from(byte);
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }

    #[test]
    fn a_bomb_is_refused_from_its_header() {
        // 100 000 × 100 000 pixels declared in a few bytes: never decoded.
        let bomb = png_declaring(100_000);
        match process(Bytes::from(bomb), &config()) {
            Err(ImageError::TooManyPixels { width, height, .. }) => {
                assert_eq!((width, height), (100_000, 100_000))
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn thumbnails_fit_and_small_images_stay_small() {
        let done = process(Bytes::from(png(1000, 500)), &config()).unwrap();
        let thumb = image::load_from_memory(&done.thumbnail).unwrap();
        assert_eq!((thumb.width(), thumb.height()), (320, 160));
        assert!(done.stripped.is_none(), "nothing to strip");
        let done = process(Bytes::from(png(1, 1)), &config()).unwrap();
        let thumb = image::load_from_memory(&done.thumbnail).unwrap();
        assert_eq!((thumb.width(), thumb.height()), (1, 1));
    }

    #[test]
    fn location_goes_orientation_stays() {
        let original = jpeg_with_gps();
        let done = process(Bytes::from(original), &config()).unwrap();
        let stripped = done.stripped.expect("stripped");
        let jpeg = img_parts::jpeg::Jpeg::from_bytes(stripped).unwrap();
        let exif = jpeg.exif().expect("orientation kept");
        assert_eq!(
            Orientation::from_exif_chunk(&exif),
            Some(Orientation::Rotate90)
        );
        assert!(
            !exif.windows(2).any(|w| w == [0x88, 0x25]),
            "no GPS pointer"
        );
        // The thumbnail is turned as the photo should be shown: 20 wide, 40 high.
        let thumb = image::load_from_memory(&done.thumbnail).unwrap();
        assert_eq!((thumb.width(), thumb.height()), (20, 40));
        let keep = ImagesConfig {
            strip_exif: false,
            ..config()
        };
        assert!(
            process(Bytes::from(jpeg_with_gps()), &keep)
                .unwrap()
                .stripped
                .is_none()
        );
    }
}
