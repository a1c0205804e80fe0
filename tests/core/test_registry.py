from __future__ import annotations

from dataclasses import dataclass

import pytest

from medseg.core.registry import Registry
from medseg.errors import ConfigError


def test_registry_build_and_did_you_mean():
    reg: Registry[type] = Registry("step")

    @reg.register("resample")
    @dataclass(frozen=True)
    class Resample:
        spacing: tuple[float, ...] = (1.0, 1.0, 1.0)

    assert reg.build("resample", spacing=(2.0, 2.0, 2.0)).spacing == (2.0, 2.0, 2.0)
    assert "resample" in reg and reg.names() == ["resample"]
    with pytest.raises(ConfigError, match="unknown step 'resampel' \\(did you mean 'resample'\\?\\)"):
        reg.get("resampel")
    with pytest.raises(ConfigError, match="unknown option 'spacin' \\(did you mean 'spacing'\\?\\)"):
        reg.build("resample", spacin=1)
    with pytest.raises(ConfigError, match="already registered"):
        reg.register("resample")(dict)
