//! Compression of the values the cache stores in Redis (`CACHE_COMPRESSION`).
//!
//! A cached anime is about 1.2 KB of JSON, most of it synopsis. Compressed
//! on its own, without context, it shrinks by a third (zstd; lz4 a fifth):
//! too little for 600 bytes of Redis per anime. A **dictionary trained on
//! the catalogue's own entries** gives zstd the context a lone record
//! lacks (field names, recurring words and phrasing), and then a record
//! shrinks to a fraction (figures in `docs/performance.md`, "Memory").
//!
//! - Formats, per value (the envelope's first byte): stored as it is;
//!   lz4; zstd; zstd with dictionary `id` (the id follows). Payloads under
//!   [`COMPRESS_MIN_BYTES`], and any whose compressed form is not at least
//!   [`COMPRESS_MIN_SAVING`] smaller, are stored as they are.
//! - Dictionaries are content-addressed (the id is the first four bytes of
//!   their SHA-256) and immutable, so every process keeps one registry of
//!   those it knows ([`known`]) and any of them decodes any value: a value
//!   compressed with a dictionary this process does not know yet is a miss
//!   (never an error), and the dictionary is fetched from Redis in the
//!   background (`cache::dictionary`).
//! - Each [`Codec`] (one per cache) compresses with its current dictionary,
//!   which the dictionary keeper installs; until there is one, with plain
//!   zstd.
//!
//! Contexts are per thread and reused (a fresh zstd context per value
//! costs three to four times the work).

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock};

use sha2::{Digest as _, Sha256};
use zstd::dict::{DecoderDictionary, EncoderDictionary};
use zstd::zstd_safe::{CCtx, DCtx};

/// Payloads shorter than this are stored as they are: below it neither
/// compressor saves anything worth a decode (measured on cached anime and
/// lists: zstd's frame header alone is 9 bytes).
pub const COMPRESS_MIN_BYTES: usize = 256;

/// A compressed payload is kept only if it is at least this fraction
/// smaller than the plain one.
pub const COMPRESS_MIN_SAVING: f64 = 0.1;

/// zstd level: 3 compresses about as well as 9 on single records and is
/// several times faster (write-backs run off the request path anyway).
pub const ZSTD_LEVEL: i32 = 3;

/// Largest value a compressed payload may declare (a corrupt or hostile
/// header must not make us allocate gigabytes).
const MAX_DECODED_BYTES: u64 = 64 * 1024 * 1024;

/// Format byte: the payload as it is.
pub const PLAIN: u8 = 1;
/// Format byte: lz4 block, its length prepended.
pub const LZ4: u8 = 2;
/// Format byte: a zstd frame.
pub const ZSTD: u8 = 3;
/// Format byte: a dictionary id (4 bytes, little-endian), then a zstd frame
/// compressed with that dictionary.
pub const ZSTD_DICTIONARY: u8 = 4;

/// How values are compressed (`CACHE_COMPRESSION`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Compression {
    /// Stored as they are.
    None,
    /// lz4: fastest, smallest saving.
    Lz4,
    /// zstd without a dictionary.
    Zstd,
    /// zstd with a dictionary trained on the catalogue (plain zstd until
    /// one is available). The default.
    #[default]
    ZstdDictionary,
}

impl Compression {
    /// The setting named `name` (`none`, `lz4`, `zstd`, `zstd-dictionary`).
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "none" => Some(Self::None),
            "lz4" => Some(Self::Lz4),
            "zstd" => Some(Self::Zstd),
            "zstd-dictionary" => Some(Self::ZstdDictionary),
            _ => None,
        }
    }

    /// Its name.
    pub fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Lz4 => "lz4",
            Self::Zstd => "zstd",
            Self::ZstdDictionary => "zstd-dictionary",
        }
    }
}

/// A trained dictionary, prepared for both directions.
pub struct Dictionary {
    id: u32,
    bytes: Vec<u8>,
    encoder: EncoderDictionary<'static>,
    decoder: DecoderDictionary<'static>,
}

impl Dictionary {
    /// `bytes` as a dictionary (its id derived from its content).
    pub fn new(bytes: Vec<u8>) -> Arc<Self> {
        let digest = Sha256::digest(&bytes);
        let id = u32::from_le_bytes([digest[0], digest[1], digest[2], digest[3]]);
        Arc::new(Self {
            id,
            encoder: EncoderDictionary::copy(&bytes, ZSTD_LEVEL),
            decoder: DecoderDictionary::copy(&bytes),
            bytes,
        })
    }

    /// Its id.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// Its bytes, as stored in Redis.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }
}

/// Trains a dictionary of at most `max_bytes` on `samples`; `None` when
/// zstd finds too little to learn from (few or tiny samples).
pub fn train(samples: &[Vec<u8>], max_bytes: usize) -> Option<Arc<Dictionary>> {
    let bytes = zstd::dict::from_samples(samples, max_bytes).ok()?;
    (!bytes.is_empty()).then(|| Dictionary::new(bytes))
}

