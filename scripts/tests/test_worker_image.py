"""Tests of scripts/worker_image.py: the pure resolution and lock logic on real
Packages entries, and the stale-lock check against Debian's signed indices."""

import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import worker_image as wi  # noqa: E402

HERE = Path(__file__).resolve().parent

# Real bookworm arm64 Packages entries (trimmed to the fields the tool reads).
INDEX = {
    "libheif1": "Package: libheif1\nVersion: 1.15.1-1+deb12u2\nDepends: libaom3 (>= 3.2.0), libc6 (>= 2.34), "
                "libdav1d6 (>= 0.1.0), libde265-0 (>= 1.0.7), libgcc-s1 (>= 3.0), libstdc++6 (>= 11), "
                "libx265-199 (>= 3.5), zlib1g (>= 1:1.1.4)\nSHA256: 6d05a95a\n",
    "libx265-199": "Package: libx265-199\nVersion: 3.5-2+b1\nDepends: libc6 (>= 2.34), libnuma1 (>= 2.0.11), "
                   "libstdc++6 (>= 4.1.1)\nSHA256: 3142b9c9\n",
    "ca-certificates": "Package: ca-certificates\nVersion: 20250419~deb12u2\nDepends: openssl (>= 1.1.1), "
                       "debconf (>= 0.5) | debconf-2.0\nSHA256: b9f76b52\n",
    "base-files": "Package: base-files\nVersion: 12.4+deb12u15\nPre-Depends: awk\nSHA256: b1272fbd\n",
    "libc6": "Package: libc6\nVersion: 2.36-9+deb12u14\nDepends: libgcc-s1\nSHA256: 01f43307\n",
    "libgcc-s1": "Package: libgcc-s1\nVersion: 12.2.0-14+deb12u1\nDepends: gcc-12-base (= 12.2.0-14+deb12u1), "
                 "libc6 (>= 2.35)\nSHA256: 576926b2\n",
}
LEAVES = ("libaom3", "libdav1d6", "libde265-0", "libstdc++6", "zlib1g", "libnuma1", "gcc-12-base", "openssl",
          "debconf", "mawk")


def lookup(names):
    found = {}
    for name in names:
        if name in INDEX:
            found[name] = wi.parse_stanza(INDEX[name])
        elif name in LEAVES:
            found[name] = {"Package": name, "Version": "1", "SHA256": "0"}
    return found


class Resolution(unittest.TestCase):
    def test_the_first_alternative_of_a_dependency_is_taken_without_its_version(self):
        self.assertEqual(wi.dependency_names("openssl (>= 1.1.1), debconf (>= 0.5) | debconf-2.0"),
                         ["openssl", "debconf"])
        self.assertEqual(wi.dependency_names("libc6:any (>= 2.34),libgcc-s1"), ["libc6", "libgcc-s1"])
        self.assertEqual(wi.dependency_names(""), [])

    def test_the_closure_follows_depends_and_pre_depends_and_leaves_out_the_excluded(self):
        spec = wi.Spec(("libheif1", "ca-certificates", "base-files"),
                       {"openssl": "why", "debconf": "why", "awk": "why"})
        names = [s["Package"] for s in wi.closure(spec, lookup)]
        self.assertEqual(names, sorted(names))
        for needed in ("libheif1", "libx265-199", "libnuma1", "libc6", "libgcc-s1", "gcc-12-base", "zlib1g"):
            self.assertIn(needed, names)
        for left_out in ("openssl", "debconf", "awk"):
            self.assertNotIn(left_out, names)

    def test_a_virtual_dependency_that_is_not_excluded_is_refused_by_name(self):
        spec = wi.Spec(("base-files",), {})
        with self.assertRaisesRegex(wi.ImageError, r"^awk: no such package"):
            wi.closure(spec, lookup)

    def test_an_exclusion_needs_a_reason(self):
        with self.assertRaisesRegex(wi.ImageError, "packages.txt:2: exclude needs a package and a reason"):
            wi.Spec.parse("include libc6\nexclude debconf\n")

    def test_the_project_spec_parses_and_every_exclusion_has_a_reason(self):
        spec = wi.Spec.parse(wi.SPEC.read_text())
        self.assertIn("libheif1", spec.roots)
        self.assertTrue(all(len(why.split()) >= 3 for why in spec.excluded.values()))


