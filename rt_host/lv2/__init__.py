"""LV2 plugins from Python through Debian's liblilv.

The vocabulary is lilv's: a :class:`World` knows the installed plugins, a
:class:`Plugin` describes one, an :class:`Instance` runs one, and a
:class:`Chain` runs several as one effect on numpy float32 arrays shaped
``(channels, samples)``::

    from rt_host.lv2 import World, Chain
    limiter = World.default().plugin("LSP Limiter Stereo")
    with limiter.instantiate(48000) as inst:
        inst.set_control("th", 0.5)
        inst.audio_in[:, :256] = block
        inst.run(256)
        out = inst.audio_out[:, :256]

    chain = Chain.load("mastering")
    mastered = chain(audio, 44100)
"""

from rt_host.lv2.chain import Chain
from rt_host.lv2.instance import Instance
from rt_host.lv2.parameters import Parameter
from rt_host.lv2.plugin import Plugin, Port
from rt_host.lv2.spec import ChainSpec
from rt_host.lv2.world import World

__all__ = ["World", "Plugin", "Port", "Instance", "Chain", "ChainSpec", "Parameter"]
