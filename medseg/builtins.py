"""The one place that registers medseg's built-in steps, networks and exporters.

Each module below registers its entries when imported (``@register_step``,
``@register_network``, ``@register_exporter``); :func:`register_builtins` imports them
all, then the steps other packages publish in the ``medseg.steps`` entry-point group.
``medseg/__init__.py`` installs it as the registries' populate hook, so a lookup by
name finds the built-ins without the caller importing them first.
"""

from __future__ import annotations

_done = False


def register_builtins() -> None:
    """Import every module that registers built-ins, then entry-point steps (idempotent)."""
    global _done
    if _done:
        return
    _done = True
    import medseg.export
    import medseg.networks
    import medseg.pipeline.stages
    import medseg.postprocess
    import medseg.transforms  # noqa: F401  (spatial and intensity steps, patches)

    load_entry_point_steps()


def load_entry_point_steps() -> list[str]:
    """Import steps that other packages register in the ``medseg.steps`` entry-point group."""
    from importlib.metadata import entry_points

    loaded = []
    for ep in entry_points(group="medseg.steps"):
        ep.load()
        loaded.append(ep.name)
    return loaded
