"""torshpkg: verified model packages, read from Python.

    import torshpkg

    # Every tensor of a package's safetensors resource, verified chunk by chunk as it streams
    # into one block of memory, as torch tensors that share that block (no copy):
    state = torshpkg.load_file("model.torshpkg", trusted_keys="/etc/torshpkg/trusted-keys")
    model.load_state_dict(state)

    # The same from a file in a mount, or a plain file:
    state = torshpkg.load_file("/models/llama/resources/model.safetensors")

    # Lazily, with the methods of safetensors' safe_open (only the touched chunks are read):
    with torshpkg.safe_open("model.torshpkg", framework="pt") as f:
        embedding = f.get_tensor("embed.weight")
        shard = f.get_slice("lm_head.weight")[0:1024]

Packages open under the same policy as `torshpkg mount`: a signature by a trusted key is
required unless allow_unsigned=True, and only then is an encrypted package unlocked
(password_file= or key_file=). Errors are torshpkg.Error, with a subclass per kind
(CorruptError, SignatureError, WrongKeyError, ...) and the CLI's one-line messages.

Neither torch nor numpy is needed to import the module; each is imported when a tensor is
first made for it.
"""
import io
import json
import os

from . import _native
from ._native import (CancelledError, CorruptError, Error, InvalidArgumentError, IoError,
                      NotFoundError, SignatureError, UnsupportedError, WrongKeyError)

__version__ = _native.__version__
__all__ = ["Package", "PackageFile", "load_file", "safe_open", "cuda_built", "Error",
           "CorruptError", "SignatureError", "WrongKeyError", "NotFoundError", "IoError",
           "InvalidArgumentError", "UnsupportedError", "CancelledError"]

DEFAULT_TRUSTED_KEYS = "/etc/torshpkg/trusted-keys"


def cuda_built():
    """Whether this build has the tensor loader's CUDA backend."""
    return _native.cuda_built()


def _optional_path(value):
    return None if value is None else os.fspath(value)


class Package:
    """A package, opened and admitted: its signature checked against the trusted keys (unless
    allow_unsigned), then unlocked when it is encrypted. Reads no resource data when opened.
    Usable from many threads at once."""

    def __init__(self, path, *, trusted_keys=None, allow_unsigned=False, password_file=None,
                 key_file=None, require_key=None):
        self._native = _native.Package(
            os.fspath(path), _optional_path(trusted_keys), bool(allow_unsigned),
            _optional_path(password_file), _optional_path(key_file), require_key)
        self._manifest = None
        self._files = {f[0]: f for f in self._native.files()}

    name = property(lambda self: self._native.name, doc="The package's name.")
    version = property(lambda self: self._native.version, doc="The package's version.")
    digest = property(lambda self: self._native.digest,
                      doc="Hex SHA-256 of manifest.json: what the lineage journal records.")
    signer = property(lambda self: self._native.signer,
                      doc="Key id of the trusted signature (None when unsigned).")
    encrypted = property(lambda self: self._native.encrypted)
    path = property(lambda self: self._native.file_name, doc="The package file.")

    @property
    def manifest(self):
        """manifest.json, parsed (a dict)."""
        if self._manifest is None:
            self._manifest = json.loads(self._native.manifest_bytes)
        return self._manifest

    def files(self):
        """Every file the package shows (as `torshpkg ls` and a mount show them), sorted."""
        return list(self._files)

    def _resolve(self, path):
        path = os.fspath(path)
        if path in self._files:
            return path
        if "resources/" + path in self._files:
            return "resources/" + path
        raise NotFoundError(f"{self.path}: {path}: no such file in the package")

    def size(self, path):
        """The size in bytes of a file of the package."""
        return self._files[self._resolve(path)][1]

    def open(self, path):
        """A binary file object over a file of the package ("resources/x" or "x"): read,
        readinto, seek and tell; each read decodes and verifies only the chunks it touches."""
        path = self._resolve(path)
        return PackageFile(self, path, self._files[path][1])

    def verify(self, full=False):
        """Checks every chunk index against the manifest; with full=True also every chunk, the
        SHA-256 and the ZIP CRC-32 of every resource. Raises CorruptError naming the first
        failure."""
        self._native.verify(bool(full))

    def _safetensors_resource(self, resource):
        if resource is not None:
            return self._resolve(resource)
        found = [p for p in self._files if p.endswith(".safetensors")]
        if len(found) != 1:
            raise InvalidArgumentError(
                f"{self.path}: give resource=: the package has "
                f"{len(found) or 'no'} safetensors files" +
                (": " + ", ".join(found) if found else ""))
        return found[0]

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def __repr__(self):
        return f"<torshpkg.Package {self.name}@{self.version} {self.path!r}>"


