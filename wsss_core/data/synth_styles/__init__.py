"""Further styles of the synthetic generator (:mod:`wsss_core.data.synth`), one per module.

Each module registers a :class:`~wsss_core.data.synth.SynthStyle` in
:data:`~wsss_core.data.synth.SYNTH_STYLES`; the registry imports them on first look-up, so a config's
``generator.style: b`` finds ``b`` without an import list to keep in step.
"""
