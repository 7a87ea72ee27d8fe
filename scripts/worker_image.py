#!/usr/bin/env python3
"""Builds the worker's container image from Debian 12 packages, with no Docker daemon.

The image is the cross-built worker binary plus the Debian packages named in
worker/image/packages.txt and their dependency closure: glibc, the C++
runtime, CA certificates, tzdata and libheif with its decoders. Nothing is
pulled from a container registry. Packages are resolved and downloaded
through apt's signed indices (bookworm, bookworm-updates, bookworm-security,
verified with Debian's archive keyring) in a private apt root per
architecture, so no pool URL is written by hand.

    lock                    resolve the closure for arm64 and amd64 against
                            the current signed indices; write packages.lock
    check                   fail, naming each package and the newer version,
                            when packages.lock is behind the signed indices;
                            then unpack the locked packages and check that
                            every ELF's NEEDED libraries are in the image
    build ARCH BINARY       an OCI image (umoci) of the locked packages and
                            BINARY as /worker, tagged ARCH in
                            target/worker-image/oci

Each package gets its dpkg status entry in /var/lib/dpkg/status.d/<name>
(and <name>.md5sums), as distroless images have, so image scanners (ECR
scanning, Inspector, Trivy, Grype) see the name and version of every library
in the image.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "worker/image/packages.txt"
LOCK = ROOT / "worker/image/packages.lock"
WORK = ROOT / "target/worker-image"
MODEL = ROOT / "target/model/efficientnet-lite0.onnx"
KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
ARCHES = {"arm64": "aarch64-linux-gnu", "amd64": "x86_64-linux-gnu"}
SOURCES = """\
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: {keyring}

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: {keyring}
"""
# The image's user, as in distroless's nonroot images.
NONROOT = 65532


class ImageError(Exception):
    """A resolution, download or check that failed, with what to do about it."""


# ---------------------------------------------------------------- pure core


def parse_stanza(text: str) -> dict[str, str]:
    """One deb822 paragraph (a Packages entry or a control file) as fields."""
    fields: dict[str, str] = {}
    name = None
    for line in text.splitlines():
        if line[:1] in (" ", "\t") and name:
            fields[name] += "\n" + line
        elif ":" in line:
            name, value = line.split(":", 1)
            fields[name] = value.strip()
    return fields


def dependency_names(field: str) -> list[str]:
    """Package names a Depends/Pre-Depends field requires: of `a | b`, the first."""
    names = []
    for group in filter(None, (g.strip() for g in field.split(","))):
        first = group.split("|")[0].strip()
        names.append(re.split(r"[\s(:]", first, maxsplit=1)[0])
    return names


@dataclass(frozen=True)
class Spec:
    """worker/image/packages.txt: the roots and the dependencies left out."""

    roots: tuple[str, ...]
    excluded: dict[str, str]

    @staticmethod
    def parse(text: str) -> "Spec":
        roots: list[str] = []
        excluded: dict[str, str] = {}
        for number, line in enumerate(text.splitlines(), 1):
            words = line.split("#", 1)[0].split() if line.startswith(("include", "exclude")) else []
            if not words:
                if line.strip() and not line.lstrip().startswith("#"):
                    raise ImageError(f"packages.txt:{number}: expected include/exclude: {line}")
                continue
            if words[0] == "include":
                roots += words[1:]
            elif len(words) < 3:
                raise ImageError(f"packages.txt:{number}: exclude needs a package and a reason")
            else:
                excluded[words[1]] = " ".join(words[2:])
        return Spec(tuple(roots), excluded)


def closure(spec: Spec, lookup) -> list[dict[str, str]]:
    """The roots and every dependency they need, minus the excluded; sorted by name.

    `lookup(names)` returns the candidate Packages stanza of each name it
    knows; a name it does not (a virtual package) must be excluded.
    """
    found: dict[str, dict[str, str]] = {}
    frontier = set(spec.roots) - spec.excluded.keys()
    while frontier:
        stanzas = lookup(sorted(frontier))
        unknown = frontier - stanzas.keys()
        if unknown:
            raise ImageError(f"{', '.join(sorted(unknown))}: no such package in the index (virtual?); "
                             "exclude it with a reason or name a real one")
        found.update(stanzas)
        needed = {name for stanza in stanzas.values() for field in ("Pre-Depends", "Depends")
                  for name in dependency_names(stanza.get(field, ""))}
        frontier = needed - found.keys() - spec.excluded.keys()
    return [found[name] for name in sorted(found)]


@dataclass(frozen=True, order=True)
class Locked:
    """One line of packages.lock: a package as resolved for one architecture."""

    arch: str
    package: str
    version: str
    sha256: str
    suite: str

    def line(self) -> str:
        return f"{self.arch} {self.package} {self.version} {self.sha256} {self.suite}"


LOCK_HEADER = """\
# The worker image's Debian packages, resolved from apt's signed indices by
# `make image-lock` (scripts/worker_image.py lock) from packages.txt.
# arch package version sha256 suite
"""


def parse_lock(text: str) -> list[Locked]:
    entries = []
    for line in text.splitlines():
        if line.strip() and not line.startswith("#"):
            entries.append(Locked(*line.split()))
    return entries


def render_lock(entries: list[Locked]) -> str:
    return LOCK_HEADER + "".join(e.line() + "\n" for e in sorted(entries))


def staleness(locked: list[Locked], current: list[Locked]) -> list[str]:
    """What differs between the lock and today's resolution, one sentence each."""
    was = {(e.arch, e.package): e for e in locked}
    now = {(e.arch, e.package): e for e in current}
    problems = []
    for key in sorted(was.keys() | now.keys()):
        old, new = was.get(key), now.get(key)
        arch, package = key
        if old is None:
            problems.append(f"{arch} {package}: needed now ({new.version}, {new.suite}) but not in the lock")
        elif new is None:
            problems.append(f"{arch} {package}: in the lock ({old.version}) but no longer needed")
        elif old.version != new.version:
            problems.append(f"{arch} {package}: locked {old.version}, the signed index has {new.version} ({new.suite})")
        elif old.sha256 != new.sha256:
            problems.append(f"{arch} {package} {old.version}: the signed index has another SHA-256 than the lock")
    return problems


