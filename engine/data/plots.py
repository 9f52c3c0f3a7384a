"""Plotly figures for the Data tab (and ``medtune data inspect --html``). Plotly is a
drawing library, not a UI framework: the engine may build figures, the UI shows them."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from engine.audio import SAMPLE_RATE, load_audio
from engine.data.schema import SPEECH


def stats_figure(stats: dict) -> go.Figure:
    """Lengths or durations and label balance (top), term (or word) frequency (bottom)."""
    speech = stats["kind"] == SPEECH
    third = "Medical term frequency (sentences)" if stats.get("term_frequency") else "Most frequent words"
    second = "Label balance" if stats.get("labels") else ("Clips per voice" if speech else "Examples per split")
    fig = make_subplots(rows=2, cols=2, specs=[[{}, {}], [{"colspan": 2}, None]], vertical_spacing=0.16,
                        subplot_titles=("Clip duration (s)" if speech else "Length (words)", second, third))
    if speech:
        fig.add_trace(go.Histogram(x=stats.get("durations", []), nbinsx=30, name="duration (s)"), row=1, col=1)
    else:
        fig.add_trace(go.Histogram(x=stats.get("prompt_words", []), nbinsx=30, name="prompt", opacity=0.7), 1, 1)
        fig.add_trace(go.Histogram(x=stats.get("response_words", []), nbinsx=30, name="response", opacity=0.7), 1, 1)
        fig.update_layout(barmode="overlay")
    bars = stats.get("labels") or (stats.get("voices") if speech else None) or stats.get("splits", {})
    fig.add_trace(go.Bar(x=list(bars), y=list(bars.values()), name=second.lower(), showlegend=False), 1, 2)
    freq = stats.get("term_frequency") or stats.get("top_words") or {}
    items = list(freq.items())[:40]
    fig.add_trace(go.Bar(x=[k for k, _ in items], y=[v for _, v in items], name="frequency", showlegend=False), 2, 1)
    fig.update_xaxes(tickangle=-45, tickfont=dict(size=10), row=2, col=1)
    fig.update_layout(height=720, margin=dict(l=40, r=20, t=50, b=40), legend=dict(orientation="h", y=1.08))
    return fig


def audio_figure(path: str, *, max_points: int = 4000) -> go.Figure:
    """Waveform (top) and spectrogram (bottom) of one clip at 16 kHz."""
    from scipy.signal import spectrogram  # noqa: PLC0415 - scipy.signal takes ~0.6 s to import; the UI and CLI import this module

    audio = load_audio(path)
    t = np.arange(audio.size) / SAMPLE_RATE
    step = max(1, audio.size // max_points)  # plotting every sample of a 10 s clip is 160k points
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08,
                        subplot_titles=("Waveform", "Spectrogram (dB)"))
    fig.add_trace(go.Scatter(x=t[::step], y=audio[::step], mode="lines", line=dict(width=1), name="waveform"), 1, 1)
    if audio.size >= 512:
        f, st, sxx = spectrogram(audio, fs=SAMPLE_RATE, nperseg=400, noverlap=240)
        fig.add_trace(go.Heatmap(x=st, y=f, z=10 * np.log10(sxx + 1e-10), colorscale="Viridis",
                                 showscale=False, name="spectrogram"), 2, 1)
    fig.update_yaxes(title_text="Hz", row=2, col=1)
    fig.update_xaxes(title_text="seconds", row=2, col=1)
    fig.update_layout(height=420, margin=dict(l=40, r=20, t=40, b=40), showlegend=False)
    return fig
