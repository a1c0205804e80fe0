"""The one place that registers medseg's built-in steps, networks and exporters.

Each module below registers its entries when imported (``@register_step``,
``@register_network``, ``@register_exporter``); :func:`register_builtins` imports them
all, then the steps other packages publish in the ``medseg.steps`` entry-point group.
``medseg/__init__.py`` installs it as the registries' populate hook, so a lookup by
name finds the built-ins without the caller importing them first.

Plugins are loaded one by one, each in isolation: one that fails to import or to
register is reported with a :class:`~medseg.errors.PluginWarning` naming its
distribution, its entry point and the exception, and the built-ins and the other
plugins keep working. :func:`plugin_report` lists what loaded and what failed
(``medseg info --plugins``).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from importlib import metadata

from medseg.errors import PluginWarning

#: Entry-point groups medseg loads plugins from.
PLUGIN_GROUPS: tuple[str, ...] = ("medseg.steps",)

_done = False


@dataclass(frozen=True)
class PluginStatus:
    """The outcome of loading one entry point.

    Attributes:
        group: entry-point group, e.g. ``"medseg.steps"``.
        name: entry-point name (left of ``=``).
        value: its target, ``module:attribute``.
        distribution: the installed distribution that declares it (``"unknown distribution"`` when
            importlib cannot tell).
        error: ``None`` when it loaded; else the exception as one line, ``"ModuleNotFoundError: ..."``.
    """

    group: str
    name: str
    value: str
    distribution: str
    error: str | None = None

    @property
    def loaded(self) -> bool:
        """True when the entry point imported and registered without raising."""
        return self.error is None

    def describe(self) -> str:
        """One line: ``"medseg.steps: x = missing:Step (from broken-plugin)"``."""
        return f"{self.group}: {self.name} = {self.value} (from {self.distribution})"


_plugins: list[PluginStatus] = []


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

    _plugins[:] = load_entry_point_steps()


def plugin_report() -> list[PluginStatus]:
    """What :func:`register_builtins` loaded from entry points, and what failed (registers first if needed)."""
    register_builtins()
    return list(_plugins)


def load_entry_point_steps() -> list[PluginStatus]:
    """Import the entry points of :data:`PLUGIN_GROUPS`, each in isolation.

    A plugin whose import or registration raises is skipped with a :class:`PluginWarning`
    naming the distribution, the entry point and the exception (one line); it never stops
    the built-ins or the other plugins from loading.

    Returns:
        One :class:`PluginStatus` per entry point, in discovery order.
    """
    statuses = []
    for group in PLUGIN_GROUPS:
        for ep in metadata.entry_points(group=group):
            dist = getattr(ep, "dist", None)
            dist_name = getattr(dist, "name", None) or "unknown distribution"
            try:
                ep.load()
            except Exception as exc:  # a plugin's import can raise anything; it must not break medseg
                error = " ".join(f"{type(exc).__name__}: {exc}".split())
                status = PluginStatus(group, ep.name, ep.value, dist_name, error)
                warnings.warn(
                    f"plugin {status.describe()} was not loaded: {error} "
                    f"(fix or uninstall '{dist_name}'; 'medseg info --plugins' lists all plugins)",
                    PluginWarning,
                    stacklevel=2,
                )
            else:
                status = PluginStatus(group, ep.name, ep.value, dist_name)
            statuses.append(status)
    return statuses
