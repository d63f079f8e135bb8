"""The Python API as its users meet it: errors that name the URI and what the bytes are,
numpy values in `store_json`, progress bars drawn only where someone watches (a real
pseudo-terminal), the same arguments for module functions and `Client` methods, and the
API list of docs/python-api.md kept true (its examples run in
tests/system/test_docs_examples.py)."""

from __future__ import annotations

import fcntl
import inspect
import os
import pty
import re
import struct
import subprocess
import sys
import termios
import textwrap
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np
import pytest

import kachery_client as kc

API_PAGE = Path(__file__).resolve().parents[2] / "docs" / "python-api.md"

MAGIC: List[Tuple[str, bytes, str]] = [
    ("PNG", b"\x89PNG\r\n\x1a\n" + bytes(40), "89 50 4e 47: a PNG?"),
    ("JPEG", b"\xff\xd8\xff\xe0" + bytes(40), "ff d8 ff e0: a JPEG?"),
    ("gzip", b"\x1f\x8b\x08\x00" + bytes(40), "1f 8b 08 00: gzip?"),
    ("zip", b"PK\x03\x04" + bytes(40), "50 4b 03 04: a zip (or .npz)?"),
    ("HDF5", b"\x89HDF\r\n\x1a\n" + bytes(40), "89 48 44 46: HDF5 (.h5, .nwb)?"),
    ("PDF", b"%PDF-1.7\n" + bytes(40), "25 50 44 46: a PDF?"),
    ("pickle", b"\x80\x04\x95" + bytes(40), "80 04 95 00: a pickle?"),
]


@pytest.mark.parametrize("kind,data,shown", MAGIC, ids=[m[0] for m in MAGIC])
def test_load_json_of_binary_bytes_names_the_uri_and_the_format(kenv, kind, data, shown) -> None:
    uri = kc.store_bytes(data, "thing")
    with pytest.raises(kc.FormatError) as info:
        kc.load_json(uri)
    assert str(info.value).startswith(f"{uri} is not JSON (it starts with bytes {shown})")
    assert "\n" not in str(info.value)
    assert isinstance(info.value, kc.KacheryError)