def status_entry(control: str) -> str:
    """A dpkg status entry for /var/lib/dpkg/status.d/, from the package's control file."""
    lines = control.rstrip("\n").split("\n")
    return lines[0] + "\nStatus: install ok installed\n" + "\n".join(lines[1:]) + "\n"


def elf_dependencies(readelf_dynamic: str) -> tuple[str | None, list[str]]:
    """(SONAME, NEEDED entries) from `readelf -d` output."""
    soname = re.search(r"\(SONAME\).*\[(.*)\]", readelf_dynamic)
    needed = re.findall(r"\(NEEDED\).*\[(.*)\]", readelf_dynamic)
    return (soname.group(1) if soname else None, needed)


# ------------------------------------------------------------- apt, dpkg, umoci


def run(*args: str | Path, cwd: Path | None = None) -> str:
    done = subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        raise ImageError(f"{' '.join(map(str, args))} failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    return done.stdout


class Apt:
    """apt-get and apt-cache in a private root that sees one architecture's indices."""

    def __init__(self, arch: str):
        if not KEYRING.exists():
            raise ImageError(f"{KEYRING} is missing: install Debian's debian-archive-keyring")
        self.arch = arch
        self.root = WORK / "apt" / arch
        for d in ("etc/apt/sources.list.d", "etc/apt/preferences.d", "var/lib/apt/lists/partial",
                  "var/cache/apt/archives/partial", "var/lib/dpkg"):
            (self.root / d).mkdir(parents=True, exist_ok=True)
        (self.root / "var/lib/dpkg/status").touch()
        (self.root / "etc/apt/sources.list.d/debian.sources").write_text(SOURCES.format(keyring=KEYRING))

    def options(self) -> list[str]:
        r = self.root
        settings = {
            "Dir": r, "Dir::State::status": r / "var/lib/dpkg/status",
            "Dir::Etc::trusted": "/nonexistent", "Dir::Etc::trustedparts": "/nonexistent",
            "APT::Architecture": self.arch, "APT::Architectures": self.arch,
            "Debug::NoLocking": "1", "Acquire::Languages": "none", "Acquire::Retries": "5",
            "APT::Sandbox::User": "root",
        }
        return [arg for k, v in settings.items() for arg in ("-o", f"{k}={v}")]

    def update(self) -> None:
        """Fetches the indices; apt refuses any whose signature does not verify."""
        run("apt-get", *self.options(), "-q", "update")

    def has_index(self) -> bool:
        return any((self.root / "var/lib/apt/lists").glob("*Packages*"))

    def candidates(self, names: list[str]) -> dict[str, dict[str, str]]:
        """The candidate (newest) stanza of each real package among names."""
        done = subprocess.run(["apt-cache", *self.options(), "show", "--no-all-versions", *names],
                              capture_output=True, text=True)
        stanzas = (parse_stanza(p) for p in done.stdout.split("\n\n") if p.strip())
        return {s["Package"]: s for s in stanzas if s.get("Package") in names}

    def suites(self, names: list[str]) -> dict[tuple[str, str], str]:
        """(package, version) -> the suites that carry it (comma-separated), for every version of names."""
        found: dict[tuple[str, str], set[str]] = {}
        for line in run("apt-cache", *self.options(), "madison", *names).splitlines():
            parts = [p.strip() for p in line.split("|")]
            if len(parts) == 3:
                found.setdefault((parts[0], parts[1]), set()).add(parts[2].split()[1].split("/")[0])
        return {key: ",".join(sorted(suites)) for key, suites in found.items()}

    def resolve(self, spec: Spec) -> list[Locked]:
        stanzas = closure(spec, self.candidates)
        suites = self.suites([s["Package"] for s in stanzas])
        return [Locked(self.arch, s["Package"], s["Version"], s["SHA256"], suites[(s["Package"], s["Version"])])
                for s in stanzas]

    def download(self, entry: Locked) -> Path:
        """The locked .deb, from the cache or through apt (which checks the index's hash)."""
        cache = WORK / "debs"
        cache.mkdir(parents=True, exist_ok=True)
        for deb in cache.glob(f"{entry.package}_*.deb"):
            if sha256(deb) == entry.sha256:
                return deb
        before = set(cache.iterdir())
        try:
            run("apt-get", *self.options(), "-q", "download", f"{entry.package}={entry.version}", cwd=cache)
        except ImageError as e:
            raise ImageError(f"{entry.arch} {entry.package} {entry.version} cannot be downloaded; "
                             f"is the lock stale? run `make image-libs-check`\n{e}") from None
        for deb in set(cache.iterdir()) - before:
            if sha256(deb) == entry.sha256:
                return deb
        raise ImageError(f"{entry.arch} {entry.package} {entry.version}: downloaded, but not with the locked SHA-256")


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def unpack(deb: Path, rootfs: Path) -> str:
    """Extracts a .deb into rootfs and records it in status.d; returns its package name."""
    run("dpkg-deb", "-x", deb, rootfs)
    with tempfile.TemporaryDirectory() as control:
        run("dpkg-deb", "-e", deb, control)
        fields = (Path(control) / "control").read_text()
        name = parse_stanza(fields)["Package"]
        status = rootfs / "var/lib/dpkg/status.d"
        status.mkdir(parents=True, exist_ok=True)
        (status / name).write_text(status_entry(fields))
        if (Path(control) / "md5sums").exists():
            shutil.copyfile(Path(control) / "md5sums", status / f"{name}.md5sums")
    return name


# Documentation nobody reads in a container; each package's copyright file stays.
PRUNED = ("usr/share/man", "usr/share/info", "usr/share/lintian", "usr/share/locale")


def finish_rootfs(rootfs: Path) -> None:
    """What package maintainer scripts would have made (users, the CA bundle, /tmp), minus the docs."""
    for tree in PRUNED:
        shutil.rmtree(rootfs / tree, ignore_errors=True)
    for doc in (rootfs / "usr/share/doc").rglob("*"):
        if doc.name != "copyright" and (doc.is_file() or doc.is_symlink()):
            doc.unlink()
    etc = rootfs / "etc"
    (etc / "passwd").write_text(
        "root:x:0:0:root:/root:/sbin/nologin\n"
        f"nonroot:x:{NONROOT}:{NONROOT}:nonroot:/home/nonroot:/sbin/nologin\n")
    (etc / "group").write_text(f"root:x:0:\nnonroot:x:{NONROOT}:\n")
    certs = sorted((rootfs / "usr/share/ca-certificates").rglob("*.crt"))
    if not certs:
        raise ImageError("no CA certificates in the image: is ca-certificates in packages.txt?")
    bundle = etc / "ssl/certs/ca-certificates.crt"
    bundle.parent.mkdir(parents=True, exist_ok=True)
    bundle.write_text("".join(c.read_text().rstrip("\n") + "\n" for c in certs))
    (rootfs / "tmp").mkdir(exist_ok=True)
    (rootfs / "tmp").chmod(0o1777)
    home = rootfs / "home/nonroot"
    home.mkdir(parents=True, exist_ok=True)
    os.chown(home, NONROOT, NONROOT)


def missing_libraries(rootfs: Path) -> list[str]:
    """Every NEEDED entry of every ELF file under rootfs no file in it provides."""
    provided: set[str] = set()
    needs: list[tuple[Path, list[str]]] = []
    for path in elf_files(rootfs):
        soname, needed = elf_dependencies(run("readelf", "-d", path))
        provided.add(soname or path.name)
        needs.append((path, needed))
    names = {p.name for p in rootfs.rglob("*") if p.is_file() or p.is_symlink()}
    return [f"{path.relative_to(rootfs)} needs {lib}"
            for path, needed in needs for lib in needed
            if lib not in provided and lib not in names]


def undeclared(rootfs: Path, entries: list[Locked]) -> list[str]:
    """What a scanner reading status.d would miss or misreport.

    Every package of the lock needs an entry with its version, and every ELF
    file (libraries, the loader) must be listed in some package's md5sums,
    which is how scanners tie a file to a package.
    """
    status = rootfs / "var/lib/dpkg/status.d"
    problems = []
    for e in entries:
        entry = status / e.package
        version = parse_stanza(entry.read_text()).get("Version") if entry.exists() else None
        if version != e.version:
            problems.append(f"{e.package}: status.d says {version}, the lock {e.version}")
    listed = {line.split(maxsplit=1)[1].strip() for sums in status.glob("*.md5sums")
              for line in sums.read_text().splitlines() if line.strip()}
    for path in elf_files(rootfs):
        if str(path.relative_to(rootfs)) not in listed:
            problems.append(f"{path.relative_to(rootfs)}: in no package's md5sums")
    return problems


def elf_files(tree: Path) -> list[Path]:
    """The regular ELF files under tree (not symlinks), sorted."""
    found = []
    for path in sorted(tree.rglob("*")):
        if path.is_file() and not path.is_symlink():
            with path.open("rb") as f:
                if f.read(4) == b"\x7fELF":
                    found.append(path)
    return found


def verified_rootfs(arch: str, entries: list[Locked]) -> Path:
    """The rootfs of one architecture, after checking it is complete and declared."""
    rootfs = WORK / f"rootfs-{arch}"
    rootfs_for(arch, entries, rootfs)
    problems = [f"missing library: {m}" for m in missing_libraries(rootfs)]
    problems += undeclared(rootfs, [e for e in entries if e.arch == arch])
    if problems:
        raise ImageError(f"{arch}: the image is not right:\n  " + "\n  ".join(problems))
    return rootfs


def rootfs_for(arch: str, entries: list[Locked], rootfs: Path) -> None:
    """The image's filesystem from the locked packages of one architecture."""
    apt = Apt(arch)
    if not apt.has_index():
        apt.update()
    mine = [e for e in entries if e.arch == arch]
    if not mine:
        raise ImageError(f"packages.lock has nothing for {arch}: run `make image-lock`")
    if rootfs.exists():
        shutil.rmtree(rootfs)
    rootfs.mkdir(parents=True)
    for entry in mine:
        try:
            deb = apt.download(entry)
        except ImageError:
            apt.update()
            deb = apt.download(entry)
        unpack(deb, rootfs)
    finish_rootfs(rootfs)


def clamp_mtimes(tree: Path, epoch: int) -> None:
    """Same inputs, same layer bytes: every timestamp set to SOURCE_DATE_EPOCH."""
    for path in [*tree.rglob("*"), tree]:
        os.utime(path, (epoch, epoch), follow_symlinks=False)


def oci_image(arch: str, rootfs: Path, binary: Path, epoch: int) -> str:
    """Tags ARCH in target/worker-image/oci: a packages layer, then /worker; returns the digest."""
    layout = WORK / "oci"
    if not (layout / "index.json").exists():
        run("umoci", "init", "--layout", layout)
    image = f"{layout}:{arch}"
    created = ["--history.created", iso(epoch), "--history.author", "image-labeler"]
    run("umoci", "new", "--image", image)
    clamp_mtimes(rootfs, epoch)
    run("umoci", "insert", *created, "--history.created_by", "Debian packages (worker/image/packages.lock)",
        "--image", image, rootfs, "/")
    staged = WORK / f"binary-{arch}"
    shutil.rmtree(staged, ignore_errors=True)
    staged.mkdir(parents=True)
    shutil.copyfile(binary, staged / "worker")
    (staged / "worker").chmod(0o555)
    clamp_mtimes(staged, epoch)
    run("umoci", "insert", *created, "--history.created_by", "the worker binary", "--image", image,
        staged / "worker", "/worker")
    # The local backend's model (`make model`, SHA-256 pinned), where the
    # worker's --model default looks: its own layer, shared by both arches.
    model_dir = WORK / "model"
    shutil.rmtree(model_dir, ignore_errors=True)
    model_dir.mkdir(parents=True)
    shutil.copyfile(MODEL, model_dir / MODEL.name)
    (model_dir / MODEL.name).chmod(0o444)
    clamp_mtimes(model_dir, epoch)
    run("umoci", "insert", *created, "--history.created_by", "the local model (make model)",
        "--image", image, model_dir, "/opt/image-labeler")
    run("umoci", "config", "--image", image, "--no-history", "--created", iso(epoch),
        "--architecture", arch, "--os", "linux", "--config.user", f"{NONROOT}:{NONROOT}",
        "--config.entrypoint", "/worker", "--config.workingdir", "/home/nonroot",
        "--config.env", "PATH=/usr/local/bin:/usr/bin:/bin",
        "--config.env", "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt",
        "--config.label", "org.opencontainers.image.title=image-labeler worker",
        "--config.label", "org.opencontainers.image.base.name=debian:bookworm (packages, no base image)")
    run("umoci", "gc", "--layout", layout)
    return manifest_digest(layout, arch)


def iso(epoch: int) -> str:
    return datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def manifest_digest(layout: Path, tag: str) -> str:
    index = json.loads((layout / "index.json").read_text())
    for m in index["manifests"]:
        if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag:
            return m["digest"]
    raise ImageError(f"{layout} has no tag {tag}")


def layer_sizes(layout: Path, digest: str) -> list[int]:
    manifest = json.loads((layout / "blobs" / digest.replace(":", "/")).read_text())
    return [layer["size"] for layer in manifest["layers"]]


def source_date_epoch() -> int:
    if os.environ.get("SOURCE_DATE_EPOCH"):
        return int(os.environ["SOURCE_DATE_EPOCH"])
    return int(run("git", "-C", ROOT, "log", "-1", "--format=%ct").strip())


# ---------------------------------------------------------------- commands


def resolve_all(refresh: bool = True) -> list[Locked]:
    spec = Spec.parse(SPEC.read_text())
    entries = []
    for arch in ARCHES:
        apt = Apt(arch)
        if refresh or not apt.has_index():
            apt.update()
        entries += apt.resolve(spec)
    return entries


def command_lock(_args) -> None:
    LOCK.write_text(render_lock(resolve_all()))
    print(f"worker image: wrote {LOCK.relative_to(ROOT)}")


def command_check(args) -> None:
    lock = Path(args.lock)
    problems = staleness(parse_lock(lock.read_text()), resolve_all(refresh=not args.cached_index))
    if problems:
        raise ImageError(f"{lock} is behind Debian's signed indices:\n  " + "\n  ".join(problems)
                         + "\nrun `make image-lock`, then rebuild and redeploy the image (`make image`, `make deploy`)")
    print(f"worker image: {lock.relative_to(ROOT) if lock.is_relative_to(ROOT) else lock} matches the signed indices")
    for arch in ARCHES:
        rootfs = verified_rootfs(arch, parse_lock(lock.read_text()))
        packages = len([p for p in (rootfs / "var/lib/dpkg/status.d").iterdir() if p.suffix != ".md5sums"])
        print(f"worker image: {arch}: {packages} packages, each declared in status.d; every NEEDED library present; "
              f"{tree_size(rootfs) / 2**20:.1f} MiB")


def command_build(args) -> None:
    rootfs = verified_rootfs(args.arch, parse_lock(LOCK.read_text()))
    digest = oci_image(args.arch, rootfs, Path(args.binary), source_date_epoch())
    layers = ", ".join(f"{size / 2**20:.1f}" for size in layer_sizes(WORK / "oci", digest))
    print(f"worker image: {WORK.relative_to(ROOT)}/oci:{args.arch} {digest}; compressed layers {layers} MiB")


def tree_size(tree: Path) -> int:
    return sum(p.lstat().st_size for p in tree.rglob("*") if p.is_file() and not p.is_symlink())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(required=True)
    commands.add_parser("lock").set_defaults(run=command_lock)
    check = commands.add_parser("check")
    check.add_argument("--lock", default=str(LOCK), help="the lock to check (default: %(default)s)")
    check.add_argument("--cached-index", action="store_true",
                       help="compare with the indices fetched last (if any) instead of fetching them again")
    check.set_defaults(run=command_check)
    build = commands.add_parser("build")
    build.add_argument("arch", choices=sorted(ARCHES))
    build.add_argument("binary", help="the worker binary built for ARCH")
    build.set_defaults(run=command_build)
    args = parser.parse_args()
    try:
        args.run(args)
    except ImageError as e:
        print(f"worker image: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
