"""The live host: a JACK client running an LV2 chain that a model steers.

* :mod:`.realtime` — the per-block work of the audio callback (native, no
  allocation): capture for the model, parameter smoothing, the chain, recording.
* :mod:`.shared` — lock-free state shared with the controller (thread or process).
* :mod:`.controller` — newest window → soxr → onnxruntime → parameters, every hop.
* :mod:`.server` — find a running JACK server or start ``jackd -d dummy``.
* :mod:`.latency` — JACK's latency API (JACK-Client does not wrap it).
* :mod:`.host` — the client itself: ports, callback, recording, player, status.
"""