def test_each_typed_load_says_what_the_bytes_are(kenv) -> None:
    png = kc.store_bytes(MAGIC[0][1], "plot.png")
    csv = kc.store_text("time,volts\n0,1.5\n", "trace.csv")
    npy = kc.store_npy(np.arange(3))
    cases = [
        (kc.load_npy, csv, f"{csv} is not a .npy array (it starts with 'time,volts\\n0,1.5\\n')"),
        (kc.load_text, png, f"{png} is not UTF-8 text (byte 0x89 at offset 0; it starts with bytes 89 50 4e 47: a PNG?)"),
        (kc.load_pkl, png, f"{png} is not a pickle (it starts with bytes 89 50 4e 47: a PNG?)"),
        (kc.load_pkl, csv, f"{csv} is not a pickle (it starts with 'time,volts"),
        (kc.load_json, npy, f"{npy} is not JSON (it starts with bytes 93 4e 55 4d: a .npy array?)"),
        (kc.load_json, csv, f"{csv} is not JSON (Expecting value: line 1 column 1 (char 0); it starts with 'time"),
        (kc.load_npy, png, f"{png} is not a .npy array (it starts with bytes 89 50 4e 47: a PNG?)"),
        (kc.load_text, kc.store_bytes(b""), "is not"),  # empty is text: no error (below)
    ]  # fmt: skip
    for load, uri, start in cases[:-1]:
        with pytest.raises(kc.FormatError) as info:
            load(uri)
        assert str(info.value).startswith(start), (load.__name__, str(info.value))
    assert kc.load_text(cases[-1][1]) == ""
    with pytest.raises(kc.FormatError, match="is not JSON \\(.*it is empty\\)"):
        kc.load_json(kc.store_bytes(b""))
    # A .npy of Python objects is refused by name, never unpickled.
    import io

    buffer = io.BytesIO()
    np.save(buffer, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    evil = kc.store_bytes(buffer.getvalue(), "objects.npy")
    with pytest.raises(kc.FormatError, match=re.escape(f"{evil} is a .npy file numpy cannot load")):
        kc.load_npy(evil)


def test_a_format_error_is_one_line_in_a_user_s_traceback(kenv) -> None:
    script = "import kachery_client as kc; kc.load_json(kc.store_bytes(bytes.fromhex('89504e470d0a1a0a00')))"
    done = subprocess.run(
        [sys.executable, "-c", script], env=kenv, capture_output=True, text=True, timeout=60
    )
    last = done.stderr.strip().splitlines()[-1]
    assert re.fullmatch(
        r"kachery_core\.errors\.FormatError: sha1://[0-9a-f]{40} is not JSON \(it starts with "
        r"bytes 89 50 4e 47: a PNG\?\); load_bytes or load_file give its bytes as they are",
        last,
    ), done.stderr


def test_store_json_takes_numpy_scalars_and_small_arrays(kenv) -> None:
    value = {
        "rate": np.float32(1.5),
        "count": np.int64(3),
        "ok": np.bool_(True),
        "name": np.str_("ms4"),
        "channels": np.arange(4, dtype=np.uint16),
        "grid": np.ones((2, 2)),
        "limit": np.zeros(10_000),
    }
    back = kc.load_json(kc.store_json(value))
    assert back["rate"] == 1.5 and back["count"] == 3 and back["ok"] is True
    assert back["name"] == "ms4" and back["channels"] == [0, 1, 2, 3]
    assert back["grid"] == [[1.0, 1.0], [1.0, 1.0]] and len(back["limit"]) == 10_000


@pytest.mark.parametrize(
    "value,says",
    [
        ({"big": np.zeros(10_001)}, "numpy array of 10,001 elements"),
        ({"s": {1, 2}}, "a set is not JSON"),
        ({"z": np.complex64(1j)}, "a complex is not JSON"),
        ({np.int64(1): 2}, "keys must be str"),
        ({"t": np.datetime64("2024-01-01")}, "is not JSON"),
    ],
    ids=["big-array", "set", "complex", "numpy-key", "datetime"],
)
def test_store_json_refuses_what_json_cannot_hold_with_a_hint(kenv, value, says) -> None:
    with pytest.raises(kc.InvalidInputError) as info:
        kc.store_json(value)
    message = str(info.value)
    assert says in message and "store_npy" in message and "\n" not in message, message
    assert not isinstance(info.value, TypeError)


def test_importing_the_api_and_the_cli_loads_neither_numpy_nor_tqdm(kenv) -> None:
    code = (
        "import sys, kachery_client as kc, kachery_cli.main\n"
        "kc.load_json(kc.store_json({'a': [1, 2.5]}))\n"
        "print(sorted(m for m in ('numpy', 'tqdm') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], env=kenv, capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.strip() == "[]", done


# -- same arguments, documented ------------------------------------------------------------


def _api_functions() -> List[str]:
    """The module functions that are also `Client` methods: the API docs/python-api.md lists."""
    return [
        name
        for name in kc.__all__
        if inspect.isfunction(getattr(kc, name)) and hasattr(kc.Client, name)
    ]


def test_module_functions_and_client_methods_take_the_same_arguments() -> None:
    names = _api_functions()
    assert {"load_bytes", "store_bytes", "store_stream", "load_dir", "get"} <= set(names)
    for name in names:
        function, method = getattr(kc, name), getattr(kc.Client, name)
        own = inspect.signature(function)
        of_method = inspect.signature(method)
        params = list(of_method.parameters.values())[1:]  # without self
        assert list(own.parameters.values()) == params, name
        assert own.return_annotation == of_method.return_annotation, name
        for doc in (function.__doc__, method.__doc__):
            assert doc and doc.strip(), name
        for param in params:
            assert param.annotation is not inspect.Parameter.empty, (name, param.name)
        if name.startswith(("load_", "read_")):
            assert "channel" in own.parameters, name
    for name in (
        "store_file",
        "link_file",
        "store_stream",
        "store_files",
        "load_file",
        "store_dir",
        "load_dir",
    ):
        assert "progress" in inspect.signature(getattr(kc, name)).parameters, name


def test_load_takes_channel_and_passes_it_to_the_backend(kenv) -> None:
    missing = "sha1://" + "0" * 40 + "/gone.bin"
    with pytest.raises(kc.NotFoundError) as plain:
        kc.load_bytes(missing)
    assert "from channel 'lab'" not in str(plain.value)
    for load in (kc.load_bytes, kc.load_text, kc.load_json, kc.load_file):
        with pytest.raises(kc.KacheryError, match="from channel 'lab'"):
            load(missing, channel="lab")
    with pytest.raises(kc.InvalidInputError, match="invalid channel name"):
        kc.load_bytes(missing, channel="not a name!")
    uri = kc.store_text("here already")
    assert kc.load_text(uri, channel="lab") == "here already"
    with kc.Client() as client:
        assert client.load_bytes(uri, 0, 4, channel="lab") == b"here"


def test_channel_reaches_a_real_node(kenv, node) -> None:
    """Through the http backend, the node itself answers for the channel the call named."""
    missing = "sha1://" + "1" * 40 + "/gone.bin"
    assert kc.Client().selection.name == "http"
    for load in (kc.load_bytes, kc.load_json, kc.load_file):
        with pytest.raises(kc.KacheryError) as info:
            load(missing, channel="lab")
        assert "from channel 'lab'; this node belongs to no channel" in str(info.value)


def _api_page_list() -> str:
    text = API_PAGE.read_text()
    start = text.index("The full API")
    return text[start : text.index("documents", start)]


def test_the_api_page_lists_exactly_the_api() -> None:
    listed = set(
        re.findall(
            r"\b(?:store|load|read|link)_\w+|\b(?:open|get|set|delete|usage|u?n?pin|drop|gc)\b",
            _api_page_list(),
        )
    )
    assert listed == set(_api_functions())


# -- progress bars -------------------------------------------------------------------------

CHILD = textwrap.dedent(
    """
    import os, sys
    import kachery_client as kc
    show = {"bar": True, "off": None}[sys.argv[1]]
    with open("data.bin", "wb") as f:
        f.write(os.urandom(8 << 20))
    os.makedirs("rec/sub", exist_ok=True)
    for i in range(3):
        with open(f"rec/sub/f{i}.bin", "wb") as f:
            f.write(os.urandom(1 << 20))
    calls = []
    uri = kc.store_file("data.bin", progress=show)
    kc.load_file(uri, dest="copy.bin", progress=show)
    folder = kc.store_dir("rec", progress=show)
    kc.load_dir(folder, "rec-copy", progress=show)
    odd = os.fsdecode(b"\\xffodd")  # a folder name that is not UTF-8 still gets its bar
    os.makedirs(odd)
    with open(os.path.join(odd, "x.bin"), "wb") as f:
        f.write(os.urandom(1 << 20))
    kc.store_dir(odd, progress=show)
    kc.store_file("copy.bin", label="again.bin", progress=calls.append)  # a callback still works
    assert calls and calls[-1] == 8 << 20, calls[-3:]
    print("ok")
    """
)


def _run_child(tmp_path: Path, kenv: Dict[str, str], mode: str, terminal: bool) -> Tuple[str, str]:
    """Run CHILD with stderr on a pseudo-terminal (100 columns) or a pipe: (stdout, stderr)."""
    work = tmp_path / f"{mode}-{terminal}"
    work.mkdir()
    (work / "child.py").write_text(CHILD)
    env = dict(kenv, KACHERY_STORAGE_DIR=str(work / "storage"))
    if not terminal:
        done = subprocess.run(
            [sys.executable, "child.py", mode],
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done
        return done.stdout, done.stderr
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    proc = subprocess.Popen(
        [sys.executable, "child.py", mode], cwd=work, env=env, stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=slave,
    )  # fmt: skip
    os.close(slave)
    seen = b""
    try:
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            seen += chunk
        out, _ = proc.communicate(timeout=120)
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, seen
    return out.decode(), seen.decode("utf-8", "replace")


def test_progress_true_draws_bars_on_a_terminal(kenv, tmp_path: Path) -> None:
    out, drawn = _run_child(tmp_path, kenv, "bar", terminal=True)
    assert out == "ok\n"
    frames = [frame.strip() for frame in re.split(r"[\r\n]+", drawn) if frame.strip()]
    finals = {}
    for frame in frames:
        finals[frame.split(":")[0]] = frame  # the last frame drawn of each bar
    names = ["storing data.bin", "loading data.bin", "storing rec", "loading rec"]
    assert set(finals) == {*names, "storing \ufffdodd"}, frames  # U+FFFD for the byte 0xff
    assert re.search(r"100%\|█+\| 8\.00M/8\.00M", finals["storing data.bin"]), finals
    assert "8.00MB" in finals["loading data.bin"], finals  # a load's total is not known first
    for folder in ("storing rec", "loading rec"):
        assert "100%" in finals[folder] and "3/3 files" in finals[folder], finals


def test_no_bar_off_a_terminal_or_without_progress(kenv, tmp_path: Path) -> None:
    out, err = _run_child(tmp_path, kenv, "bar", terminal=False)
    assert (out, err) == ("ok\n", "")
    out, drawn = _run_child(tmp_path, kenv, "off", terminal=True)
    assert (out, drawn) == ("ok\n", "")
