"""Data: read medical datasets in, check them, scrub PHI, split them, synthesize speech.

Modules, lowest first: ``schema`` (normalised examples and issues), ``presets`` (column
mappings of public layouts), ``readers`` (files, folders, the hub), ``split`` (deterministic
splits), ``folder`` (the dataset folder format), ``synth`` (eSpeak speech sets), ``shipped``
(the shipped sets and their builder), ``datasets`` (the catalogue: read any source, open,
list and save datasets), then ``validate`` (the report), ``phi`` (the scrubber and its
scoring), ``subsample`` and ``stats``/``plots`` (figures).
"""
