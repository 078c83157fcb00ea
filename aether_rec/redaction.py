"""The naming policy of redaction: keyed, stable replacement of names (process names,
paths, host names, command lines) in every piece of a capture.

Every hash is HMAC-SHA256 under one key, so the same name hashes the same way in every
capture redacted with that key. ``Redactor`` is used by ``aether-rec redact`` (ops/redact.py,
whole files) and by ``record --redact`` (the recorder, on the way out): it lives here, above
``format`` and below both, so the recorder does not import ``ops``.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Sequence
from typing import Any

from aether_rec.errors import UsageError
from aether_rec.format.chunk import Chunk, ChunkInfo
from aether_rec.format.codecs import Codec
from aether_rec.format.limits import MAX_STR_LEN
from aether_rec.format.rewrite import rewrite_dictionaries
from aether_rec.format.writer import base_header

MAX_TREE_DEPTH = 32  # nesting of a header or row kept when redacting it
SCHEME = "hmac-sha256"
HASH_HEX = 8  # hex digits kept of each HMAC (32 bits: names, not secrets)

# Header keys whose values are harmless provenance, kept as they are.
SAFE_HEADER_KEYS = frozenset({
    "format_version", "capture_id", "created_ns", "created", "tool", "tool_version", "kernel",
    "arch", "ncpu", "clock", "synthetic", "codec", "columns", "layers", "layers_unavailable",
    "hooks", "transport", "recorder", "rotation", "generator", "redacted", "redaction",
    "recovered_header",
})
# Keys (in the header, metadata rows and statistics) whose strings are of a known kind.
NAME_KEYS = frozenset({"comm", "comms", "process", "thread"})
PATH_KEYS = frozenset({"path", "paths", "file", "files", "exe", "cwd", "dir", "cgroup", "cgroup_path",
                       "output", "root"})
ARGV_KEYS = frozenset({"command", "cmdline", "argv", "args"})
HOST_KEYS = frozenset({"hostname", "host", "nodename"})
# Strings kept in metadata rows and statistics: (table or "" for any, key).
SAFE_ROW_KEYS = frozenset({("devices", "name"), ("", "kind"), ("", "table"), ("", "stop_reason"),
                           ("", "op"), ("", "layer")})
OUR_WORDS = frozenset({"aether-rec", "record", "synthetic", "--"})
PSEUDO_PATH = re.compile(r"^(pipe|socket|anon_inode|net|mnt|user|pid|uts|ipc|cgroup|time):")
OPTION = re.compile(r"^--?[A-Za-z][A-Za-z0-9-]*$")
EXTENSION = re.compile(r"^[A-Za-z0-9]{1,8}$")



class Redactor:
    """Keyed, stable replacement of names in every piece of a capture."""

    def __init__(
        self, key: bytes, keep_paths_under: Sequence[str] = (), key_source: str = "key-file"
    ) -> None:
        if not key:
            raise UsageError("the redaction key is empty")
        self._key = bytes(key)
        self.keep = tuple(p.rstrip("/") or "/" for p in keep_paths_under)
        self.key_source = key_source
        self.redacted: set[str] = set()  # what was redacted, for the header
        self._cache: dict[tuple[str, str], str] = {}

    # -- strings -----------------------------------------------------------------------
    def digest(self, domain: str, text: str) -> str:
        k = (domain, text)
        got = self._cache.get(k)
        if got is None:
            msg = domain.encode() + b"\0" + text.encode("utf-8", "surrogatepass")
            got = hmac.new(self._key, msg, hashlib.sha256).hexdigest()[:HASH_HEX]
            if len(self._cache) < 1 << 20:
                self._cache[k] = got
        return got

    def key_id(self) -> str:
        """Names the key without revealing it: equal ids, joinable captures."""
        return self.digest("key-id", "aether-rec")

    def comm(self, s: str) -> str:
        return f"comm-{self.digest('comm', s)}" if s else s

    def host(self, s: str) -> str:
        return f"host-{self.digest('host', s)}" if s else s

    def text(self, s: str, domain: str = "str") -> str:
        return f"s-{self.digest(domain, s)}" if s else s

    def path(self, p: str) -> str:
        """Each component hashed; '/', '.', '..', short extensions, allow-listed prefixes
        and kernel pseudo-paths (pipe:[…], socket:[…]) kept."""
        if not p or PSEUDO_PATH.match(p):
            return p
        for prefix in self.keep:
            if p == prefix or p.startswith(prefix if prefix.endswith("/") else prefix + "/"):
                return p
        out = "/".join(self._component(c) for c in p.split("/"))
        if len(out) > MAX_STR_LEN:
            out = ("/" if p.startswith("/") else "") + f"p-{self.digest('path', p)}"
        return out

    def _component(self, c: str) -> str:
        if c in ("", ".", ".."):
            return c
        stem, dot, ext = c.rpartition(".")
        h = self.digest("path", c)
        if dot and stem and EXTENSION.match(ext):
            return f"p-{h}.{ext}"
        return f"p-{h}"

    def arg(self, a: str) -> str:
        if not a or a in OUR_WORDS or OPTION.match(a):
            return a
        if a.startswith("-") and "=" in a:
            opt, _, val = a.partition("=")
            if OPTION.match(opt):
                return f"{opt}={self.arg(val)}"
        if "/" in a:
            return self.path(a)
        return f"arg-{self.digest('arg', a)}"

    def argv(self, v: Any, depth: int = 0) -> Any:
        if isinstance(v, str):
            return " ".join(self.arg(a) for a in v.split(" "))
        if depth > MAX_TREE_DEPTH:
            self.redacted.add("nested-too-deeply")
            return None
        if isinstance(v, list):
            return [self.argv(a, depth + 1) if isinstance(a, (str, list)) else a for a in v]
        return self.tree(v, "command", depth=depth + 1)

    def strings(self, column: str, words: Sequence[str]) -> list[str]:
        """A string column's dictionary, redacted entry by entry (codes stay valid)."""
        self.redacted.add(f"column:{column}")
        if column == "comm":
            return [self.comm(w) for w in words]
        if column == "path":
            return [self.path(w) for w in words]
        return [self.text(w, f"column:{column}") for w in words]

    # -- documents -----------------------------------------------------------------------
    def tree(self, obj: Any, key: str = "", table: str = "", depth: int = 0) -> Any:
        """Any msgpack document: strings redacted by the key they are under (nesting
        beyond MAX_TREE_DEPTH, which only a hostile file has, is dropped)."""
        if depth > MAX_TREE_DEPTH and isinstance(obj, (dict, list)):
            self.redacted.add("nested-too-deeply")
            return None
        if isinstance(obj, dict):
            return {k: self.tree(v, k if isinstance(k, str) else key, table, depth + 1)
                    for k, v in obj.items()}
        if isinstance(obj, list):
            if key in ARGV_KEYS:
                self.redacted.add(key)
                return self.argv(obj)
            return [self.tree(v, key, table, depth + 1) for v in obj]
        if isinstance(obj, (bytes, bytearray)):
            return self.text(bytes(obj).hex(), "bytes")
        if not isinstance(obj, str) or not obj:
            return obj
        if (table, key) in SAFE_ROW_KEYS or ("", key) in SAFE_ROW_KEYS:
            return obj
        if key:
            self.redacted.add(key)
        if key in NAME_KEYS:
            return self.comm(obj)
        if key in PATH_KEYS:
            return self.path(obj)
        if key in ARGV_KEYS:
            return self.argv(obj)
        if key in HOST_KEYS:
            return self.host(obj)
        return self.text(obj)

    def header(self, h: dict[str, Any], local: bool = False) -> dict[str, Any]:
        """The header with names hashed and marked redacted; it lists what was redacted
        (what every capture has, plus what this header had).

        ``local``: the capture is being recorded here (``record --redact``): provenance
        fields the writer would add from this machine (hostname...) are filled in first,
        then redacted. Otherwise (redacting a file) missing fields are set to nil so that
        the writer cannot add the redacting machine's."""
        if local:
            h = {**base_header(), **h}
        out: dict[str, Any] = {}
        for k, v in h.items():
            if not isinstance(k, str):
                continue  # a damaged header: nothing useful, maybe something private
            if k == "recorder" and isinstance(v, dict) and isinstance(v.get("bcc_location"), str):
                self.redacted.add("recorder.bcc_location")
                out[k] = {**v, "bcc_location": self.path(v["bcc_location"])}
            elif k in SAFE_HEADER_KEYS:
                out[k] = v
            elif k in HOST_KEYS and isinstance(v, str):
                self.redacted.add(k)
                out[k] = self.host(v)
            else:
                out[k] = self.tree(v, k)
        # Fields the writer would otherwise fill in from the machine that redacts.
        for k in base_header():
            out.setdefault(k, None)
        self.redacted.update({"hostname", "command", "column:comm", "column:path", "procs", "fds"})
        out["redacted"] = True
        info: dict[str, Any] = {"scheme": SCHEME, "digits": HASH_HEX, "key": self.key_source,
                                "fields": sorted(self.redacted)}
        if self.key_source == "key-file":
            info["key_id"] = self.key_id()
        if self.keep:
            info["kept_paths_under"] = list(self.keep)
        out["redaction"] = info
        return out

    def meta(self, table: str, rows: list[Any]) -> list[Any]:
        """Rows of metadata table ``table`` with names, paths and command lines hashed."""
        self.redacted.add(table)
        return [self.tree(r, "", table) for r in rows]

    def stats(self, stats: dict[str, Any]) -> dict[str, Any]:
        out = self.tree(stats)
        return out if isinstance(out, dict) else {}

    # -- chunks --------------------------------------------------------------------------
    def chunk(self, chunk: Chunk) -> Chunk:
        """An in-memory chunk with its string dictionaries redacted; the code arrays and
        every other column are the same objects."""
        dicts = {name: self.strings(name, words) for name, words in chunk.dicts.items()}
        return Chunk(chunk.n, chunk.columns, dicts, chunk.info)

    def chunk_payload(
        self, payload: bytes, codecs: dict[str, Codec] | None = None
    ) -> tuple[bytes, ChunkInfo]:
        """A CHNK payload with its string dictionaries redacted, without decoding any
        column (format.rewrite.rewrite_dictionaries); columns of a type this version does
        not know (which could hold anything) are dropped. Damage -> DamagedCaptureError."""
        return rewrite_dictionaries(
            payload, self.strings, {} if codecs is None else codecs,
            dropped=lambda name: self.redacted.add(f"dropped-column:{name}"),
        )
