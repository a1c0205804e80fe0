"""Model packages: export a trained run as one verified zip, install it by name, predict from it.

See :mod:`medseg.models.package` (format and safety rules) and :mod:`medseg.models.store`
(``$MEDSEG_HOME``).
"""

from medseg.models.package import export_model, extract_package, read_manifest
from medseg.models.store import install_model, installed_model, installed_models, medseg_home, unpacked

__all__ = [
    "export_model",
    "extract_package",
    "install_model",
    "installed_model",
    "installed_models",
    "medseg_home",
    "read_manifest",
    "unpacked",
]
