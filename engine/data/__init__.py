"""Data: read medical datasets in, check them, scrub PHI, split them, synthesize speech.

Modules: ``schema`` (normalised examples and issues), ``readers`` (files, folders, the hub),
``presets`` (column mappings of public layouts), ``sources`` (one "open this" entry point
for UI and CLI), ``validate`` (the report), ``phi`` (the scrubber and its scoring),
``split`` (deterministic splits), ``synth`` (eSpeak speech sets), ``stats``/``plots``
(figures), ``datasets`` (dataset folders, ``ensure_shipped``/``open_dataset``) and
``shipped`` (how the shipped sets are built).
"""
