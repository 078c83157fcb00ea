"""No path from file content to code execution, and every limit in one place.

These read the package's source with the tokenizer (so comments and docstrings do not
count): no pickle, marshal, shelve, eval, exec, compile, __import__, yaml or shell=True
anywhere; ``str.format``/``format_map`` only on string literals or on reviewed
constants; msgpack decoding only through format/blocks.py (which applies the limits of
format/limits.py) and decompression only through format/codecs.py (bounded by the
chunk's checked ``raw`` or by a limit); limit constants defined only in format/limits.py.
The values in format/SPEC.md section 18 are checked against limits.py by
tests/test_format_spec.py.
"""

from __future__ import annotations

import io
import tokenize
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "aether_rec"
FILES = sorted(p for p in PKG.rglob("*.py"))

FORBIDDEN_NAMES = {"pickle", "cPickle", "marshal", "shelve", "eval", "exec", "__import__", "yaml",
                   "dill", "cloudpickle", "jsonpickle"}
# Reviewed uses: (file relative to aether_rec/, name) -> why it is safe.
ALLOWED = {
    ("cli/__init__.py", "import_module"): "imports aether_rec.cli.<name> for a fixed tuple of names",
    ("optional.py", "import_module"): "imports optional packages named by constants in aether-rec's code",
    ("recorder/bccload.py", "format"): "pattern from the constant SYSTEM_BCC_DIRS",
}
MSGPACK_DECODERS = {"unpackb", "Unpacker", "unpack"}  # `unpack` only as msgpack.unpack
DECOMPRESSORS = {"ZstdDecompressor", "decompressobj", "BZ2Decompressor", "LZMADecompressor"}


def _tokens(path: Path) -> list[tokenize.TokenInfo]:
    src = path.read_text(encoding="utf-8")
    return [t for t in tokenize.generate_tokens(io.StringIO(src).readline)
            if t.type not in (tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE)]


def _rel(path: Path) -> str:
    return path.relative_to(PKG).as_posix()


def code_execution_problems(path: Path, rel: str) -> list[str]:
    """Names that turn file content into code (pickle, eval, shell=True, allow_pickle...)."""
    toks = _tokens(path)
    bad = []
    for i, t in enumerate(toks):
        prev = toks[i - 1] if i else None
        nxt = toks[i + 1] if i + 1 < len(toks) else None
        where = f"{rel}:{t.start[0]}"
        if t.type != tokenize.NAME:
            continue
        if t.string in FORBIDDEN_NAMES:
            bad.append(f"{where}: {t.string}")
        if t.string == "compile" and not (prev and prev.string == "."):
            bad.append(f"{where}: builtin compile")
        keyword_true = nxt is not None and nxt.string == "=" and toks[i + 2].string != "False"
        if t.string in ("shell", "allow_pickle") and keyword_true:
            bad.append(f"{where}: {t.string}=")
        if t.string == "import_module" and (rel, "import_module") not in ALLOWED:
            bad.append(f"{where}: dynamic import")
        called = nxt is not None and nxt.string == "("
        if t.string in ("format", "format_map") and prev and prev.string == "." and called and i >= 2:
            receiver = toks[i - 2]
            if receiver.type != tokenize.STRING and (rel, "format") not in ALLOWED:
                bad.append(f"{where}: .{t.string}() on a non-literal (a format string from data?)")
    return bad


def decoding_problems(path: Path, rel: str) -> list[str]:
    """msgpack decoded outside format/blocks.py, decompression outside format/codecs.py."""
    toks = _tokens(path)
    bad = []
    for i, t in enumerate(toks):
        if t.type != tokenize.NAME:
            continue
        prev = toks[i - 2].string if i >= 2 and toks[i - 1].string == "." else ""
        if t.string in MSGPACK_DECODERS and (t.string != "unpack" or prev == "msgpack"):
            if rel != "format/blocks.py" and (rel, t.string) not in ALLOWED:
                bad.append(f"{rel}:{t.start[0]}: msgpack {t.string} outside format/blocks.py")
        stdlib = t.string == "decompress" and prev in ("zlib", "gzip", "lzma", "bz2")
        if t.string in DECOMPRESSORS or stdlib:
            if rel != "format/codecs.py" and (rel, t.string) not in ALLOWED:
                bad.append(f"{rel}:{t.start[0]}: {t.string} outside format/codecs.py")
    return bad


