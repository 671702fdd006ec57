"""Build hook: generates the `orgplane.*` modules from the contracts at build time.

No generated code is committed. Every build (`pip install ./proto/clients/python`, `python -m
build`, `pip install -e`) runs grpcio-tools (pinned in pyproject.toml's build-system) over the
.proto files and packages the output, so an installed client always matches the contracts it
was built from:

  orgplane/<area>/v1/<file>_pb2.py       messages and enums
  orgplane/<area>/v1/<file>_pb2.pyi      their type stubs
  orgplane/<area>/v1/<file>_pb2_grpc.py  service stubs (IdentityServiceStub, …)

Where the .proto files come from, first match wins:
  1. $ORGPLANE_PROTO_ROOT (a directory holding orgplane/**/*.proto);
  2. ../../ — the repository's proto/ directory, when this is proto/clients/python in a checkout;
  3. ./protos/ — present only in an sdist, which bundles the contracts it was made from.
A build that finds none fails, rather than packaging a client without its generated code.
"""

import os
import shutil
from importlib import resources
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.command.sdist import sdist

HERE = Path(__file__).resolve().parent
MARKER = Path("orgplane", "errors", "v1", "errors.proto")


def proto_root() -> Path:
    candidates = []
    if os.environ.get("ORGPLANE_PROTO_ROOT"):
        candidates.append(Path(os.environ["ORGPLANE_PROTO_ROOT"]).resolve())
    if HERE.parent.name == "clients":  # a checkout: proto/clients/python
        candidates.append(HERE.parent.parent)
    candidates.append(HERE / "protos")
    for root in candidates:
        if (root / MARKER).is_file():
            return root
    raise SystemExit(
        "orgplane-client: no contracts found (looked for "
        + ", ".join(str(c / MARKER) for c in candidates)
        + "); build from the repository's proto/clients/python, from an sdist, "
        "or set ORGPLANE_PROTO_ROOT"
    )


def proto_files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in (root / "orgplane").rglob("*.proto"))


def generate(out: Path) -> list[Path]:
    """Runs protoc (grpcio-tools) over every contract into `out`; returns the files written."""
    from grpc_tools import protoc

    root = proto_root()
    files = proto_files(root)
    # Start clean, so a removed .proto leaves no module behind.
    shutil.rmtree(out / "orgplane", ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    well_known = resources.files("grpc_tools") / "_proto"  # google/protobuf/*.proto
    args = [
        "protoc",
        f"-I{root}",
        f"-I{well_known}",
        f"--python_out={out}",
        f"--pyi_out={out}",
        f"--grpc_python_out={out}",
        *files,
    ]
    if protoc.main(args) != 0:
        raise SystemExit(f"orgplane-client: protoc failed on {root}")
    written = sorted((out / "orgplane").rglob("*.py*"))
    # PEP 561: `orgplane` is a namespace package, so each generated package marks itself typed.
    for directory in sorted({p.parent for p in written}):
        marker = directory / "py.typed"
        marker.touch()
        written.append(marker)
    print(f"orgplane-client: generated {len(files)} contracts from {root} into {out}")
    return written


class GenerateBuildPy(build_py):
    """build_py that also generates the `orgplane.*` modules."""

    def run(self):
        super().run()
        # An editable install imports from src/ (ignored by git); a normal one from build_lib.
        target = HERE / "src" if self.editable_mode else Path(self.build_lib)
        self._generated = [str(p) for p in generate(target)]

    def get_outputs(self, include_bytecode=True):
        return super().get_outputs(include_bytecode) + getattr(self, "_generated", [])


class SdistWithProtos(sdist):
    """sdist that bundles the contracts under protos/, so that it builds on its own."""

    def make_release_tree(self, base_dir, files):
        super().make_release_tree(base_dir, files)
        root = proto_root()
        for rel in proto_files(root):
            dest = Path(base_dir, "protos", rel)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(root / rel, dest)


setup(cmdclass={"build_py": GenerateBuildPy, "sdist": SdistWithProtos})
