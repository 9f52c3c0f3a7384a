"""HTML views shared by the Compare and Evaluate tabs: coloured word diffs, side panels.

Only presentation: the alignment, WER and term hits come from engine.eval.metrics.
Every user/model text is escaped before it reaches the page.
"""

from __future__ import annotations

import html

from engine.text import normaliser, normaliser_label

STYLE = """<style>
.mt-diff{line-height:1.9;font-size:1.02em}
.mt-diff .sub{background:#fde7c8;border-radius:3px;padding:0 2px}
.mt-diff .sub s,.mt-diff .del{color:#b3261e;text-decoration:line-through}
.mt-diff .ins{color:#1a5fb4;background:#dbe9fb;border-radius:3px;padding:0 2px}
.mt-diff .term-hit{font-weight:700;border-bottom:2px solid #1e8e3e}
.mt-diff .term-miss{font-weight:700;background:#f9d0cc}
.mt-side h4{margin:0 0 .3em 0}.mt-legend{font-size:.85em;color:#555}
.mt-answer{white-space:pre-wrap;line-height:1.5}
</style>"""

LEGEND = ('<div class="mt-legend">diff against the reference: <span class="sub"><s>ref</s> hyp</span> '
          'substitution · <span class="del">deleted</span> · <span class="ins">inserted</span> · '
          '<span class="term-hit">term hit</span> · <span class="term-miss">term missed</span></div>')


def _term_words(terms, name: str) -> set[str]:
    return {w for t in terms for w in normaliser(name)(t).split()}


def diff_html(diff: list[dict], hits, misses, normaliser_name: str) -> str:
    """A word diff (engine.eval.metrics.word_diff) as coloured HTML, medical terms marked;
    ``normaliser_name`` is the diff's, so a term's words are looked for as the diff writes them."""
    hit_w, miss_w = _term_words(hits, normaliser_name), _term_words(misses, normaliser_name)
    out = []
    for op in diff:
        r, h = html.escape(op["ref"]), html.escape(op["hyp"])
        if op["op"] == "equal":
            cls = " class='term-hit'" if op["ref"] in hit_w else ""
            out.append(f"<span{cls}>{h}</span>")
        elif op["op"] == "sub":
            cls = " term-miss" if op["ref"] in miss_w else ""
            out.append(f"<span class='sub{cls}' title='said: {r}'><s>{r}</s> {h}</span>")
        elif op["op"] == "del":
            cls = " term-miss" if op["ref"] in miss_w else ""
            out.append(f"<span class='del{cls}' title='missing'>{r}</span>")
        else:
            out.append(f"<span class='ins' title='inserted'>{h}</span>")
    return "<div class='mt-diff'>" + " ".join(out) + "</div>"


def speech_side(title: str, res: dict | None) -> str:
    """One side of a speech comparison: transcript, WER (named with its normaliser,
    ``res["normaliser"]``), terms and the diff."""
    if not res:
        return f"<div class='mt-side'><h4>{html.escape(title)}</h4><i>no output</i></div>"
    parts = [STYLE, f"<div class='mt-side'><h4>{html.escape(title)}</h4>"]
    if res.get("diff") is not None:
        hits, misses, norm = res.get("hits", []), res.get("misses", []), res["normaliser"]
        parts.append(f"<div><b>WER {res['wer']:.1%}</b> ({html.escape(normaliser_label(norm))}) · terms hit "
                     f"{len(hits)}/{len(hits) + len(misses)}"
                     + (f" · missed: {html.escape(', '.join(misses))}" if misses else "") + "</div>")
        parts.append(diff_html(res["diff"], hits, misses, norm))
        parts.append(f"<div class='mt-legend'>transcript: {html.escape(res.get('text', ''))}</div>")
    else:
        parts.append(f"<div class='mt-answer'>{html.escape(res.get('text', ''))}</div>")
    parts.append("</div>")
    return "".join(parts)


def text_side(title: str, text: str | None, extra: str = "") -> str:
    """One side of a text comparison (escaped, line breaks kept)."""
    return (f"{STYLE}<div class='mt-side'><h4>{html.escape(title)}</h4>"
            + (f"<div class='mt-legend'>{html.escape(extra)}</div>" if extra else "")
            + f"<div class='mt-answer'>{html.escape(text or '')}</div></div>")
