//! The SHA-2 streaming engine: chaining value, byte count and partial block,
//! driven by accelerated compression functions chosen at run time (SHA-256: the
//! `sha2` crate's, SHA-NI on `x86_64`; SHA-512: OpenSSL's from the system
//! `libcrypto.so.3` where it loads, else `sha2`'s, AVX2 on `x86_64`: see
//! [`Sha512Backend`]), with a versioned byte encoding of the mid-stream state.
//! The state is the same whichever function compressed the blocks.
//!
//! Nothing here touches Python; `lib.rs` wraps it.
//!
//! # State encoding (version 1)
//!
//! | bytes        | field                                                     |
//! |--------------|-----------------------------------------------------------|
//! | 4            | magic `b"NCRh"`                                           |
//! | 1            | format version, `1`                                       |
//! | 1            | algorithm: `1` SHA-256, `2` SHA-512                       |
//! | 8 × 4 or 8   | chaining value `H0..H7`, each word little-endian          |
//! | 8            | bytes hashed so far, `u64` little-endian                  |
//! | n            | the pending partial block, `n = length % block_size`      |
//!
//! So a state is 46 + n bytes for SHA-256 (n < 64) and 78 + n for SHA-512
//! (n < 128), and its length is checked exactly.

use core::fmt;
use core::marker::PhantomData;
use std::sync::OnceLock;

use crate::libcrypto::Libcrypto;

/// The first bytes of every encoded state.
const STATE_MAGIC: [u8; 4] = *b"NCRh";
/// The encoding version this build writes and reads.
const STATE_VERSION: u8 = 1;
/// Magic, version and algorithm.
const STATE_HEADER_SIZE: usize = STATE_MAGIC.len() + 2;
/// SHA-512's block; SHA-256's 64-byte block uses the front half.
const MAX_BLOCK_SIZE: usize = 128;

/// One SHA-2 chaining word: `u32` for SHA-256, `u64` for SHA-512.
pub trait Word: Copy + fmt::Debug + Send + Sync + 'static {
    /// The word's size in bytes.
    const SIZE: usize;
    /// Appends the word big-endian (as digests are written).
    fn put_be(self, out: &mut Vec<u8>);
    /// Appends the word little-endian (as states are written).
    fn put_le(self, out: &mut Vec<u8>);
    /// Reads a little-endian word; `None` unless `bytes` is exactly `SIZE` long.
    fn from_le(bytes: &[u8]) -> Option<Self>;
}

macro_rules! impl_word {
    ($($word:ty),*) => {$(
        impl Word for $word {
            const SIZE: usize = size_of::<$word>();

            fn put_be(self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_be_bytes());
            }

            fn put_le(self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }

            fn from_le(bytes: &[u8]) -> Option<Self> {
                bytes.try_into().ok().map(Self::from_le_bytes)
            }
        }
    )*};
}

impl_word!(u32, u64);

/// The constants and compression function that make one SHA-2 variant.
pub trait Variant: Clone + fmt::Debug + Send + Sync + 'static {
    /// The hashlib name.
    const NAME: &'static str;
    /// The algorithm byte of the state encoding.
    const ID: u8;
    /// Bytes per compressed block.
    const BLOCK_SIZE: usize;
    /// Bytes of digest (the whole chaining value: no truncated variants here).
    const DIGEST_SIZE: usize;
    /// Bytes of the big-endian message bit length that ends the padding.
    const LENGTH_FIELD_SIZE: usize;
    /// The chaining word.
    type Word: Word;
    /// The initial chaining value (FIPS 180-4, 5.3).
    const INITIAL: [Self::Word; 8];
    /// Compresses `blocks`, whose length is a multiple of `BLOCK_SIZE`.
    fn compress(chaining: &mut [Self::Word; 8], blocks: &[u8]);
}

/// SHA-256 (FIPS 180-4).
#[derive(Clone, Debug)]
pub struct Sha256;