class Lock(unittest.TestCase):
    def test_the_committed_lock_round_trips_and_covers_both_architectures(self):
        entries = wi.parse_lock(wi.LOCK.read_text())
        self.assertEqual(wi.render_lock(entries), wi.LOCK.read_text())
        self.assertEqual({e.arch for e in entries}, set(wi.ARCHES))
        for arch in wi.ARCHES:
            self.assertIn((arch, "libheif1"), {(e.arch, e.package) for e in entries})

    def test_a_newer_security_build_is_named_with_its_suite(self):
        locked = [wi.Locked("arm64", "libheif1", "1.15.1-1+deb12u1", "aa", "bookworm")]
        current = [wi.Locked("arm64", "libheif1", "1.15.1-1+deb12u2", "bb", "bookworm-security")]
        self.assertEqual(wi.staleness(locked, current),
                         ["arm64 libheif1: locked 1.15.1-1+deb12u1, the signed index has 1.15.1-1+deb12u2 "
                          "(bookworm-security)"])

    def test_added_removed_and_rebuilt_packages_are_each_reported(self):
        locked = [wi.Locked("amd64", "old", "1", "aa", "bookworm"), wi.Locked("amd64", "same", "1", "aa", "bookworm")]
        current = [wi.Locked("amd64", "new", "2", "cc", "bookworm"), wi.Locked("amd64", "same", "1", "bb", "bookworm")]
        problems = wi.staleness(locked, current)
        self.assertEqual(len(problems), 3, problems)
        self.assertIn("amd64 new: needed now (2, bookworm) but not in the lock", problems)
        self.assertIn("amd64 old: in the lock (1) but no longer needed", problems)
        self.assertIn("amd64 same 1: the signed index has another SHA-256 than the lock", problems)

    def test_an_up_to_date_lock_has_no_problems(self):
        entries = [wi.Locked("arm64", "libc6", "2.36-9+deb12u14", "aa", "bookworm")]
        self.assertEqual(wi.staleness(entries, list(entries)), [])


class ImageFiles(unittest.TestCase):
    def test_a_status_entry_is_the_control_file_marked_installed(self):
        control = "Package: zlib1g\nSource: zlib\nVersion: 1:1.2.13.dfsg-1+deb12u1\nArchitecture: arm64\n"
        entry = wi.status_entry(control)
        self.assertEqual(entry.splitlines()[:3], ["Package: zlib1g", "Status: install ok installed", "Source: zlib"])
        self.assertEqual(wi.parse_stanza(entry)["Version"], "1:1.2.13.dfsg-1+deb12u1")

    def test_soname_and_needed_come_from_readelf(self):
        dynamic = (" 0x0000000000000001 (NEEDED)             Shared library: [libde265.so.0]\n"
                   " 0x0000000000000001 (NEEDED)             Shared library: [libc.so.6]\n"
                   " 0x000000000000000e (SONAME)             Library soname: [libheif.so.1]\n")
        self.assertEqual(wi.elf_dependencies(dynamic), ("libheif.so.1", ["libde265.so.0", "libc.so.6"]))


class Declared(unittest.TestCase):
    def test_an_elf_file_no_package_lists_and_a_version_that_differs_are_reported(self):
        with tempfile.TemporaryDirectory() as tmp:
            rootfs = Path(tmp)
            status = rootfs / "var/lib/dpkg/status.d"
            status.mkdir(parents=True)
            (status / "libheif1").write_text("Package: libheif1\nStatus: install ok installed\nVersion: 1.15.1-1+deb12u2\n")
            (status / "libheif1.md5sums").write_text("0123  usr/lib/x/libheif.so.1.15.1\n")
            (rootfs / "usr/lib/x").mkdir(parents=True)
            (rootfs / "usr/lib/x/libheif.so.1.15.1").write_bytes(b"\x7fELF listed")
            (rootfs / "usr/lib/x/libstray.so.1").write_bytes(b"\x7fELF not listed")
            (rootfs / "usr/lib/x/notes.txt").write_text("not an ELF file")
            locked = [wi.Locked("arm64", "libheif1", "1.15.1-1+deb12u2", "aa", "bookworm-security"),
                      wi.Locked("arm64", "zlib1g", "1:1.2.13.dfsg-1+deb12u1", "bb", "bookworm-security")]
            self.assertEqual(wi.undeclared(rootfs, locked), [
                "zlib1g: status.d says None, the lock 1:1.2.13.dfsg-1+deb12u1",
                "usr/lib/x/libstray.so.1: in no package's md5sums",
            ])


class SignedIndex(unittest.TestCase):
    """Against deb.debian.org: the indices `make image-libs-check` fetched."""

    def test_the_hand_written_pins_of_the_last_release_are_reported_stale(self):
        done = subprocess.run([sys.executable, str(HERE.parent / "worker_image.py"), "check", "--cached-index",
                               "--lock", str(HERE / "fixtures/stale-pins.lock")], capture_output=True, text=True)
        self.assertEqual(done.returncode, 1, done.stdout + done.stderr)
        self.assertIn("is behind Debian's signed indices", done.stderr)
        self.assertRegex(done.stderr, r"arm64 libheif1: locked 1\.15\.1-1\+deb12u1, the signed index has \S+")
        self.assertRegex(done.stderr, r"amd64 libde265-0: locked 1\.0\.11-1\+deb12u3, the signed index has \S+")
        self.assertIn("arm64 libc6: needed now", done.stderr)
        self.assertIn("run `make image-lock`", done.stderr)


if __name__ == "__main__":
    unittest.main()
