//! SHA-512 block compression by the system's OpenSSL 3 (`libcrypto.so.3`), loaded at
//! run time.
//!
//! Why: on `x86_64` OpenSSL's SHA-512 assembly (AVX2 with BMI2) hashes ~1.3x faster than
//! the `sha2` crate's AVX2 code, and `hashlib`, our yardstick, is OpenSSL. (For SHA-256
//! both use SHA-NI and run level, so SHA-256 stays on `sha2`.)
//!
//! How: `dlopen("libcrypto.so.3")`, the library Python's own `_hashlib` links on Debian,
//! so it is on every machine that has Python's `hashlib` and is usually loaded already.
//! Loading it at run time rather than linking it needs no OpenSSL headers or `libssl-dev`
//! to build, keeps the extension free of a link-time dependency (the wheel imports
//! anywhere), and lets the engine fall back to `sha2` where the library is missing.
//!
//! The function used is `SHA512_Update`, deprecated in OpenSSL 3.0 but exported by every
//! 3.x (the soname changes on any ABI break). It is called on a `SHA512_CTX` holding our
//! chaining value and an empty block buffer, with whole blocks only: it then hands them
//! all to `sha512_block_data_order`, OpenSSL's assembly, in one call, and leaves the new
//! chaining value in `h`. Its byte counters are ignored; the engine keeps its own. A
//! self-test against `sha2` at load refuses a library that computes anything else.

use core::ffi::{c_int, c_uint, c_void};

/// `SHA512_CTX` from OpenSSL 3's `<openssl/sha.h>` (`SHA_LONG64` is 64 bits everywhere).
#[repr(C)]
struct Sha512Ctx {
    h: [u64; 8],
    nl: u64,
    nh: u64,
    /// `union { SHA_LONG64 d[16]; unsigned char p[128]; } u`: 8-aligned, as `[u64; 16]` is.
    u: [u64; 16],
    num: c_uint,
    md_len: c_uint,
}

/// `int SHA512_Update(SHA512_CTX *c, const void *data, size_t len)`.
type Sha512Update = unsafe extern "C" fn(*mut Sha512Ctx, *const c_void, usize) -> c_int;

/// The library's SHA-512 compression function, checked to compute SHA-512.
#[derive(Clone, Copy, Debug)]
pub struct Libcrypto {
    sha512_update: Sha512Update,
}

impl Libcrypto {
    /// Loads `libcrypto.so.3` (or finds it loaded) and checks its `SHA512_Update`;
    /// `None` if either is missing or the self-test fails.
    #[must_use]
    pub fn load() -> Option<Self> {
        let sha512_update = sha512_update()?;
        let library = Self { sha512_update };
        library.passes_self_test().then_some(library)
    }

    /// Compresses `blocks` into `chaining`, as `sha2::block_api::compress512` does.
    pub fn compress512(self, chaining: &mut [u64; 8], blocks: &[[u8; 128]]) {
        if blocks.is_empty() {
            return;
        }
        let mut ctx = Sha512Ctx {
            h: *chaining,
            nl: 0,
            nh: 0,
            u: [0; 16],
            num: 0,
            md_len: 64,
        };
        // SAFETY: `ctx` is a valid `SHA512_CTX` with nothing buffered (`num == 0`), and the
        // data is `blocks.len() * 128` readable bytes; SHA512_Update reads them, writes only
        // `ctx`, and keeps neither pointer. A whole number of blocks leaves nothing buffered.
        let ok = unsafe {
            (self.sha512_update)(&raw mut ctx, blocks.as_ptr().cast(), size_of_val(blocks))
        };
        debug_assert_eq!(ok, 1, "SHA512_Update failed");
        debug_assert_eq!(ctx.num, 0, "SHA512_Update buffered part of a block");
        *chaining = ctx.h;
    }

    /// Whether the library agrees with `sha2` on one block and on several in one call
    /// (its assembly takes blocks two at a time on AVX2).
    fn passes_self_test(self) -> bool {
        let mut blocks = [[0u8; 128]; 3];
        let mut byte = 13u8;
        for slot in blocks.as_flattened_mut() {
            byte = byte.wrapping_mul(167).wrapping_add(29);
            *slot = byte;
        }
        [&blocks[..1], &blocks[..]].into_iter().all(|blocks| {
            let mut ours = <crate::engine::Sha512 as crate::engine::Variant>::INITIAL;
            let mut theirs = ours;
            sha2::block_api::compress512(&mut ours, blocks);
            self.compress512(&mut theirs, blocks);
            ours == theirs
        })
    }
}

/// `SHA512_Update` from `libcrypto.so.3`, which stays loaded for the life of the process.
#[cfg(target_os = "linux")]
fn sha512_update() -> Option<Sha512Update> {
    // SAFETY: a NUL-terminated name; loading libcrypto runs only its own initialisers
    // (CPU feature detection), and if Python's `_hashlib` has loaded it this is a lookup.
    let handle = unsafe {
        libc::dlopen(
            c"libcrypto.so.3".as_ptr(),
            libc::RTLD_NOW | libc::RTLD_LOCAL,
        )
    };
    if handle.is_null() {
        return None;
    }
    // SAFETY: `handle` is a live handle and the name NUL-terminated. The handle is never
    // closed, so the symbol stays valid for the life of the process.
    let symbol = unsafe { libc::dlsym(handle, c"SHA512_Update".as_ptr()) };
    if symbol.is_null() {
        return None;
    }
    // SAFETY: OpenSSL 3 declares `int SHA512_Update(SHA512_CTX *, const void *, size_t)`,
    // which `Sha512Update` spells in Rust; the soname pins that ABI.
    Some(unsafe { core::mem::transmute::<*mut c_void, Sha512Update>(symbol) })
}

/// Elsewhere OpenSSL's library has other names and no Python links it: use `sha2`.
#[cfg(not(target_os = "linux"))]
fn sha512_update() -> Option<Sha512Update> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agrees_with_sha2_for_every_block_count() {
        let Some(library) = Libcrypto::load() else {
            // Every Debian with Python has libssl3; say so loudly if this one does not.
            eprintln!("libcrypto.so.3 not loadable: OpenSSL SHA-512 path untested");
            return;
        };
        let data: Vec<u8> = (0..128 * 40u32).map(|i| (i * 31 % 251) as u8).collect();
        let (blocks, _) = data.as_chunks::<128>();
        for count in 0..=blocks.len() {
            let mut ours = [7, 6, 5, 4, 3, 2, 1, u64::MAX];
            let mut theirs = ours;
            sha2::block_api::compress512(&mut ours, &blocks[..count]);
            library.compress512(&mut theirs, &blocks[..count]);
            assert_eq!(ours, theirs, "{count} blocks");
        }
    }
}
