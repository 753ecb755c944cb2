//! The placeholder image provider: a deterministic PNG made from the prompt, size and seed,
//! for development without an image model. It is labelled as a placeholder in the
//! response metadata (`"placeholder": true`) and is never generated art.

use async_trait::async_trait;
use bytes::Bytes;
use serde_json::json;
use sha2::{Digest, Sha256};
use zeroscale_core::models::{
    GeneratedImage, ImageData, ImageProvider, ImageRequest, ImageResponse,
};
use zeroscale_core::{Error, Result};

/// Largest side accepted, in pixels.
pub const MAX_SIDE: u32 = 2048;

/// Deterministic placeholder PNGs.
#[derive(Debug, Clone)]
pub struct PlaceholderImages {
    name: String,
}

impl PlaceholderImages {
    /// A provider registered under `name`.
    pub fn new(name: impl Into<String>) -> Self {
        PlaceholderImages { name: name.into() }
    }
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0xedb8_8320 & mask);
        }
    }
    !crc
}

fn adler32(bytes: &[u8]) -> u32 {
    let (mut a, mut b) = (1u32, 0u32);
    for chunk in bytes.chunks(5552) {
        for &x in chunk {
            a += u32::from(x);
            b += a;
        }
        a %= 65521;
        b %= 65521;
    }
    (b << 16) | a
}

fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let start = out.len();
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let crc = crc32(&out[start..]);
    out.extend_from_slice(&crc.to_be_bytes());
}

/// Encodes 8-bit RGB `pixels` (row-major, `width * height * 3` bytes) as a PNG, with
/// uncompressed deflate blocks (simple and exact; placeholders need no compression).
pub fn encode_png(width: u32, height: u32, pixels: &[u8]) -> Vec<u8> {
    let row = width as usize * 3;
    let mut raw = Vec::with_capacity((row + 1) * height as usize);
    for y in 0..height as usize {
        raw.push(0); // filter: none
        raw.extend_from_slice(&pixels[y * row..(y + 1) * row]);
    }
    let mut zlib = vec![0x78, 0x01];
    let blocks: Vec<&[u8]> = raw.chunks(65_535).collect();
    for (i, block) in blocks.iter().enumerate() {
        zlib.push(u8::from(i + 1 == blocks.len()));
        let len = block.len() as u16;
        zlib.extend_from_slice(&len.to_le_bytes());
        zlib.extend_from_slice(&(!len).to_le_bytes());
        zlib.extend_from_slice(block);
    }
    zlib.extend_from_slice(&adler32(&raw).to_be_bytes());
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::with_capacity(13);
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]); // 8-bit, RGB, deflate, no filter, no interlace
    chunk(&mut png, b"IHDR", &ihdr);
    chunk(
        &mut png,
        b"tEXt",
        b"Comment\0zeroscale placeholder image, not generated art",
    );
    chunk(&mut png, b"IDAT", &zlib);
    chunk(&mut png, b"IEND", &[]);
    png
}

/// The placeholder for one image: a diagonal gradient between two colours taken from a
/// hash of prompt, size, seed and index, with a checker band so it is obviously synthetic.
pub fn render(prompt: &str, width: u32, height: u32, seed: u64, index: u32) -> Vec<u8> {
    let mut hasher = Sha256::new();
    hasher.update(prompt.as_bytes());
    hasher.update(width.to_le_bytes());
    hasher.update(height.to_le_bytes());
    hasher.update(seed.to_le_bytes());
    hasher.update(index.to_le_bytes());
    let h = hasher.finalize();
    let (c1, c2) = ([h[0], h[1], h[2]], [h[3], h[4], h[5]]);
    let mut pixels = Vec::with_capacity(width as usize * height as usize * 3);
    let span = (width + height).max(1);
    for y in 0..height {
        for x in 0..width {
            let t = (x + y) * 255 / span;
            let band = y * 8 / height.max(1) == 3 && ((x / 16) + (y / 16)) % 2 == 0;
            for c in 0..3 {
                let v = (u32::from(c1[c]) * (255 - t) + u32::from(c2[c]) * t) / 255;
                pixels.push(if band { 255 - v as u8 } else { v as u8 });
            }
        }
    }
    encode_png(width, height, &pixels)
}

#[async_trait]
impl ImageProvider for PlaceholderImages {
    fn name(&self) -> &str {
        &self.name
    }

    async fn generate(&self, request: ImageRequest) -> Result<ImageResponse> {
        if request.width == 0
            || request.height == 0
            || request.width > MAX_SIDE
            || request.height > MAX_SIDE
        {
            return Err(Error::invalid_input(format!(
                "width and height must be 1 to {MAX_SIDE} pixels"
            )));
        }
        if request.count == 0 || request.count > 8 {
            return Err(Error::invalid_input("count must be 1 to 8"));
        }
        let seed = request.seed.unwrap_or(0);
        let (prompt, w, h, count) = (
            request.prompt.clone(),
            request.width,
            request.height,
            request.count,
        );
        let images = tokio::task::spawn_blocking(move || {
            (0..count)
                .map(|i| GeneratedImage {
                    data: ImageData::Bytes {
                        data: Bytes::from(render(&prompt, w, h, seed, i)),
                        mime_type: "image/png".to_owned(),
                    },
                    seed: Some(seed),
                })
                .collect::<Vec<_>>()
        })
        .await
        .map_err(|e| Error::backend("placeholder", e))?;
        let mut metadata = serde_json::Map::new();
        metadata.insert("placeholder".into(), json!(true));
        metadata.insert(
            "note".into(),
            json!("a deterministic placeholder for development, not generated art"),
        );
        Ok(ImageResponse {
            model: request.model,
            images,
            metadata,
        })
    }

    async fn health(&self) -> Result<()> {
        Ok(())
    }
}

/// The registry's builder for `kind = "placeholder"`.
pub(crate) fn build(
    name: &str,
    _: &zeroscale_core::config::ModelsConfig,
    _: &zeroscale_core::config::ProviderConfig,
) -> Result<crate::registry::BuiltProvider> {
    Ok(crate::registry::BuiltProvider {
        images: Some(std::sync::Arc::new(PlaceholderImages::new(name))),
        ..Default::default()
    })
}

/// The registry's probe for `kind = "placeholder"`: always ready.
pub(crate) fn probe<'a>(
    _: &'a str,
    _: &'a zeroscale_core::config::ModelsConfig,
    _: &'a zeroscale_core::config::ProviderConfig,
) -> futures::future::BoxFuture<'a, Result<String>> {
    Box::pin(async { Ok("placeholder images (development only, not generated art)".to_owned()) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksums_match_known_values() {
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
        assert_eq!(adler32(b"Wikipedia"), 0x11e6_0398);
    }
}