impl Variant for Sha256 {
    const NAME: &'static str = "sha256";
    const ID: u8 = 1;
    const BLOCK_SIZE: usize = 64;
    const DIGEST_SIZE: usize = 32;
    const LENGTH_FIELD_SIZE: usize = 8;
    type Word = u32;
    const INITIAL: [u32; 8] = [
        0x6a09_e667,
        0xbb67_ae85,
        0x3c6e_f372,
        0xa54f_f53a,
        0x510e_527f,
        0x9b05_688c,
        0x1f83_d9ab,
        0x5be0_cd19,
    ];

    fn compress(chaining: &mut [u32; 8], blocks: &[u8]) {
        let (blocks, rest) = blocks.as_chunks::<64>();
        debug_assert!(rest.is_empty(), "partial block passed to compress");
        sha2::block_api::compress256(chaining, blocks);
    }
}

/// SHA-512 (FIPS 180-4).
#[derive(Clone, Debug)]
pub struct Sha512;

impl Variant for Sha512 {
    const NAME: &'static str = "sha512";
    const ID: u8 = 2;
    const BLOCK_SIZE: usize = 128;
    const DIGEST_SIZE: usize = 64;
    const LENGTH_FIELD_SIZE: usize = 16;
    type Word = u64;
    const INITIAL: [u64; 8] = [
        0x6a09_e667_f3bc_c908,
        0xbb67_ae85_84ca_a73b,
        0x3c6e_f372_fe94_f82b,
        0xa54f_f53a_5f1d_36f1,
        0x510e_527f_ade6_82d1,
        0x9b05_688c_2b3e_6c1f,
        0x1f83_d9ab_fb41_bd6b,
        0x5be0_cd19_137e_2179,
    ];

    fn compress(chaining: &mut [u64; 8], blocks: &[u8]) {
        let (blocks, rest) = blocks.as_chunks::<128>();
        debug_assert!(rest.is_empty(), "partial block passed to compress");
        Sha512Backend::get().compress512(chaining, blocks);
    }
}

/// The environment variable that, set to `sha2`, keeps SHA-512 on the `sha2` crate
/// even where OpenSSL loads: for tests, and a way out should a libcrypto misbehave.
pub const SHA512_BACKEND_VAR: &str = "NCR_TRIO_SHA512_BACKEND";

/// Which code compresses SHA-512 blocks in this process, chosen once, on first use.
#[derive(Clone, Copy, Debug)]
pub enum Sha512Backend {
    /// OpenSSL's assembly, the code `hashlib` runs (AVX2 and BMI2 on `x86_64`, where it
    /// is ~1.3x faster than `sha2`'s): from the system `libcrypto.so.3`.
    OpenSsl(Libcrypto),
    /// The `sha2` crate's, where `libcrypto.so.3` does not load, or by request.
    Sha2,
}

impl Sha512Backend {
    /// The backend of this process: OpenSSL if it loads and passes its self-test,
    /// unless [`SHA512_BACKEND_VAR`] asks for `sha2`.
    pub fn get() -> Self {
        static BACKEND: OnceLock<Sha512Backend> = OnceLock::new();
        *BACKEND.get_or_init(|| {
            if std::env::var_os(SHA512_BACKEND_VAR).is_some_and(|value| value == "sha2") {
                Self::Sha2
            } else {
                Libcrypto::load().map_or(Self::Sha2, Self::OpenSsl)
            }
        })
    }

    /// `"openssl"` or `"sha2"`.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::OpenSsl(_) => "openssl",
            Self::Sha2 => "sha2",
        }
    }

    /// Compresses `blocks` into `chaining`.
    pub fn compress512(self, chaining: &mut [u64; 8], blocks: &[[u8; 128]]) {
        match self {
            Self::OpenSsl(library) => library.compress512(chaining, blocks),
            Self::Sha2 => sha2::block_api::compress512(chaining, blocks),
        }
    }
}