class PackageFile(io.RawIOBase):
    """A read-only binary file of a package. Keeps its package open."""

    def __init__(self, package, path, size):
        super().__init__()
        self._package = package
        self.name = path
        self.size = size
        self._pos = 0

    def readable(self):
        return True

    def seekable(self):
        return True

    def tell(self):
        self._checkClosed()
        return self._pos

    def seek(self, offset, whence=io.SEEK_SET):
        self._checkClosed()
        if whence == io.SEEK_SET:
            pos = offset
        elif whence == io.SEEK_CUR:
            pos = self._pos + offset
        elif whence == io.SEEK_END:
            pos = self.size + offset
        else:
            raise ValueError(f"invalid whence ({whence})")
        if pos < 0:
            raise ValueError(f"negative seek position {pos}")
        self._pos = pos
        return pos

    def readinto(self, buffer):
        self._checkClosed()
        n = self._package._native.read_into(self.name, self._pos, buffer)
        self._pos += n
        return n

    def readall(self):
        self._checkClosed()
        out = bytearray(max(0, self.size - self._pos))
        n = self.readinto(out) if out else 0
        del out[n:]
        return bytes(out)


def _source(source, resource, options):
    """The native Source for a path (a plain file, a file in a mount, a package) or a Package."""
    if isinstance(source, Package):
        if options:
            raise TypeError("package options go to torshpkg.Package(), not with a Package")
        return source._native.source(source._safetensors_resource(resource))
    path = os.fspath(source)
    if resource is not None or path.endswith(".torshpkg"):
        package = Package(path, **options)
        return package._native.source(package._safetensors_resource(resource))
    if options:
        raise TypeError(f"{', '.join(options)}: options for a package; {path} is read as a "
                        "plain file (give resource= to read it as a package)")
    return _native.Source.open_file(path)


# safetensors dtype -> (torch attribute, numpy name). None: that framework has no such type.
_DTYPES = {
    "BOOL": ("bool", "bool_"), "U8": ("uint8", "uint8"), "I8": ("int8", "int8"),
    "I16": ("int16", "int16"), "U16": ("uint16", "uint16"), "F16": ("float16", "float16"),
    "BF16": ("bfloat16", None), "I32": ("int32", "int32"), "U32": ("uint32", "uint32"),
    "F32": ("float32", "float32"), "C64": ("complex64", "complex64"),
    "F64": ("float64", "float64"), "I64": ("int64", "int64"), "U64": ("uint64", "uint64"),
    "F8_E5M2": ("float8_e5m2", None), "F8_E4M3": ("float8_e4m3fn", None),
    "F8_E8M0": ("float8_e8m0fnu", None), "F8_E4M3FNUZ": ("float8_e4m3fnuz", None),
    "F8_E5M2FNUZ": ("float8_e5m2fnuz", None),
    "F4": (None, None), "F6_E2M3": (None, None), "F6_E3M2": (None, None),
}
# Exported as uint8 (DLPack 0.6 has no code for them), viewed as their own type here.
_VIEWED = {"BOOL", "F8_E5M2", "F8_E4M3", "F8_E8M0", "F8_E4M3FNUZ", "F8_E5M2FNUZ"}


class _Framework:
    def __init__(self, framework, device):
        if framework in ("pt", "torch", "pytorch"):
            import torch
            self.module, self.kind = torch, "pt"
        elif framework in ("np", "numpy"):
            import numpy
            self.module, self.kind = numpy, "np"
            if device != "cpu":
                raise InvalidArgumentError(f"device {device!r}: numpy arrays live on the cpu")
        else:
            raise InvalidArgumentError(f"framework {framework!r}: give 'pt' or 'np'")
        self.device = device

    def dtype(self, name, dtype):
        torch_name, numpy_name = _DTYPES[dtype]
        attr = torch_name if self.kind == "pt" else numpy_name
        found = getattr(self.module, attr, None) if attr else None
        if found is None:
            what = "torch " + self.module.__version__ if self.kind == "pt" else \
                "numpy " + self.module.__version__
            raise UnsupportedError(f"{name}: dtype {dtype}: {what} has no such type" +
                                   ("" if self.kind == "pt" else
                                    " (framework='pt' has it where torch does)"))
        return found

    def check(self, tensors):
        """Fails before anything is converted when a tensor's dtype has no type here."""
        for name, dtype, *_ in tensors:
            self.dtype(name, dtype)

    def make(self, exported, name, dtype):
        target = self.dtype(name, dtype)
        t = self.module.from_dlpack(exported)
        if dtype in _VIEWED:
            t = t.view(target)
        return t