/// Every dictionary this process knows, by id, and the ids of values it
/// could not decode for want of one.
#[derive(Default)]
pub struct Known {
    by_id: RwLock<HashMap<u32, Arc<Dictionary>>>,
    wanted: Mutex<HashSet<u32>>,
}

/// Most dictionaries a process keeps (each a few hundred KB prepared):
/// the current one and those of recent deploys.
const MAX_KNOWN: usize = 8;

impl Known {
    /// Registers `dictionary` (dropping an arbitrary other one beyond
    /// [`MAX_KNOWN`]).
    pub fn insert(&self, dictionary: Arc<Dictionary>) {
        let mut by_id = self.by_id.write().unwrap_or_else(PoisonError::into_inner);
        if by_id.len() >= MAX_KNOWN && !by_id.contains_key(&dictionary.id) {
            let drop_id = by_id.keys().copied().find(|id| *id != dictionary.id);
            if let Some(drop_id) = drop_id {
                by_id.remove(&drop_id);
            }
        }
        self.wanted
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&dictionary.id);
        by_id.insert(dictionary.id, dictionary);
    }

    /// The dictionary `id`, if known; if not, it is noted as wanted.
    pub fn get(&self, id: u32) -> Option<Arc<Dictionary>> {
        let found = self
            .by_id
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&id)
            .cloned();
        if found.is_none() {
            self.wanted
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(id);
        }
        found
    }

    /// The ids values needed and nobody installed yet.
    pub fn wanted(&self) -> Vec<u32> {
        self.wanted
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .copied()
            .collect()
    }
}

/// The process-wide registry of dictionaries.
pub fn known() -> &'static Known {
    static KNOWN: OnceLock<Known> = OnceLock::new();
    KNOWN.get_or_init(Known::default)
}

thread_local! {
    static COMPRESSOR: RefCell<CCtx<'static>> = RefCell::new(CCtx::create());
    static DECOMPRESSOR: RefCell<DCtx<'static>> = RefCell::new(DCtx::create());
}

/// Why a payload could not be decompressed.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// Compressed with a dictionary this process does not know (yet).
    #[error("compressed with dictionary {0:08x}, not known here yet")]
    UnknownDictionary(u32),
    /// Not a valid block or frame, or larger than any value we write.
    #[error("malformed compressed payload")]
    Malformed,
}

/// Compresses values as the cache's setting says.
pub struct Codec {
    mode: Compression,
    /// The dictionary new values are compressed with.
    current: RwLock<Option<Arc<Dictionary>>>,
}

impl Codec {
    /// A codec compressing as `mode` says.
    pub fn new(mode: Compression) -> Self {
        Self {
            mode,
            current: RwLock::new(None),
        }
    }

    /// The setting.
    pub fn mode(&self) -> Compression {
        self.mode
    }

    /// Compresses with `dictionary` from now on (and registers it).
    pub fn install(&self, dictionary: Arc<Dictionary>) {
        known().insert(Arc::clone(&dictionary));
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Some(dictionary);
    }

    /// The dictionary new values are compressed with, if any.
    pub fn current(&self) -> Option<Arc<Dictionary>> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// `payload`'s format byte and body, compressed where that pays.
    pub fn encode<'a>(&self, payload: &'a [u8]) -> (u8, Cow<'a, [u8]>) {
        if payload.len() < COMPRESS_MIN_BYTES {
            return (PLAIN, Cow::Borrowed(payload));
        }
        let packed = match self.mode {
            Compression::None => None,
            Compression::Lz4 => Some((LZ4, lz4_flex::compress_prepend_size(payload))),
            Compression::Zstd => zstd_compress(payload, None).map(|body| (ZSTD, body)),
            Compression::ZstdDictionary => {
                let dictionary = self.current();
                zstd_compress(payload, dictionary.as_deref()).map(|body| match &dictionary {
                    Some(dictionary) => {
                        let mut out = Vec::with_capacity(4 + body.len());
                        out.extend_from_slice(&dictionary.id.to_le_bytes());
                        out.extend_from_slice(&body);
                        (ZSTD_DICTIONARY, out)
                    }
                    None => (ZSTD, body),
                })
            }
        };
        match packed {
            Some((format, body))
                if (body.len() as f64) <= payload.len() as f64 * (1.0 - COMPRESS_MIN_SAVING) =>
            {
                (format, Cow::Owned(body))
            }
            _ => (PLAIN, Cow::Borrowed(payload)),
        }
    }
}

/// `payload` compressed at [`ZSTD_LEVEL`], with `dictionary` if given;
/// `None` if zstd failed (the value is then stored as it is).
fn zstd_compress(payload: &[u8], dictionary: Option<&Dictionary>) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(zstd::zstd_safe::compress_bound(payload.len()));
    COMPRESSOR.with(|cell| {
        let mut context = cell.borrow_mut();
        match dictionary {
            Some(dictionary) => context
                .compress_using_cdict(&mut out, payload, dictionary.encoder.as_cdict())
                .ok(),
            None => context.compress(&mut out, payload, ZSTD_LEVEL).ok(),
        }
    })?;
    Some(out)
}