/// Why an encoded state was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StateError {
    /// The magic is missing: these bytes are not a hasher state at all.
    NotAState,
    /// Written by a format version this build does not read.
    UnsupportedVersion(u8),
    /// The algorithm byte names no algorithm this build has.
    UnknownAlgorithm(u8),
    /// A state of another algorithm was given to a typed restore.
    WrongAlgorithm { expected: &'static str, found: u8 },
    /// The state ends before its byte count.
    Truncated,
    /// The state's length disagrees with the partial block its byte count implies.
    Length { expected: usize, found: usize },
}

impl fmt::Display for StateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotAState => f.write_str("not an ncr_trio hasher state (bad magic)"),
            Self::UnsupportedVersion(version) => {
                write!(
                    f,
                    "unsupported hasher state version {version} (this build reads {STATE_VERSION})"
                )
            }
            Self::UnknownAlgorithm(id) => write!(f, "unknown algorithm {id} in hasher state"),
            Self::WrongAlgorithm { expected, found } => {
                write!(f, "hasher state is for algorithm {found}, not {expected}")
            }
            Self::Truncated => f.write_str("truncated hasher state"),
            Self::Length { expected, found } => {
                write!(
                    f,
                    "hasher state is {found} bytes long, its byte count implies {expected}"
                )
            }
        }
    }
}

impl std::error::Error for StateError {}

/// Checks an encoded state's magic and version, and returns its algorithm byte.
///
/// # Errors
///
/// [`StateError`] if the header is missing, short, or of another version.
pub fn state_algorithm(state: &[u8]) -> Result<u8, StateError> {
    split_state(state).map(|(algorithm, _)| algorithm)
}

/// Splits an encoded state into its algorithm byte and the fields after it.
fn split_state(state: &[u8]) -> Result<(u8, &[u8]), StateError> {
    let rest = state
        .strip_prefix(&STATE_MAGIC)
        .ok_or(StateError::NotAState)?;
    match *rest {
        [STATE_VERSION, algorithm, ref fields @ ..] => Ok((algorithm, fields)),
        [] | [STATE_VERSION] => Err(StateError::Truncated),
        [version, ..] => Err(StateError::UnsupportedVersion(version)),
    }
}

/// Lowercase hexadecimal, as `hashlib`'s `hexdigest()` writes it.
#[must_use]
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    bytes
        .iter()
        .flat_map(|byte| {
            [
                DIGITS[usize::from(byte >> 4)],
                DIGITS[usize::from(byte & 0xf)],
            ]
        })
        .map(char::from)
        .collect()
}

/// A streaming SHA-2 hasher whose state can be saved and restored exactly.
#[derive(Clone, Debug)]
pub struct Sha2<V: Variant> {
    chaining: [V::Word; 8],
    /// Bytes hashed so far. It wraps at 2^64 as OpenSSL's counter does;
    /// the standards define no longer messages (SHA-256 stops at 2^61 bytes).
    length: u64,
    /// The first `length % BLOCK_SIZE` bytes are the pending partial block.
    partial: [u8; MAX_BLOCK_SIZE],
    variant: PhantomData<V>,
}

impl<V: Variant> Default for Sha2<V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<V: Variant> Sha2<V> {
    /// A hasher that has hashed nothing.
    #[must_use]
    pub fn new() -> Self {
        Self {
            chaining: V::INITIAL,
            length: 0,
            partial: [0; MAX_BLOCK_SIZE],
            variant: PhantomData,
        }
    }

    /// How many bytes of `partial` are pending.
    #[allow(clippy::cast_possible_truncation)] // exact: BLOCK_SIZE divides 2^32
    fn partial_len(&self) -> usize {
        self.length as usize % V::BLOCK_SIZE
    }

    /// Hashes `data`, compressing every block it completes.
    pub fn update(&mut self, mut data: &[u8]) {
        let block = V::BLOCK_SIZE;
        let pending = self.partial_len();
        self.length = self.length.wrapping_add(data.len() as u64);

        if pending > 0 {
            let take = data.len().min(block - pending);
            let (head, rest) = data.split_at(take);
            self.partial[pending..pending + take].copy_from_slice(head);
            if pending + take < block {
                return;
            }
            V::compress(&mut self.chaining, &self.partial[..block]);
            data = rest;
        }

        let (blocks, tail) = data.split_at(data.len() - data.len() % block);
        if !blocks.is_empty() {
            V::compress(&mut self.chaining, blocks);
        }
        self.partial[..tail.len()].copy_from_slice(tail);
    }

