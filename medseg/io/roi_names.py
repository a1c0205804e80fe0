"""ROI and segment names → label values, with synonyms and glob patterns.

A label spec maps each label value to the names that mean it; the first name is the
label's name everywhere else (outputs, dataset.json, checkpoints)::

    {1: ["liver", "Liver", "LIVER*"], 2: ["kidney_l", "Kidney_L", "Lt Kidney"]}

:func:`match_names` is the one place where names are matched. For each label the first
of these tiers that matches anything decides: (1) exact names, (2) glob patterns
(``*``, ``?``, ``[...]``, case-sensitive), (3) names and patterns ignoring case. Names
are compared without surrounding spaces. A label matched by several ROIs in its
deciding tier, or an ROI claimed by several labels, is *ambiguous*; a label matched by
nothing is *missing*; ROIs no label claims are *unmapped*.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any

#: ``{label value: [name, synonym or pattern, ...]}``; the first entry is the label's name.
LabelNames = Mapping[int, Sequence[str]]

_GLOB = frozenset("*?[")


def is_pattern(name: str) -> bool:
    """True when ``name`` holds glob characters (``*``, ``?``, ``[``)."""
    return any(c in _GLOB for c in name)


def parse_label_names(raw: Any) -> dict[int, list[str]]:
    """Normalise ``{1: "liver"}`` or ``{1: ["liver", "Liver", "LIVER*"]}`` to ``{1: ["liver", ...]}``.

    Raises:
        ValueError: not a mapping, a value below 1, an empty or non-text entry, or a first entry
            that is a pattern (the message says which; callers add the file name).
    """
    if not isinstance(raw, Mapping) or not raw:
        raise ValueError(f"labels must be a non-empty mapping of value → name(s), got {raw!r}")
    out: dict[int, list[str]] = {}
    for key, value in raw.items():
        try:
            v = int(key)
        except (TypeError, ValueError):
            raise ValueError(f"label value {key!r} is not an integer") from None
        if v <= 0 or str(key).strip() != str(v):
            raise ValueError(f"label values must be whole numbers ≥ 1 (0 is background), got {key!r}")
        names = [value] if isinstance(value, str) else value
        if (
            not isinstance(names, (list, tuple))
            or not names
            or not all(isinstance(n, str) and n.strip() for n in names)
        ):
            raise ValueError(f"label {v}: give a name or a list of names/patterns, got {value!r}")
        if is_pattern(names[0]):
            raise ValueError(
                f"label {v}: the first entry names the label and cannot be a pattern ({names[0]!r}); "
                f"put a name first, e.g. [{names[0].strip('*?[]') or 'name'!r}, {names[0]!r}]"
            )
        out[v] = [n.strip() for n in names]
    return dict(sorted(out.items()))


@dataclass(frozen=True)
class NameMatch:
    """The outcome of :func:`match_names` for one list of ROI/segment names.

    Attributes:
        index_of: label value → index (into the names) of the ROI chosen for it.
        missing: label values no name matched.
        ambiguous: label value → the names that compete for it.
        unmapped: names no label claims.
    """

    index_of: dict[int, int] = field(default_factory=dict)
    missing: list[int] = field(default_factory=list)
    ambiguous: dict[int, list[str]] = field(default_factory=dict)
    unmapped: list[str] = field(default_factory=list)

    def problems(self, spec: LabelNames) -> list[str]:
        """One phrase per missing or ambiguous label, naming the label and what was found."""
        out = [f"no ROI matches label {v} ({_show(spec[v])})" for v in self.missing]
        for v, names in self.ambiguous.items():
            out.append(f"label {v} ({_show(spec[v])}) is ambiguous: {', '.join(repr(n) for n in names)} all match")
        return out


def _show(names: Sequence[str]) -> str:
    return ", ".join(repr(n) for n in names)


def _tiers(entries: Sequence[str]) -> list[Any]:
    plain = [e for e in entries if not is_pattern(e)]
    globs = [e for e in entries if is_pattern(e)]
    folded = [e.casefold() for e in entries]
    return [
        lambda n: n in plain,
        lambda n: any(fnmatchcase(n, g) for g in globs),
        lambda n: any(fnmatchcase(n.casefold(), f) for f in folded),
    ]


def match_names(names: Sequence[str], spec: LabelNames) -> NameMatch:
    """Match ROI/segment ``names`` (duplicates allowed: each is a separate ROI) to the labels of ``spec``."""
    stripped = [n.strip() for n in names]
    chosen: dict[int, list[int]] = {}
    for value, entries in spec.items():
        for tier in _tiers(entries):
            hits = [i for i, n in enumerate(stripped) if tier(n)]
            if hits:
                chosen[value] = hits
                break
    claimed: dict[int, list[int]] = {}
    for value, hits in chosen.items():
        for i in hits:
            claimed.setdefault(i, []).append(value)
    index_of: dict[int, int] = {}
    ambiguous: dict[int, list[str]] = {}
    for value, hits in chosen.items():
        if len(hits) > 1:
            ambiguous[value] = [names[i] for i in hits]
        elif len(claimed[hits[0]]) > 1:
            others = [w for w in claimed[hits[0]] if w != value]
            ambiguous[value] = [f"{names[hits[0]]} (also claimed by label {', '.join(map(str, others))})"]
        else:
            index_of[value] = hits[0]
    missing = [v for v in spec if v not in chosen]
    unmapped = [names[i] for i in range(len(names)) if i not in claimed]
    return NameMatch(index_of, missing, ambiguous, unmapped)