/// The payload of a value stored in `format` with `body`.
pub fn decode(format: u8, body: &[u8]) -> Result<Cow<'_, [u8]>, CodecError> {
    match format {
        PLAIN => Ok(Cow::Borrowed(body)),
        LZ4 => lz4_flex::decompress_size_prepended(body)
            .map(Cow::Owned)
            .map_err(|_| CodecError::Malformed),
        ZSTD => zstd_decompress(body, None).map(Cow::Owned),
        ZSTD_DICTIONARY => {
            let (id, frame) = body.split_at_checked(4).ok_or(CodecError::Malformed)?;
            let id = u32::from_le_bytes([id[0], id[1], id[2], id[3]]);
            let dictionary = known().get(id).ok_or(CodecError::UnknownDictionary(id))?;
            zstd_decompress(frame, Some(&dictionary)).map(Cow::Owned)
        }
        _ => Err(CodecError::Malformed),
    }
}

fn zstd_decompress(frame: &[u8], dictionary: Option<&Dictionary>) -> Result<Vec<u8>, CodecError> {
    let size = zstd::zstd_safe::get_frame_content_size(frame)
        .ok()
        .flatten()
        .filter(|size| *size <= MAX_DECODED_BYTES)
        .ok_or(CodecError::Malformed)?;
    let mut out = Vec::with_capacity(usize::try_from(size).map_err(|_| CodecError::Malformed)?);
    DECOMPRESSOR.with(|cell| {
        let mut context = cell.borrow_mut();
        let written = match dictionary {
            Some(dictionary) => {
                context.decompress_using_ddict(&mut out, frame, dictionary.decoder.as_ddict())
            }
            None => context.decompress(&mut out, frame),
        };
        written.map_err(|_| CodecError::Malformed)
    })?;
    if out.len() as u64 != size {
        return Err(CodecError::Malformed);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(i: usize) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "id": i,
            "title": format!("Sora no Kanata {i}"),
            "title_english": "The Sound of the Sky",
            "format": "TV",
            "status": "FINISHED",
            "synopsis": format!("In a small town by the sea, girl number {i} joins the band of a fortress at the end of the world. The days pass slowly, and the war the fortress was built for seems far away, until a signal from beyond the border reaches them."),
            "popularity": i * 37,
        }))
        .expect("json")
    }

    #[test]
    fn every_mode_reads_back_what_it_wrote() {
        let dictionary = train(&(0..400).map(record).collect::<Vec<_>>(), 16 * 1024)
            .expect("enough samples to train on");
        for mode in [
            Compression::None,
            Compression::Lz4,
            Compression::Zstd,
            Compression::ZstdDictionary,
        ] {
            let codec = Codec::new(mode);
            if mode == Compression::ZstdDictionary {
                codec.install(Arc::clone(&dictionary));
            }
            let payload = record(1_000);
            let (format, body) = codec.encode(&payload);
            let read = decode(format, &body).expect("decodes");
            assert_eq!(&*read, payload.as_slice(), "{mode:?}");
            if matches!(mode, Compression::Zstd | Compression::ZstdDictionary) {
                assert!(body.len() < payload.len(), "{mode:?}: {}", body.len());
            }
        }
    }

    #[test]
    fn a_dictionary_beats_plain_zstd_on_records_like_the_samples() {
        let samples: Vec<Vec<u8>> = (0..400).map(record).collect();
        let dictionary = train(&samples, 16 * 1024).expect("trained");
        let plain = Codec::new(Compression::Zstd);
        let trained = Codec::new(Compression::ZstdDictionary);
        trained.install(dictionary);
        let payload = record(9_999);
        let (_, without) = plain.encode(&payload);
        let (format, with) = trained.encode(&payload);
        assert_eq!(format, ZSTD_DICTIONARY);
        assert!(
            with.len() * 2 < without.len(),
            "{} bytes with the dictionary, {} without",
            with.len(),
            without.len()
        );
    }

    #[test]
    fn an_unknown_dictionary_is_a_clear_error_and_noted_as_wanted() {
        let mut body = 0xdead_beef_u32.to_le_bytes().to_vec();
        body.extend_from_slice(&[0x28, 0xb5, 0x2f, 0xfd]);
        assert!(matches!(
            decode(ZSTD_DICTIONARY, &body),
            Err(CodecError::UnknownDictionary(0xdead_beef))
        ));
        assert!(known().wanted().contains(&0xdead_beef));
    }

    #[test]
    fn short_or_incompressible_payloads_stay_plain_and_garbage_never_panics() {
        let codec = Codec::new(Compression::Zstd);
        assert_eq!(codec.encode(b"[1,2,3]").0, PLAIN);
        let noise: Vec<u8> = (0..600).map(|_| rand::random::<u8>()).collect();
        assert_eq!(codec.encode(&noise).0, PLAIN);
        for format in [LZ4, ZSTD, ZSTD_DICTIONARY, 9] {
            for body in [&b""[..], &[0xff; 3][..], &noise[..]] {
                assert!(decode(format, body).is_err(), "{format}");
            }
        }
    }
}