    /// The digest of everything hashed so far; the hasher is left as it was.
    #[must_use]
    pub fn digest(&self) -> Vec<u8> {
        let block = V::BLOCK_SIZE;
        let pending = self.partial_len();

        // The pending bytes, 0x80, zeros, then the message length in bits:
        // one block if the length still fits after the 0x80, else two.
        let mut tail = [0; 2 * MAX_BLOCK_SIZE];
        tail[..pending].copy_from_slice(&self.partial[..pending]);
        tail[pending] = 0x80;
        let padded = if pending < block - V::LENGTH_FIELD_SIZE {
            block
        } else {
            2 * block
        };
        let bits = (u128::from(self.length) << 3).to_be_bytes();
        tail[padded - V::LENGTH_FIELD_SIZE..padded]
            .copy_from_slice(&bits[bits.len() - V::LENGTH_FIELD_SIZE..]);

        let mut chaining = self.chaining;
        V::compress(&mut chaining, &tail[..padded]);

        let mut digest = Vec::with_capacity(V::DIGEST_SIZE);
        for word in chaining {
            word.put_be(&mut digest);
        }
        digest
    }

    /// The hasher's state in the encoding described in the module docs.
    #[must_use]
    pub fn state(&self) -> Vec<u8> {
        let pending = &self.partial[..self.partial_len()];
        let mut state =
            Vec::with_capacity(STATE_HEADER_SIZE + 8 * V::Word::SIZE + 8 + pending.len());
        state.extend_from_slice(&STATE_MAGIC);
        state.extend_from_slice(&[STATE_VERSION, V::ID]);
        for word in self.chaining {
            word.put_le(&mut state);
        }
        state.extend_from_slice(&self.length.to_le_bytes());
        state.extend_from_slice(pending);
        state
    }

