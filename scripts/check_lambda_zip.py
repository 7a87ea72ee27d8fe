"""Checks the dispatcher's Lambda package: a zip holding an arm64 ELF `bootstrap`."""
import sys
import zipfile

EM_AARCH64 = 183

path = sys.argv[1]
with zipfile.ZipFile(path) as z:
    names = z.namelist()
    if names != ["bootstrap"]:
        sys.exit(f"{path}: expected exactly one entry 'bootstrap', found {names}")
    head = z.read("bootstrap")[:20]
    info = z.getinfo("bootstrap")
if head[:4] != b"\x7fELF":
    sys.exit(f"{path}: bootstrap is not an ELF executable")
machine = int.from_bytes(head[18:20], "little")
if machine != EM_AARCH64:
    sys.exit(f"{path}: bootstrap is for ELF machine {machine}, not aarch64 ({EM_AARCH64})")
if not (info.external_attr >> 16) & 0o111:
    sys.exit(f"{path}: bootstrap is not executable")
size = __import__("os").path.getsize(path)
print(f"{path}: arm64 bootstrap, {size / 1e6:.1f} MB zipped")