def load_file(source, *, resource=None, device="cpu", threads=None, framework="pt",
              **package_options):
    """Every tensor of a safetensors file, as a dict name -> torch.Tensor (framework="pt") or
    numpy array (framework="np"), all sharing one block of memory that is freed when the last
    of them is gone.

    source: a plain file or a file in a mount (a path), a package file (a path ending in
    .torshpkg, or any path with resource=), or a torshpkg.Package. resource: the package's
    safetensors file ("resources/model.safetensors" or "model.safetensors"; needed when it has
    more than one). device: "cpu" or "cuda:N" (a build with CUDA support). threads: reader
    threads (default 4). package_options: those of torshpkg.Package."""
    fw = _Framework(framework, "cpu" if device == "cpu" else device)
    src = _source(source, resource, package_options)
    # The header first: a dtype the framework lacks fails before any byte is loaded.
    fw.check(src.header()[1])
    loaded = src.load(device, threads or 0)
    return {t[0]: fw.make(loaded.exported(i), t[0], t[1])
            for i, t in enumerate(loaded.tensors())}


class _Slice:
    """A tensor not read yet: get_shape(), get_dtype() and indexing, which reads only the rows
    of the first dimension the index selects."""

    def __init__(self, owner, name, dtype, shape):
        self._owner = owner
        self._name, self._dtype, self._shape = name, dtype, list(shape)

    def get_shape(self):
        return list(self._shape)

    def get_dtype(self):
        return self._dtype

    def __getitem__(self, key):
        if not isinstance(key, tuple):
            key = (key,)
        if not self._shape or not key or key[0] is Ellipsis:
            return self._owner._read(self._name)[key]
        rows = self._shape[0]
        first = key[0]
        if isinstance(first, slice):
            start, stop, step = first.indices(rows)
            if step > 0:
                stop = max(start, stop)
                t = self._owner._read(self._name, (start, stop))
                return t[(slice(None, None, step),) + key[1:]]
            return self._owner._read(self._name)[key]
        if isinstance(first, int) or hasattr(first, "__index__"):
            i = first.__index__()
            if i < 0:
                i += rows
            if not 0 <= i < rows:
                raise IndexError(f"{self._name}: index {first} out of range for {rows} rows")
            t = self._owner._read(self._name, (i, i + 1))
            return t[(0,) + key[1:]]
        return self._owner._read(self._name)[key]

    def __len__(self):
        return self._shape[0] if self._shape else 0


class safe_open:
    """safetensors' safe_open over a plain file, a file in a mount or a package: keys(),
    metadata(), get_tensor(name), get_slice(name)[...]. Lazy: reading a tensor reads and
    verifies only the chunks that hold it."""

    def __init__(self, source, framework="pt", device="cpu", *, resource=None, **package_options):
        self._fw = _Framework(framework, device)
        self._device = device
        if self._fw.kind == "pt" and str(device).startswith("cuda") and \
                not self._fw.module.cuda.is_available():
            raise UnsupportedError(f"device {device!r}: torch {self._fw.module.__version__} "
                                   "sees no CUDA device")
        self._source = _source(source, resource, package_options)
        metadata, tensors, _ = self._source.header()
        self._metadata = dict(metadata) if metadata else None
        self._tensors = {t[0]: (i, t[1], t[2]) for i, t in enumerate(tensors)}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def keys(self):
        return sorted(self._tensors)

    def offset_keys(self):
        """The names in the order their bytes lie in the file."""
        return sorted(self._tensors, key=lambda n: self._tensors[n][0])

    def metadata(self):
        return self._metadata

    def _entry(self, name):
        try:
            return self._tensors[name]
        except KeyError:
            raise NotFoundError(f"{self._source.name}: no tensor named {name!r}") from None

    def _read(self, name, rows=None):
        """Tensor `name`, or rows (first, end) of its first dimension."""
        index, dtype, shape = self._entry(name)
        self._fw.dtype(name, dtype)
        first, end = rows if rows is not None else (0, shape[0] if shape else 0)
        t = self._fw.make(self._source.read_tensor(index, first, end), name, dtype)
        if self._fw.kind == "pt" and self._device != "cpu":
            t = t.to(self._device)
        return t

    def get_tensor(self, name):
        return self._read(name)

    def get_slice(self, name):
        _, dtype, shape = self._entry(name)
        return _Slice(self, name, dtype, shape)
