"""Work done in a forked child, so that its memory does not stay in the recorder.

Parsing the kernel's BTF in Python (aether_rec.recorder.btf: a hundred thousand types)
takes about 40 MB that CPython's and glibc's allocators keep after the objects are
freed: done in the recorder itself, the first recording on a kernel would carry them
for its whole run. A forked child does the work and hands back a small JSON result.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from typing import Any

from aether_rec.errors import RecorderError

MAX_RESULT = 1 << 20  # bytes of JSON a child may hand back


def run_forked(fn: Callable[[], Any], errors: Sequence[type[Exception]] = ()) -> Any:
    """``fn()`` computed in a forked child; its result must be JSON (lists come back as
    lists). An exception of one of the ``errors`` classes is raised again here, with its
    message; any other is a RecorderError."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: compute, write one JSON document, leave without clean-up
        code = 0
        try:
            os.close(r)
            try:
                doc: dict[str, Any] = {"value": fn()}
            except tuple(errors) as e:
                doc = {"error": [i for i, c in enumerate(errors) if isinstance(e, c)][0], "message": str(e)}
            except Exception as e:  # noqa: BLE001 - handed to the parent, never a traceback
                doc = {"error": -1, "message": f"{type(e).__name__}: {e}"}
            data = json.dumps(doc).encode()
            while data:
                data = data[os.write(w, data[:65536]):]
        except BaseException:  # noqa: BLE001 - the parent sees no result
            code = 1
        finally:
            os._exit(code)
    os.close(w)
    chunks = []
    size = 0
    with os.fdopen(r, "rb") as f:
        while block := f.read(65536):
            size += len(block)
            if size > MAX_RESULT:
                break
            chunks.append(block)
    _, status = os.waitpid(pid, 0)
    if size > MAX_RESULT:
        raise RecorderError(f"a helper process returned more than {MAX_RESULT} bytes")
    try:
        doc = json.loads(b"".join(chunks))
    except ValueError:
        raise RecorderError(f"a helper process ended without a result (status {status})") from None
    if "error" in doc:
        i = doc["error"]
        if isinstance(i, int) and 0 <= i < len(errors):
            raise errors[i](doc["message"])
        raise RecorderError(f"a helper process failed: {doc['message']}")
    return doc["value"]
