"""``aether-rec doctor``: what this machine allows, and what recording would use."""

from __future__ import annotations

import os
from typing import Any

from aether_rec.errors import AetherError
from aether_rec.recorder.bccload import bcc_status
from aether_rec.recorder.headers import find_headers
from aether_rec.recorder.privileges import privilege_status
from aether_rec.recorder.probes import ALL_LAYERS, DEFAULT_LAYERS, probe_layers, probe_names, transport_status
from aether_rec.recorder.tracefs import TraceFS, ensure_tracefs


def doctor(mount: bool = True) -> dict[str, Any]:
    """A report (JSON-able) of every check; ``ok`` says whether ``record`` can run."""
    rep: dict[str, Any] = {"kernel": os.uname().release, "arch": os.uname().machine}
    priv = privilege_status()
    rep["privileges"] = priv
    rep["bcc"] = bcc_status()
    try:
        hs = find_headers(build=bool(priv["ok"]))
        rep["headers"] = {"ok": True, **hs.as_dict()}
    except AetherError as e:
        rep["headers"] = {"ok": False, "error": str(e)}
    tfs = None
    try:
        root, note = ensure_tracefs(mount=mount and bool(priv["ok"]))
        rep["tracefs"] = {"ok": True, "path": str(root), "note": note}
        tfs = TraceFS(root)
    except AetherError as e:
        rep["tracefs"] = {"ok": False, "error": str(e)}
    if tfs is not None:
        plans = probe_layers(tfs, ALL_LAYERS)
        rep["layers"] = {k: p.as_dict() for k, p in plans.items()}
        for k, _p in plans.items():
            rep["layers"][k]["default"] = k in DEFAULT_LAYERS
        rep["names"] = probe_names(tfs).as_dict()
        rep["transport"] = transport_status(tfs)
    else:
        rep["layers"] = {
            k: {"layer": k, "available": False, "reason": "tracefs unavailable"} for k in ALL_LAYERS
        }
        rep["transport"] = {}
    rep["ok"] = bool(
        priv["ok"]
        and rep["bcc"]["ok"]
        and rep["headers"]["ok"]
        and rep["tracefs"]["ok"]
        and any(rep["layers"][k]["available"] for k in DEFAULT_LAYERS)
    )
    return rep


def render(rep: dict[str, Any]) -> list[str]:
    """The report as lines for people."""

    def mark(ok: Any) -> str:
        return "ok  " if ok else "FAIL"

    out = [f"kernel {rep['kernel']} ({rep['arch']})"]
    p = rep["privileges"]
    caps = ", ".join(p["capabilities"]) or "none"
    out.append(
        f"{mark(p['ok'])} privileges: uid {p['euid']}, capabilities {caps}"
        + ("" if p["ok"] else " (recording needs root or CAP_BPF+CAP_PERFMON)")
    )
    b = rep["bcc"]
    out.append(f"{mark(b['ok'])} bcc: " + (f"{b['version']} from {b['location']}" if b["ok"] else b["error"]))
    h = rep["headers"]
    if h["ok"]:
        out.append(f"{mark(True)} kernel headers: " + (h["note"] or f"{h['kind']} {h['path']}"))
    else:
        out.append(f"{mark(False)} kernel headers: {h['error']}")
    t = rep["tracefs"]
    out.append(
        f"{mark(t['ok'])} tracefs: "
        + (t["path"] + (f" ({t['note']})" if t["note"] else "") if t["ok"] else t["error"])
    )
    any_default = any(v["available"] for k, v in rep["layers"].items() if v.get("default"))
    for name, layer in rep["layers"].items():
        tag = " (default)" if layer.get("default") else ""
        if layer["available"]:
            hooks = layer.get("hooks", [])
            names = sorted(
                {
                    str(x["hook"]).rsplit(":", 1)[-1].replace("sys_enter_", "").replace("sys_exit_", "")
                    for x in hooks
                }
            )
            out.append(f"{mark(True)} layer {name}{tag}: {len(hooks)} hooks: {', '.join(names)}")
            for s in ([layer["reason"]] if layer.get("reason") else []) + layer.get("skipped", []):
                out.append(f"       note: {s}")
        else:
            status = "FAIL" if layer.get("default") and not any_default else "n/a "
            out.append(f"{status} layer {name}{tag}: unavailable: {layer['reason']}")
    nm = rep.get("names")
    if nm is not None:
        if nm["available"]:
            calls = sorted(str(x["hook"]).rsplit(":", 1)[-1].removeprefix("sys_enter_") for x in nm["hooks"])
            out.append(f"{mark(True)} fd names from the kernel: {len(calls)} calls: {', '.join(calls)}")
        else:
            out.append(f"n/a  fd names from the kernel: {nm['reason']}")
    for name, tr in rep.get("transport", {}).items():
        state = "used" if tr.get("used") else ("available" if tr.get("available") else "unavailable")
        out.append(
            f"{mark(tr.get('available'))} transport {name}: {state}"
            + (f" ({tr['note']})" if tr.get("note") else "")
        )
    out.append("ready to record" if rep["ok"] else "NOT ready to record: fix the FAIL lines above")
    return out
