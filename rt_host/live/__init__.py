"""The live host: an LV2 chain that a model steers, run by an audio backend (JACK), one file per concern.

* :mod:`.host` — the run: checks, controller, MIDI, web, player, recorder, status, outputs.
* :mod:`.block` — :class:`~.block.RealtimeChain`, the seam: one audio block in native code
  (capture, predictions, people's moves, the steering kernel, the chain, meters, recording).
* :mod:`.jack_backend` — the JACK side: client, ports, latency, connections, xruns;
  :mod:`.jack_process` — its process callback, compiled (no Python, no GIL).
* :mod:`.shared` — lock-free state shared with the controller, MIDI and web processes.
* :mod:`.controller` — each completed window → the encoder view → onnxruntime → a prediction
  and the frame it steers from.
* :mod:`.midi` — MIDI CC maps, learn, the receiver process; :mod:`.web` — the control page.
* :mod:`.meters` — loudness and peak meters; :mod:`.stats` — figures of a run.
* :mod:`.server` — find a running JACK server or start ``jackd -d dummy``;
  :mod:`.latency` — JACK's latency API (JACK-Client does not wrap it).
"""