@pytest.mark.parametrize("path", FILES, ids=_rel)
def test_no_code_execution_from_data(path: Path) -> None:
    bad = code_execution_problems(path, _rel(path))
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("path", FILES, ids=_rel)
def test_decoding_goes_through_the_limits(path: Path) -> None:
    bad = decoding_problems(path, _rel(path))
    assert not bad, "\n".join(bad)


def test_limits_are_defined_only_in_limits_py() -> None:
    from aether_rec.format import limits

    names = {n for n in dir(limits) if n.startswith(("MAX_", "MSGPACK_", "RESYNC_"))}
    bad = []
    for path in FILES:
        if _rel(path) == "format/limits.py":
            continue
        toks = _tokens(path)
        for i, t in enumerate(toks[:-1]):
            assigned = t.start[1] == 0 and toks[i + 1].string == "="
            if t.type == tokenize.NAME and t.string in names and assigned:
                bad.append(f"{_rel(path)}:{t.start[0]}: {t.string} redefined")
    assert not bad, "\n".join(bad)


PLANTED = {
    "import pickle\n": "pickle",
    "arr = np.load(f, allow_pickle=True)\n": "allow_pickle=",
    "x = eval(text)\n": "eval",
    "fmt = row['fmt']\nprint(fmt.format(1))\n": ".format() on a non-literal",
    "subprocess.run('x', shell=True)\n": "shell=",
    "code = compile(src, 'f', 'exec')\n": "builtin compile",
    "mod = importlib.import_module(name)\n": "dynamic import",
}
PLANTED_DECODING = {
    "doc = msgpack.unpackb(data)\n": "msgpack unpackb",
    "d = zstandard.ZstdDecompressor()\n": "ZstdDecompressor",
    "raw = zlib.decompress(data)\n": "decompress outside",
}


@pytest.mark.parametrize("code,what", sorted(PLANTED.items()))
def test_the_code_checker_fails_a_planted_sample(tmp_path: Path, code: str, what: str) -> None:
    """A reader that loaded numpy data with allow_pickle=True (or any other planted line)
    must fail the check: the checker is run, not only its tokens inspected."""
    sample = tmp_path / "reader.py"
    sample.write_text(code)
    bad = code_execution_problems(sample, "format/reader.py")
    assert any(what in b for b in bad), bad
    sample.write_text("arr = np.load(f, allow_pickle=False)\nprint('{}'.format(1))\n")
    assert code_execution_problems(sample, "format/reader.py") == []


@pytest.mark.parametrize("code,what", sorted(PLANTED_DECODING.items()))
def test_the_decoding_checker_fails_a_planted_sample(tmp_path: Path, code: str, what: str) -> None:
    sample = tmp_path / "reader.py"
    sample.write_text(code)
    bad = decoding_problems(sample, "format/reader.py")
    assert any(what in b for b in bad), bad
    assert decoding_problems(sample, "format/blocks.py" if "msgpack" in code else "format/codecs.py") == []


def test_the_checker_catches_what_it_should(tmp_path: Path) -> None:
    """The token checks above are not vacuous."""
    sample = tmp_path / "x.py"
    sample.write_text("import pickle\nfmt = row['fmt']\nprint(fmt.format(1))\nmsgpack.unpackb(b'')\n"
                      "subprocess.run('x', shell=True)\n")
    names = [t.string for t in _tokens(sample) if t.type == tokenize.NAME]
    assert "pickle" in names and "format" in names and "unpackb" in names and "shell" in names