    /// Restores a hasher from [`state`](Self::state) bytes.
    ///
    /// # Errors
    ///
    /// [`StateError`] unless `state` is a well-formed state of this variant.
    pub fn from_state(state: &[u8]) -> Result<Self, StateError> {
        let (algorithm, fields) = split_state(state)?;
        if algorithm != V::ID {
            return Err(StateError::WrongAlgorithm {
                expected: V::NAME,
                found: algorithm,
            });
        }

        let (words, fields) = fields
            .split_at_checked(8 * V::Word::SIZE)
            .ok_or(StateError::Truncated)?;
        let (length, pending) = fields
            .split_first_chunk::<8>()
            .ok_or(StateError::Truncated)?;

        let mut hasher = Self::new();
        for (word, bytes) in hasher
            .chaining
            .iter_mut()
            .zip(words.chunks_exact(V::Word::SIZE))
        {
            *word = V::Word::from_le(bytes).ok_or(StateError::Truncated)?;
        }
        hasher.length = u64::from_le_bytes(*length);

        let expected = hasher.partial_len();
        if pending.len() != expected {
            return Err(StateError::Length {
                expected: state.len() - pending.len() + expected,
                found: state.len(),
            });
        }
        hasher.partial[..expected].copy_from_slice(pending);
        Ok(hasher)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn abc() {
        let mut sha256 = Sha2::<Sha256>::new();
        sha256.update(b"abc");
        assert_eq!(
            hex(&sha256.digest()),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let mut sha512 = Sha2::<Sha512>::new();
        sha512.update(b"abc");
        assert_eq!(
            hex(&sha512.digest()),
            "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a\
             2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f"
        );
    }

    fn split_matches_whole<V: Variant>() {
        let data: Vec<u8> = (0..700u32).map(|i| (i * 31 % 251) as u8).collect();
        let mut whole = Sha2::<V>::new();
        whole.update(&data);
        for split in 0..=data.len() {
            let mut first = Sha2::<V>::new();
            first.update(&data[..split]);
            let mut resumed = Sha2::<V>::from_state(&first.state()).expect("own state");
            resumed.update(&data[split..]);
            assert_eq!(
                resumed.digest(),
                whole.digest(),
                "{} split at {split}",
                V::NAME
            );
        }
    }

    #[test]
    fn state_round_trips_at_every_split() {
        split_matches_whole::<Sha256>();
        split_matches_whole::<Sha512>();
        split_matches_whole::<Sha512OnSha2>();
    }

    /// SHA-512 always on the `sha2` crate, whatever this process's backend.
    #[derive(Clone, Debug)]
    struct Sha512OnSha2;

    impl Variant for Sha512OnSha2 {
        const NAME: &'static str = Sha512::NAME;
        const ID: u8 = Sha512::ID;
        const BLOCK_SIZE: usize = Sha512::BLOCK_SIZE;
        const DIGEST_SIZE: usize = Sha512::DIGEST_SIZE;
        const LENGTH_FIELD_SIZE: usize = Sha512::LENGTH_FIELD_SIZE;
        type Word = u64;
        const INITIAL: [u64; 8] = Sha512::INITIAL;

        fn compress(chaining: &mut [u64; 8], blocks: &[u8]) {
            Sha512Backend::Sha2.compress512(chaining, blocks.as_chunks::<128>().0);
        }
    }

    #[test]
    fn sha512_backends_agree_at_every_split() {
        let backend = Sha512Backend::get();
        eprintln!("SHA-512 backend: {}", backend.name());
        let data: Vec<u8> = (0..1500u32).map(|i| (i * 37 % 253) as u8).collect();
        for split in 0..=data.len() {
            let mut ours = Sha2::<Sha512>::new();
            let mut pure = Sha2::<Sha512OnSha2>::new();
            ours.update(&data[..split]);
            pure.update(&data[..split]);
            assert_eq!(ours.state(), pure.state(), "state at {split}");
            assert_eq!(ours.digest(), pure.digest(), "digest at {split}");

            // Each resumes from the other's state.
            let mut ours_resumed = Sha2::<Sha512>::from_state(&pure.state()).expect("state");
            let mut pure_resumed = Sha2::<Sha512OnSha2>::from_state(&ours.state()).expect("state");
            ours_resumed.update(&data[split..]);
            pure_resumed.update(&data[split..]);
            assert_eq!(
                ours_resumed.state(),
                pure_resumed.state(),
                "resumed at {split}"
            );
            assert_eq!(
                ours_resumed.digest(),
                pure_resumed.digest(),
                "resumed at {split}"
            );
        }
    }

    #[test]
    fn bad_states_are_refused() {
        let mut hasher = Sha2::<Sha256>::new();
        hasher.update(b"hello");
        let state = hasher.state();
        assert_eq!(state.len(), 46 + 5);
        assert_eq!(state_algorithm(&state), Ok(Sha256::ID));

        assert_eq!(
            Sha2::<Sha256>::from_state(b"").unwrap_err(),
            StateError::NotAState
        );
        assert_eq!(
            Sha2::<Sha256>::from_state(b"NCRh").unwrap_err(),
            StateError::Truncated
        );
        assert_eq!(
            Sha2::<Sha256>::from_state(b"NCRh\x01").unwrap_err(),
            StateError::Truncated
        );
        assert_eq!(
            Sha2::<Sha256>::from_state(b"NCRh\x09\x01").unwrap_err(),
            StateError::UnsupportedVersion(9)
        );
        assert_eq!(
            Sha2::<Sha512>::from_state(&state).unwrap_err(),
            StateError::WrongAlgorithm {
                expected: "sha512",
                found: 1
            }
        );
        for cut in 6..state.len() {
            assert!(
                Sha2::<Sha256>::from_state(&state[..cut]).is_err(),
                "cut at {cut}"
            );
        }
        let mut longer = state.clone();
        longer.push(0);
        assert_eq!(
            Sha2::<Sha256>::from_state(&longer).unwrap_err(),
            StateError::Length {
                expected: 51,
                found: 52
            }
        );
    }
}
