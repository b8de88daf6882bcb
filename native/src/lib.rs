//! `ncr_trio._native`: streaming SHA-256 and SHA-512 hashers for Python with
//! zero-copy buffer input, the GIL released on large updates, and a state that
//! can be saved and restored. `ncr_trio.hashing` is the public face of this.
//! SHA-512 runs OpenSSL's code where the system `libcrypto.so.3` loads
//! (`libcrypto.rs`); `SHA512_BACKEND` says which code this process uses.

mod engine;
mod libcrypto;

use pyo3::buffer::PyUntypedBuffer;
use pyo3::exceptions::{PyBufferError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use engine::{Sha2, Sha512Backend, StateError, Variant, hex};

/// Updates at least this long are hashed with the GIL released, as `hashlib`
/// does (`HASHLIB_GIL_MINSIZE`). 2 KiB take about 1 µs to hash, and
/// at that size releasing the GIL measured no slower on one thread than
/// holding it. Releasing early matters to the upload path, which hashes the
/// request body's chunks, as small as the socket delivers them, in a worker
/// thread while the Trio thread needs the GIL.
const GIL_RELEASE_THRESHOLD: usize = 2048;

impl From<StateError> for PyErr {
    fn from(error: StateError) -> Self {
        PyValueError::new_err(error.to_string())
    }
}

/// Borrows the bytes of a C-contiguous buffer export, in memory order.
fn contiguous_bytes(buffer: &PyUntypedBuffer) -> PyResult<&[u8]> {
    if !buffer.is_c_contiguous() {
        return Err(PyBufferError::new_err(
            "hashing needs a C-contiguous buffer; copy it with bytes() first",
        ));
    }
    let len = buffer.len_bytes();
    if len == 0 {
        // An empty export may have a null pointer, which a slice may not.
        return Ok(&[]);
    }
    // SAFETY: `buffer` holds the export until it is dropped, and while it is
    // held the exporter keeps the memory in place (a bytearray refuses to
    // resize, an mmap to close). A C-contiguous export is `len` bytes from
    // `buf_ptr`. Another thread writing the memory while we read it races
    // with us, as it does with hashlib: the digest is then unspecified, and
    // byte reads cannot produce invalid values.
    Ok(unsafe { std::slice::from_raw_parts(buffer.buf_ptr().cast::<u8>(), len) })
}

/// Hashes any object exporting the buffer protocol without copying it,
/// releasing the GIL while hashing large inputs.
fn absorb<V: Variant>(
    py: Python<'_>,
    hasher: &mut Sha2<V>,
    data: &Bound<'_, PyAny>,
) -> PyResult<()> {
    let buffer = PyUntypedBuffer::get(data)?;
    let bytes = contiguous_bytes(&buffer)?;
    if bytes.len() >= GIL_RELEASE_THRESHOLD {
        py.detach(|| hasher.update(bytes));
    } else {
        hasher.update(bytes);
    }
    Ok(())
}

/// Defines the Python class for one SHA-2 variant.
macro_rules! hasher_class {
    ($class:ident, $variant:ty, $doc:literal) => {
        #[doc = $doc]
        #[pyclass(module = "ncr_trio._native")]
        #[derive(Clone, Debug)]
        pub struct $class(Sha2<$variant>);

        #[pymethods]
        impl $class {
            #[new]
            #[pyo3(signature = (data = None))]
            fn new(py: Python<'_>, data: Option<&Bound<'_, PyAny>>) -> PyResult<Self> {
                let mut hasher = Sha2::new();
                if let Some(data) = data {
                    absorb(py, &mut hasher, data)?;
                }
                Ok(Self(hasher))
            }

            /// Hashes `data`, any C-contiguous buffer, without copying it.
            fn update(&mut self, py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<()> {
                absorb(py, &mut self.0, data)
            }

            /// The digest of the data so far; the hasher can go on.
            fn digest<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
                PyBytes::new(py, &self.0.digest())
            }

            /// The digest as lowercase hexadecimal.
            fn hexdigest(&self) -> String {
                hex(&self.0.digest())
            }

            /// An independent hasher in the same state.
            fn copy(&self) -> Self {
                self.clone()
            }

            /// The exact state, for `from_state` to resume from later.
            fn state<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
                PyBytes::new(py, &self.0.state())
            }

            #[getter]
            fn name(&self) -> &'static str {
                <$variant>::NAME
            }

            #[getter]
            fn digest_size(&self) -> usize {
                <$variant>::DIGEST_SIZE
            }

            #[getter]
            fn block_size(&self) -> usize {
                <$variant>::BLOCK_SIZE
            }

            fn __repr__(slf: &Bound<'_, Self>) -> String {
                format!(
                    "<{} ncr_trio._native.{} object @ {:p}>",
                    <$variant>::NAME,
                    stringify!($class),
                    slf.as_ptr()
                )
            }
        }
    };
}

hasher_class!(Sha256, engine::Sha256, "A streaming SHA-256 hasher.");
hasher_class!(Sha512, engine::Sha512, "A streaming SHA-512 hasher.");

/// Restores a hasher from the bytes of its `state()`; `ValueError` if they are not one.
#[pyfunction]
fn from_state<'py>(py: Python<'py>, state: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
    let buffer = PyUntypedBuffer::get(state)?;
    let state = contiguous_bytes(&buffer)?;
    match engine::state_algorithm(state)? {
        engine::Sha256::ID => Ok(Bound::new(py, Sha256(Sha2::from_state(state)?))?.into_any()),
        engine::Sha512::ID => Ok(Bound::new(py, Sha512(Sha2::from_state(state)?))?.into_any()),
        unknown => Err(StateError::UnknownAlgorithm(unknown).into()),
    }
}

#[pymodule]
fn _native(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_class::<Sha256>()?;
    module.add_class::<Sha512>()?;
    module.add_function(wrap_pyfunction!(from_state, module)?)?;
    module.add("GIL_RELEASE_THRESHOLD", GIL_RELEASE_THRESHOLD)?;
    // Chosen here, at import, rather than inside the first SHA-512 update.
    module.add("SHA512_BACKEND", Sha512Backend::get().name())?;
    Ok(())
}
