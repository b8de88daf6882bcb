"""ncr_trio.hashing: the native streaming SHA-256/SHA-512 hashers and their resumable state."""

from __future__ import annotations

import array
import ctypes
import hashlib
import itertools
import json
import mmap
import os
import random
import struct
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ncr_trio import _native, hashing

MiB = 1 << 20
ALGORITHMS = sorted(hashing.ALGORITHMS)

# FIPS 180-2 appendix examples, plus the empty message.
MSG_448 = b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"
MSG_896 = (b"abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmno"
           b"ijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu")
NIST_VECTORS = [
    ("sha256", b"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
    ("sha256", b"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
    ("sha256", MSG_448, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"),
    ("sha256", MSG_896, "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1"),
    ("sha256", b"a" * 1_000_000, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"),
    ("sha512", b"", ("cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce"
                     "47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e")),
    ("sha512", b"abc", ("ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a"
                        "2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f")),
    ("sha512", MSG_448, ("204a8fc6dda82f0a0ced7beb8e08a41657c16ef468b228a8279be331a703c335"
                         "96fd15c13b1b07f9aa1d3bea57789ca031ad85c7a71dd70354ec631238ca3445")),
    ("sha512", MSG_896, ("8e959b75dae313da8cf4f72814fc143f8f7779c6eb9f7fa17299aeadb6889018"
                         "501d289e4900f7e4331b99dec4b5433ac7d329eeb6dd26545e96e55b874be909")),
    ("sha512", b"a" * 1_000_000, ("e718483d0ce769644e2e42c7bc15b4638e1f98b13b2044285632a803afa973eb"
                                  "de0ff244877ea60a4cb0432ce577c31beb009c5c2c49aa2e4eadb217ad8cc09b")),
]

# Sizes around the padding and block boundaries of both algorithms.
EDGE_SIZES = [0, 1, 55, 56, 57, 63, 64, 65, 111, 112, 113, 127, 128, 129, 191, 192, 255, 256]

algorithms = st.sampled_from(ALGORITHMS)


def random_bytes(seed: int, size: int) -> bytes:
    return random.Random(seed).randbytes(size)


# Hypothesis draws the seed and the size; the bytes come from `random`, so that multi-MiB
# messages cost nothing to generate or shrink.
messages = st.builds(
    random_bytes,
    seed=st.integers(0, 2**32),
    size=st.one_of(st.sampled_from(EDGE_SIZES), st.integers(0, 4096)),
)
big_messages = st.builds(random_bytes, seed=st.integers(0, 2**32), size=st.integers(MiB, 5 * MiB))

# Hashing is never timed here: no deadlines.
settings.register_profile("hashing", deadline=None, suppress_health_check=[HealthCheck.too_slow])
hashing_settings = settings.get_profile("hashing")


def reference(algorithm: str, data: bytes) -> bytes:
    return hashlib.new(algorithm, data).digest()


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    bounds = [0, *sorted(cut % (len(data) + 1) for cut in cuts), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


# --- known answers and agreement with hashlib ---------------------------------------------

@pytest.mark.parametrize(("algorithm", "message", "expected"), NIST_VECTORS,
                         ids=[f"{a}-{len(m)}" for a, m, _ in NIST_VECTORS])
def test_nist_vectors(algorithm: str, message: bytes, expected: str) -> None:
    assert hashing.new(algorithm, message).hexdigest() == expected
    hasher = hashing.new(algorithm)
    for piece in split(message, [1, 3, 64, 200]):
        hasher.update(piece)
    assert hasher.digest() == bytes.fromhex(expected)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("size", EDGE_SIZES)
def test_edge_sizes(algorithm: str, size: int) -> None:
    data = random_bytes(size, size)
    assert hashing.new(algorithm, data).digest() == reference(algorithm, data)


@hashing_settings
@given(algorithm=algorithms, data=messages)
def test_agrees_with_hashlib(algorithm: str, data: bytes) -> None:
    hasher = hashing.new(algorithm, data)
    assert hasher.digest() == reference(algorithm, data)
    assert hasher.hexdigest() == hashlib.new(algorithm, data).hexdigest()


@settings(hashing_settings, max_examples=10)
@given(algorithm=algorithms, data=big_messages)
def test_agrees_with_hashlib_on_large_data(algorithm: str, data: bytes) -> None:
    assert hashing.new(algorithm, data).digest() == reference(algorithm, data)


@hashing_settings
@given(algorithm=algorithms, data=messages, cuts=st.lists(st.integers(0, 5000), max_size=12))
def test_update_split_anywhere(algorithm: str, data: bytes, cuts: list[int]) -> None:
    hasher = hashing.new(algorithm)
    for piece in split(data, cuts):
        hasher.update(piece)
    assert hasher.digest() == reference(algorithm, data)


def test_attributes_match_hashlib() -> None:
    assert hashing.ALGORITHMS == frozenset({"sha256", "sha512"})
    for algorithm in ALGORITHMS:
        ours, theirs = hashing.new(algorithm), hashlib.new(algorithm)
        assert (ours.name, ours.digest_size, ours.block_size) == (
            theirs.name, theirs.digest_size, theirs.block_size)
    assert hashing.sha256().name == "sha256"
    assert repr(hashing.sha512()).startswith("<sha512 ncr_trio._native.Sha512 object @ 0x")
    assert hashing.sha512().name == "sha512"
    assert hashing.sha256(b"abc").digest() == reference("sha256", b"abc")
    assert hashing.sha512(b"abc").digest() == reference("sha512", b"abc")


@pytest.mark.parametrize("name", ["md5", "sha1", "SHA256", "sha-256", "sha384", ""])
def test_unknown_algorithm(name: str) -> None:
    with pytest.raises(ValueError, match="unsupported hash algorithm"):
        hashing.new(name)


def test_digest_does_not_finish_the_hasher() -> None:
    hasher = hashing.sha256(b"ab")
    assert hasher.digest() == hasher.digest() == reference("sha256", b"ab")
    hasher.update(b"c")
    assert hasher.digest() == reference("sha256", b"abc")


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_copy_is_independent(algorithm: str) -> None:
    original = hashing.new(algorithm, b"abc")
    copy = original.copy()
    copy.update(b"def")
    assert original.digest() == reference(algorithm, b"abc")
    original.update(b"xyz")
    assert copy.digest() == reference(algorithm, b"abcdef")
    assert original.digest() == reference(algorithm, b"abcxyz")
    assert type(copy) is type(original)


# --- resumable state ------------------------------------------------------------------------

@hashing_settings
@given(algorithm=algorithms, data=messages, cut=st.integers(0, 5000))
def test_state_resumes_in_a_fresh_hasher(algorithm: str, data: bytes, cut: int) -> None:
    cut %= len(data) + 1
    state = hashing.new(algorithm, data[:cut]).state()
    resumed = hashing.from_state(bytes(state))
    assert resumed.name == algorithm
    resumed.update(data[cut:])
    assert resumed.digest() == reference(algorithm, data)


@settings(hashing_settings, max_examples=10)
@given(algorithm=algorithms, data=big_messages, cut=st.integers(0, 5 * MiB))
def test_state_resumes_on_large_data(algorithm: str, data: bytes, cut: int) -> None:
    cut %= len(data) + 1
    resumed = hashing.from_state(hashing.new(algorithm, data[:cut]).state())
    resumed.update(data[cut:])
    assert resumed.digest() == reference(algorithm, data)


@hashing_settings
@given(algorithm=algorithms, data=messages, cuts=st.lists(st.integers(0, 5000), max_size=40))
def test_state_saved_after_every_update(algorithm: str, data: bytes, cuts: list[int]) -> None:
    """As an upload does: store the state after each chunk, resume from it for the next."""
    state = hashing.new(algorithm).state()
    for piece in split(data, cuts):
        hasher = hashing.from_state(state)
        hasher.update(piece)
        state = hasher.state()
    assert hashing.from_state(state).digest() == reference(algorithm, data)


def test_state_after_many_updates() -> None:
    data = random_bytes(7, 3 * MiB + 77)
    for algorithm in ALGORITHMS:
        hasher = hashing.new(algorithm)
        for piece in split(data, list(range(0, len(data), 997))):
            hasher.update(piece)
        restored = hashing.from_state(hasher.state())
        assert restored.digest() == hasher.digest() == reference(algorithm, data)
        assert restored.state() == hasher.state()


def test_state_format_is_stable() -> None:
    """The encoding is stored in databases: changing it needs a new version byte."""
    sha256_h = [0x6A09E667, 0xBB67AE85, 0x3C6EF372, 0xA54FF53A,
                0x510E527F, 0x9B05688C, 0x1F83D9AB, 0x5BE0CD19]
    assert hashing.sha256(b"abc").state() == (
        b"NCRh\x01\x01" + struct.pack("<8I", *sha256_h) + struct.pack("<Q", 3) + b"abc")

    sha512 = hashing.sha512(b"x" * 130)
    state = sha512.state()
    assert state[:6] == b"NCRh\x01\x02"
    assert len(state) == 6 + 64 + 8 + 2
    assert struct.unpack_from("<Q", state, 70) == (130,)
    assert state[78:] == b"xx"


def _valid_state() -> bytes:
    return hashing.sha256(b"hello").state()


GARBAGE_STATES = {
    "empty": b"",
    "other bytes": b"definitely not a hasher state, but long enough to look like one" * 2,
    "magic only": b"NCRh",
    "no algorithm": b"NCRh\x01",
    "future version": b"NCRh\x02" + _valid_state()[5:],
    "unknown algorithm": b"NCRh\x01\x07" + _valid_state()[6:],
    "sha512 id on a sha256 body": b"NCRh\x01\x02" + _valid_state()[6:],
    "no byte count": _valid_state()[:38],
    "short partial block": _valid_state()[:-1],
    "trailing byte": _valid_state() + b"\x00",
    "count disagrees with partial block": _valid_state()[:38] + struct.pack("<Q", 6) + b"hello",
}


@pytest.mark.parametrize("state", GARBAGE_STATES.values(), ids=GARBAGE_STATES.keys())
def test_garbage_state_is_refused(state: bytes) -> None:
    with pytest.raises(ValueError, match="hasher state"):
        hashing.from_state(state)


def test_every_truncation_is_refused() -> None:
    for algorithm in ALGORITHMS:
        state = hashing.new(algorithm, b"q" * 100).state()
        for cut in range(len(state)):
            with pytest.raises(ValueError):
                hashing.from_state(state[:cut])


@hashing_settings
@given(st.one_of(st.binary(max_size=300), st.binary(max_size=300).map(lambda tail: b"NCRh\x01" + tail)))
def test_arbitrary_bytes_restore_or_raise_value_error(state: bytes) -> None:
    try:
        hasher = hashing.from_state(state)
    except ValueError:
        return
    # Anything accepted is a faithful state: it re-encodes to the same bytes.
    assert hasher.state() == state


def test_state_must_be_bytes_like() -> None:
    with pytest.raises(TypeError):
        hashing.from_state("NCRh")  # type: ignore[arg-type]


# --- SHA-512 backends -----------------------------------------------------------------------
# SHA-512 runs OpenSSL's code from the system libcrypto.so.3 where it loads, else the sha2
# crate's; NCR_TRIO_SHA512_BACKEND=sha2 asks for sha2. The two must be indistinguishable.

SHA512_BACKEND_VAR = "NCR_TRIO_SHA512_BACKEND"


def _libcrypto_loads() -> bool:
    try:
        ctypes.CDLL("libcrypto.so.3")
    except OSError:
        return False
    return True


@pytest.mark.allow_skip(f"{SHA512_BACKEND_VAR}=sha2")  # the pure-Rust SHA-512 chosen on purpose
@pytest.mark.skipif(os.environ.get(SHA512_BACKEND_VAR) == "sha2", reason=f"{SHA512_BACKEND_VAR}=sha2")
def test_sha512_runs_on_openssl_where_libcrypto_loads() -> None:
    """hashlib's SHA-512 is OpenSSL's: ours keeps up with it only on the same code."""
    expected = "openssl" if sys.platform.startswith("linux") and _libcrypto_loads() else "sha2"
    assert _native.SHA512_BACKEND == expected


# (seed, size, cuts): a message of a few blocks cut everywhere, and a large one cut at block
# boundaries and between them, so that OpenSSL gets both single blocks and long runs.
SHA512_PROBE_CASES = [
    (11, 700, list(range(701))),
    (12, MiB + 333, sorted({0, 127, 128, 129, 4096, 65536 + 5, MiB, MiB + 200, MiB + 333,
                            *random.Random(13).sample(range(MiB + 334), 30)})),
]


def _sha512_probe(cases: list[tuple[int, int, list[int]]]) -> dict[str, object]:
    """This process's SHA-512 backend, and the state and digest after each cut's prefix."""
    results = []
    for seed, size, cuts in cases:
        data = random_bytes(seed, size)
        for cut in cuts:
            hasher = hashing.sha512(data[:cut])
            results.append([hasher.state().hex(), hasher.digest().hex()])
    return {"backend": _native.SHA512_BACKEND, "results": results}


def test_sha512_backends_agree_at_every_split() -> None:
    """States and digests are the same byte for byte on sha2 and on OpenSSL, and resume on either."""
    script = ("import json, sys; from tests.test_hashing import _sha512_probe; "
              "print(json.dumps(_sha512_probe(json.loads(sys.argv[1]))))")
    child = subprocess.run(
        [sys.executable, "-c", script, json.dumps(SHA512_PROBE_CASES)],
        env={**os.environ, SHA512_BACKEND_VAR: "sha2"}, cwd=Path(__file__).parents[1],
        capture_output=True, text=True, check=True, timeout=120,
    )
    on_sha2 = json.loads(child.stdout)
    here = _sha512_probe(SHA512_PROBE_CASES)
    assert on_sha2["backend"] == "sha2"
    assert here["results"] == on_sha2["results"], f"{here['backend']} disagrees with sha2"

    # A state saved on sha2 resumes here (OpenSSL where it loads), and the digest is right.
    states = iter(on_sha2["results"])
    for seed, size, cuts in SHA512_PROBE_CASES:
        data = random_bytes(seed, size)
        for cut in cuts:
            state, digest = next(states)
            assert bytes.fromhex(digest) == reference("sha512", data[:cut])
            resumed = hashing.from_state(bytes.fromhex(state))
            resumed.update(data[cut:])
            assert resumed.digest() == reference("sha512", data), f"seed {seed}, cut {cut}"


# --- buffers --------------------------------------------------------------------------------

DATA = random_bytes(1, 10_000)


def _as_bytes(data: bytes) -> object:
    return data


def _as_bytearray(data: bytes) -> object:
    return bytearray(data)


def _as_memoryview_slice(data: bytes) -> object:
    return memoryview(b"head" + data + b"tail")[4:-4]


def _as_2d_memoryview(data: bytes) -> object:
    return memoryview(data).cast("B", shape=[len(data) // 8, 8])


def _as_typed_array(data: bytes) -> object:
    return array.array("I", data)


@pytest.mark.parametrize("wrap", [_as_bytes, _as_bytearray, _as_memoryview_slice,
                                  _as_2d_memoryview, _as_typed_array])
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_buffer_types(algorithm: str, wrap: Callable[[bytes], object]) -> None:
    buffer = wrap(DATA)
    hasher = hashing.new(algorithm)
    hasher.update(buffer)  # type: ignore[arg-type]
    assert hasher.digest() == reference(algorithm, DATA)
    assert hashing.new(algorithm, buffer).digest() == reference(algorithm, DATA)  # type: ignore[arg-type]


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_mmap_buffer(algorithm: str, tmp_path: Path) -> None:
    path = tmp_path / "blob"
    data = random_bytes(2, 3 * MiB + 5)
    path.write_bytes(data)
    with (
        path.open("rb") as file,
        mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as mapped,
        memoryview(mapped) as view,  # released before the mmap closes
    ):
        hasher = hashing.new(algorithm)
        hasher.update(view[:1000])
        hasher.update(view[1000:])
    assert hasher.digest() == reference(algorithm, data)


def test_non_contiguous_buffer_is_refused() -> None:
    hasher = hashing.sha256(b"ab")
    with pytest.raises(BufferError, match="contiguous"):
        hasher.update(memoryview(DATA)[::2])
    with pytest.raises(TypeError):
        hasher.update("text")  # type: ignore[arg-type]
    # A refused update hashes nothing.
    assert hasher.digest() == reference("sha256", b"ab")


# --- the GIL --------------------------------------------------------------------------------

def _other_thread_runs_during(update: Callable[[], None], attempts: int) -> bool:
    """Whether another Python thread gets to run while this one calls `update` up to `attempts` times.

    With the switch interval set far beyond the test's length, the interpreter never takes the
    GIL away from this thread, and nothing between the calls blocks: the other thread can run
    only if `update` releases the GIL itself.
    """
    go, ran = threading.Event(), threading.Event()

    def other() -> None:
        go.wait()
        ran.set()

    thread = threading.Thread(target=other)
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1000.0)
    try:
        thread.start()  # returns once `other` blocks in go.wait(), letting go of the GIL
        go.set()  # now `other` is runnable, and needs the GIL
        for _ in range(attempts):
            update()
            if ran.is_set():
                return True
        return False
    finally:
        sys.setswitchinterval(interval)
        thread.join()


@pytest.mark.allow_skip("no GIL to release")  # a free-threaded Python
@pytest.mark.skipif(not getattr(sys, "_is_gil_enabled", lambda: True)(), reason="no GIL to release")
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_update_releases_the_gil_on_large_inputs(algorithm: str) -> None:
    hasher = hashing.new(algorithm)
    small = bytes(_native.GIL_RELEASE_THRESHOLD - 1)
    large = bytes(4 * MiB)  # milliseconds of hashing each time: time enough for the other thread

    # The control shows the probe works: an update under the threshold keeps the GIL throughout.
    assert not _other_thread_runs_during(lambda: hasher.update(small), attempts=1000)
    assert _other_thread_runs_during(lambda: hasher.update(large), attempts=500)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_threads_hash_at_the_same_time(algorithm: str) -> None:
    """Hashers in several threads, each updating without the GIL, do not disturb one another."""
    messages = [random_bytes(seed, 3 * MiB + seed) for seed in range(4)]
    digests: list[bytes | None] = [None] * len(messages)
    start = threading.Barrier(len(messages))

    def work(index: int) -> None:
        hasher = hashing.new(algorithm)
        view = memoryview(messages[index])
        start.wait()
        for offset in range(0, len(view), 64 * 1024):
            hasher.update(view[offset:offset + 64 * 1024])
        digests[index] = hasher.digest()

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(messages))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert digests == [reference(algorithm, message) for message in messages]
