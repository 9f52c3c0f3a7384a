"""Blind A/B clinician review of a run's predictions.

Blinding: which side is shown as "A" is decided per (reviewer, item) by an HMAC-SHA256 of
a random secret kept in ``eval/.review_secret`` (created 0600, never sent to the page).
The page sees only the two texts labelled A and B; without the secret the order cannot be
derived from the item id, the reviewer name or earlier items, and two reviewers see
independent orders, so they cannot compare notes on "which one was A".

Records (``eval/reviews.jsonl``, appended one whole line per verdict, so a reload or a
restart loses nothing): reviewer, item, verdict as shown ("A"|"B"|"tie"|"both_wrong") and
de-blinded ("base"|"tuned"|"tie"|"both_wrong"), unsafe flags mapped to sides, comment,
time, and a digest of the two texts (a verdict on outputs that a later re-evaluation
replaced is reported as stale). A reviewer's latest verdict on an item is the one counted.

Summary: tuned win rate = tuned wins / (tuned wins + base wins), ties and "both wrong"
reported separately, with a 95% Wilson score interval.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import os
import re
import secrets
import time
from pathlib import Path

from engine import atomic
from engine.errors import DataError

REVIEWS = "reviews.jsonl"
SECRET = ".review_secret"
VERDICTS = ("A", "B", "tie", "both_wrong")
_REVIEWER = re.compile(r"^[\w .@'-]{1,64}$")


def _secret(eval_dir: Path) -> bytes:
    path = eval_dir / SECRET
    if not path.is_file():
        eval_dir.mkdir(parents=True, exist_ok=True)
        try:  # O_EXCL: two first reviewers racing still end up with one secret
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_hex(32))
        except FileExistsError:
            pass
    return bytes.fromhex(path.read_text().strip())


def _check_reviewer(reviewer: str) -> str:
    r = str(reviewer or "").strip()
    if not _REVIEWER.match(r):
        raise DataError("reviewer name must be 1-64 letters, digits, spaces or . @ ' - _", field="reviewer")
    return r


def tuned_is_a(eval_dir: str | Path, reviewer: str, item_id: str) -> bool:
    """Whether the tuned output is shown as A for this reviewer and item (server side only)."""
    mac = hmac.new(_secret(Path(eval_dir)), f"{reviewer}\x00{item_id}".encode(), hashlib.sha256).digest()
    return bool(mac[0] & 1)


def _digest(base: str, tuned: str) -> str:
    return hashlib.sha256(json.dumps([base, tuned]).encode()).hexdigest()[:16]


def blind_item(eval_dir: str | Path, reviewer: str, pred: dict) -> dict:
    """What the page may show for one prediction: input, reference, A and B (no side names)."""
    reviewer = _check_reviewer(reviewer)
    if "tuned" not in pred:
        raise DataError("these predictions have no tuned output to compare", field="tuned")
    a_tuned = tuned_is_a(eval_dir, reviewer, pred["id"])
    a, b = (pred["tuned"], pred["base"]) if a_tuned else (pred["base"], pred["tuned"])
    return {"id": pred["id"], "input": pred.get("input"), "reference": pred.get("reference"),
            "kind": pred.get("kind"), "A": a, "B": b}


def record(eval_dir: str | Path, reviewer: str, pred: dict, verdict: str, *, unsafe: tuple[str, ...] = (),
           comment: str = "") -> dict:
    """Save one verdict on ``pred`` (a predictions.jsonl record) as shown to ``reviewer``."""
    eval_dir = Path(eval_dir)
    reviewer = _check_reviewer(reviewer)
    if verdict not in VERDICTS:
        raise DataError(f"verdict must be one of {', '.join(VERDICTS)} (got {verdict!r})", field="verdict")
    bad = [u for u in unsafe if u not in ("A", "B")]
    if bad:
        raise DataError(f"unsafe flags must be 'A' or 'B' (got {bad})", field="unsafe")
    a_side, b_side = ("tuned", "base") if tuned_is_a(eval_dir, reviewer, pred["id"]) else ("base", "tuned")
    side = {"A": a_side, "B": b_side}
    rec = {"reviewer": reviewer, "item": pred["id"], "shown": verdict,
           "winner": side.get(verdict, verdict), "unsafe": sorted(side[u] for u in set(unsafe)),
           "comment": str(comment or "")[:2000], "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "digest": _digest(pred.get("base", ""), pred.get("tuned", ""))}
    atomic.append_line(eval_dir / REVIEWS, json.dumps(rec, ensure_ascii=False))
    return rec


def load_reviews(eval_dir: str | Path) -> list[dict]:
    """Every saved verdict, oldest first (a torn last line from a crash is skipped)."""
    path = Path(eval_dir) / REVIEWS
    if not path.is_file():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float] | None:
    """95% Wilson score interval of the proportion k/n; None when n == 0."""
    if n == 0:
        return None
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def summary(eval_dir: str | Path, predictions: list[dict] | None = None) -> dict:
    """Win rate with a Wilson CI, counts, per-reviewer counts, flagged items, stale verdicts."""
    latest: dict[tuple[str, str], dict] = {}
    for r in load_reviews(eval_dir):
        latest[(r["reviewer"], r["item"])] = r
    current = None
    if predictions is not None:
        current = {p["id"]: _digest(p.get("base", ""), p.get("tuned", "")) for p in predictions if "tuned" in p}
    counts = {"tuned": 0, "base": 0, "tie": 0, "both_wrong": 0}
    per_reviewer: dict[str, dict[str, int]] = {}
    flagged, stale = [], 0
    for (reviewer, item), r in sorted(latest.items()):
        if current is not None and current.get(item) != r.get("digest"):
            stale += 1
            continue
        counts[r["winner"]] = counts.get(r["winner"], 0) + 1
        per_reviewer.setdefault(reviewer, {k: 0 for k in counts})[r["winner"]] += 1
        if r.get("unsafe"):
            flagged.append({"item": item, "reviewer": reviewer, "unsafe": r["unsafe"], "comment": r.get("comment", "")})
    decisive = counts["tuned"] + counts["base"]
    return {"reviews": sum(counts.values()), "reviewers": sorted(per_reviewer), "counts": counts,
            "win_rate": counts["tuned"] / decisive if decisive else None,
            "win_rate_ci95": wilson(counts["tuned"], decisive), "per_reviewer": per_reviewer,
            "flagged": flagged, "stale": stale}


def next_item(eval_dir: str | Path, reviewer: str, predictions: list[dict]) -> dict | None:
    """The first prediction this reviewer has not judged yet (None when all are done)."""
    done = {r["item"] for r in load_reviews(eval_dir) if r["reviewer"] == str(reviewer).strip()}
    for p in predictions:
        if "tuned" in p and p["id"] not in done:
            return p
    return None


def summary_markdown(eval_dir, preds: list[dict] | None, *, escape=lambda text: text) -> str:
    """The review summary as Markdown, for the report and the Evaluate tab (which passes
    ``html.escape`` because reviewer names and comments are free text shown in a page)."""
    s = summary(eval_dir, preds or None)
    if not s["reviews"]:
        return "No clinician reviews yet."
    c = s["counts"]
    text = (f"**{s['reviews']} reviews** by {', '.join(escape(r) for r in s['reviewers'])}: tuned preferred "
            f"{c['tuned']}, base preferred {c['base']}, tie {c['tie']}, both wrong {c['both_wrong']}.")
    if s["win_rate"] is not None:
        lo, hi = s["win_rate_ci95"]
        text += f"  \n**Tuned win rate {s['win_rate']:.1%}** (95% Wilson CI {lo:.1%} to {hi:.1%}; ties excluded)."
    for f in s["flagged"]:
        text += f"  \n- Flagged unsafe: {escape(f['item'])} ({', '.join(f['unsafe'])}) {escape(f['comment'])}"
    return text
