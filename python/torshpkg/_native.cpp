// torshpkg._native: the C++ half of the Python module (python/torshpkg/__init__.py is the
// other). It holds packages, byte sources and loaded tensor blocks, and hands tensors out through
// DLPack without copying them: each exported tensor keeps the block it lives in alive, so the
// block is freed when the last tensor that uses it is gone. The GIL is released whenever bytes
// move (reads, loads, verification), so loads from several Python threads run at once.
//
// Written with pybind11 (Debian's pybind11-dev): classes with shared ownership, keyword
// arguments, the GIL guards and exception translation come with it, where the CPython API would
// take several hundred lines of reference counting for the same. DLPack's C structs come from
// Debian's libdlpack-dev.
#include <dlpack/dlpack.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>
#include <sys/mman.h>

#include <cerrno>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "torshpkg/admission.h"
#include "torshpkg/byte_source.h"
#include "torshpkg/error.h"
#include "torshpkg/package.h"
#include "torshpkg/safetensors.h"
#include "torshpkg/tensor_loader.h"

namespace py = pybind11;

namespace torshpkg::python {
namespace {

// The Python exception class of each error kind, made at import (see make_exceptions).
std::map<ErrorKind, PyObject*>& exception_classes() {
  static std::map<ErrorKind, PyObject*> classes;
  return classes;
}

// A writable (or readable) C-contiguous buffer of a Python object, held for one call.
class BufferView {
 public:
  BufferView(const py::object& object, bool writable) {
    if (PyObject_GetBuffer(object.ptr(), &view_,
                           PyBUF_C_CONTIGUOUS | (writable ? PyBUF_WRITABLE : PyBUF_SIMPLE)) != 0) {
      throw py::error_already_set();
    }
  }
  ~BufferView() { PyBuffer_Release(&view_); }
  BufferView(const BufferView&) = delete;
  BufferView& operator=(const BufferView&) = delete;
  std::span<uint8_t> bytes() {
    return {static_cast<uint8_t*>(view_.buf), static_cast<size_t>(view_.len)};
  }

 private:
  Py_buffer view_{};
};

// Host memory of its own mapping: returned to the system when freed (malloc would keep large
// blocks in its arenas, and a serving process would not shrink after dropping a tensor).
class HostBlock {
 public:
  explicit HostBlock(size_t size) : size_(size) {
    if (size == 0) return;
    void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
      throw io_error("load", "cannot allocate " + std::to_string(size) + " bytes", errno);
    }
    data_ = static_cast<uint8_t*>(p);
  }
  ~HostBlock() {
    if (data_ != nullptr) ::munmap(data_, size_);
  }
  HostBlock(const HostBlock&) = delete;
  HostBlock& operator=(const HostBlock&) = delete;
  uint8_t* data() const { return data_; }

 private:
  uint8_t* data_ = nullptr;
  size_t size_;
};

// DLPack's code and width for a safetensors dtype. Types DLPack 0.6 cannot name (bool, the
// 8-bit floats) go out as uint8 of the same width, for the Python side to view as theirs;
// sub-byte types cannot be exported element-wise at all.
DLDataType dlpack_type(const TensorInfo& t) {
  const unsigned bits = dtype_bits(t.dtype);
  switch (t.dtype) {
    case Dtype::kI8:
    case Dtype::kI16:
    case Dtype::kI32:
    case Dtype::kI64:
      return {kDLInt, static_cast<uint8_t>(bits), 1};
    case Dtype::kF16:
    case Dtype::kF32:
    case Dtype::kF64:
      return {kDLFloat, static_cast<uint8_t>(bits), 1};
    case Dtype::kBF16:
      return {kDLBfloat, 16, 1};
    case Dtype::kC64:
      return {kDLComplex, 64, 1};
    case Dtype::kF4:
    case Dtype::kF6_E2M3:
    case Dtype::kF6_E3M2:
      throw unsupported(t.name, "dtype " + std::string(dtype_name(t.dtype)) +
                                    " packs several values per byte: it has no element type to "
                                    "export");
    default:  // unsigned integers, bool, 8-bit floats
      return {kDLUInt, static_cast<uint8_t>(bits), 1};
  }
}

// One tensor, ready to be taken by a DLPack consumer (torch.from_dlpack, numpy.from_dlpack).
// Holds the block its bytes live in; __dlpack__ hands a share of it to the consumer.
class Exported {
 public:
  Exported(std::shared_ptr<const void> owner, void* data, DLDevice device, DLDataType type,
           std::vector<int64_t> shape)
      : owner_(std::move(owner)),
        data_(data),
        device_(device),
        type_(type),
        shape_(std::move(shape)) {}

  py::capsule dlpack(const py::object& /*stream*/) const {
    // The loader has synchronized its copies before the tensors exist, so every stream may use
    // them at once: there is nothing to wait for.
    auto* managed = new Managed{owner_, shape_, std::vector<int64_t>(shape_.size()), {}};
    int64_t stride = 1;
    for (size_t i = shape_.size(); i-- > 0;) {
      managed->strides[i] = stride;
      stride *= shape_[i];
    }
    DLTensor& t = managed->tensor.dl_tensor;
    t.data = data_;
    t.device = device_;
    t.ndim = static_cast<int32_t>(shape_.size());
    t.dtype = type_;
    t.shape = managed->shape.data();
    t.strides = managed->strides.data();
    t.byte_offset = 0;
    managed->tensor.manager_ctx = managed;
    managed->tensor.deleter = [](DLManagedTensor* self) {
      delete static_cast<Managed*>(self->manager_ctx);
    };
    // A capsule nobody consumed frees its tensor; a consumer renames it "used_dltensor" and
    // calls the deleter itself when its tensor is freed.
    PyObject* capsule = PyCapsule_New(&managed->tensor, "dltensor", [](PyObject* self) {
      if (PyCapsule_IsValid(self, "dltensor")) {
        auto* m = static_cast<DLManagedTensor*>(PyCapsule_GetPointer(self, "dltensor"));
        m->deleter(m);
      }
    });
    if (capsule == nullptr) {
      delete managed;
      throw py::error_already_set();
    }
    return py::reinterpret_steal<py::capsule>(capsule);
  }

  py::tuple device() const { return py::make_tuple(int(device_.device_type), device_.device_id); }

 private:
  struct Managed {
    std::shared_ptr<const void> owner;
    std::vector<int64_t> shape;
    std::vector<int64_t> strides;
    DLManagedTensor tensor;
  };
  std::shared_ptr<const void> owner_;
  void* data_;
  DLDevice device_;
  DLDataType type_;
  std::vector<int64_t> shape_;
};

py::tuple tensor_tuple(const TensorInfo& t) {
  py::tuple shape(t.shape.size());
  for (size_t i = 0; i < t.shape.size(); ++i) shape[i] = t.shape[i];
  return py::make_tuple(t.name, std::string(dtype_name(t.dtype)), shape, t.begin, t.end);
}

py::list tensor_list(const SafetensorsHeader& h) {
  py::list out;
  for (const TensorInfo& t : h.tensors) out.append(tensor_tuple(t));
  return out;
}

// The tensors of one safetensors file, loaded into one block by the tensor loader.
class Loaded {
 public:
  explicit Loaded(std::shared_ptr<LoadedTensors> tensors) : tensors_(std::move(tensors)) {}

  py::list tensors() const { return tensor_list(tensors_->header()); }
  std::map<std::string, std::string> metadata() const { return tensors_->header().metadata; }
  std::string device() const { return to_string(tensors_->target()); }
  py::dict stats() const {
    const LoadStats& s = tensors_->stats();
    py::dict d;
    d["bytes"] = s.bytes;
    d["seconds"] = s.seconds;
    d["threads"] = s.threads;
    d["piece_bytes"] = s.piece_bytes;
    d["read_seconds"] = s.read_seconds;
    d["copy_seconds"] = s.copy_seconds;
    d["wait_seconds"] = s.wait_seconds;
    return d;
  }

  Exported exported(size_t index) const {
    const auto& all = tensors_->header().tensors;
    if (index >= all.size()) throw invalid_argument("tensor number out of range");
    const TensorInfo& t = all[index];
    const LoadTarget target = tensors_->target();
    const DLDevice device =
        target.device == LoadDevice::kCuda ? DLDevice{kDLCUDA, target.index} : DLDevice{kDLCPU, 0};
    auto* base = static_cast<uint8_t*>(tensors_->data());
    return Exported(tensors_, base == nullptr ? nullptr : base + t.begin, device, dlpack_type(t),
                    {t.shape.begin(), t.shape.end()});
  }

 private:
  std::shared_ptr<LoadedTensors> tensors_;
};

// Bytes to read tensors from: a file, or a file of a package (whose chunks are verified as they
// are read).
class Source {
 public:
  explicit Source(std::shared_ptr<const ByteSource> source) : source_(std::move(source)) {}

  static std::shared_ptr<Source> open_file(const std::string& path) {
    return std::make_shared<Source>(open_file_source(path));
  }

  const std::string& name() const { return source_->name(); }
  uint64_t size() const { return source_->size(); }

  // metadata, tensors (name, dtype, shape, begin, end) and the data's file offset.
  py::tuple header() {
    {
      py::gil_scoped_release unlocked;
      std::call_once(header_once_, [&] {
        header_ = std::make_unique<SafetensorsHeader>(read_safetensors_header(*source_));
      });
    }
    return py::make_tuple(header_->metadata, tensor_list(*header_), header_->data_start);
  }

  size_t read_into(uint64_t offset, const py::object& buffer) const {
    BufferView view(buffer, true);
    const std::span<uint8_t> out = view.bytes();
    py::gil_scoped_release unlocked;
    if (offset >= source_->size()) return 0;
    const size_t n = static_cast<size_t>(std::min<uint64_t>(out.size(), source_->size() - offset));
    source_->read_at(offset, out.first(n));
    return n;
  }

  // Rows [first, end) of tensor `index` along its first dimension (all of a scalar), read into
  // memory of their own: only the chunks that hold them are read and verified.
  Exported read_tensor(size_t index, uint64_t first, uint64_t end) {
    header();
    if (index >= header_->tensors.size()) throw invalid_argument("tensor number out of range");
    const TensorInfo& t = header_->tensors[index];
    std::vector<int64_t> shape(t.shape.begin(), t.shape.end());
    uint64_t begin = t.begin, length = t.size();
    if (!shape.empty()) {
      const uint64_t rows = t.shape[0];
      if (first > end || end > rows) throw invalid_argument(t.name + ": rows out of range");
      const uint64_t row_bytes = rows == 0 ? 0 : t.size() / rows;
      begin += first * row_bytes;
      length = (end - first) * row_bytes;
      shape[0] = static_cast<int64_t>(end - first);
    }
    const DLDataType type = dlpack_type(t);
    std::shared_ptr<HostBlock> block;
    {
      py::gil_scoped_release unlocked;
      block = std::make_shared<HostBlock>(static_cast<size_t>(length));
      if (length > 0) {
        source_->read_at(header_->data_start + begin, std::span(block->data(), length));
      }
    }
    uint8_t* data = block->data();
    return Exported(std::move(block), data, {kDLCPU, 0}, type, std::move(shape));
  }

  Loaded load(const std::string& device, unsigned threads) const {
    LoadOptions options;
    options.target = parse_load_target(device);
    if (threads > 0) options.threads = threads;
    py::gil_scoped_release unlocked;
    return Loaded(load_tensors(*source_, options));
  }

 private:
  std::shared_ptr<const ByteSource> source_;
  std::once_flag header_once_;
  std::unique_ptr<SafetensorsHeader> header_;
};

const char* kind_name(FileNode::Kind kind) {
  switch (kind) {
    case FileNode::Kind::kManifest:
      return "manifest";
    case FileNode::Kind::kDependency:
      return "dependency";
    case FileNode::Kind::kResource:
      break;
  }
  return "resource";
}

// A package opened under the same policy as `torshpkg mount`.
class PyPackage {
 public:
  PyPackage(const std::string& path, const std::optional<std::string>& trusted_keys,
            bool allow_unsigned, const std::optional<std::string>& password_file,
            const std::optional<std::string>& key_file,
            const std::optional<std::string>& require_key) {
    AdmissionPolicy policy;
    if (trusted_keys) policy.trusted_keys_dir = *trusted_keys;
    policy.allow_unsigned = allow_unsigned;
    policy.require_key = require_key.value_or("");
    policy.password_file = password_file.value_or("");
    policy.key_file = key_file.value_or("");
    policy.spelling = {.use = "open it",
                       .allow_unsigned = "allow_unsigned=True",
                       .trusted_keys = "trusted_keys=DIR",
                       .secret = "password_file= or key_file="};
    py::gil_scoped_release unlocked;  // key derivation may take a second
    AdmittedPackage admitted = admit_package(path, policy);
    package_ = std::move(admitted.package);
    signer_ = std::move(admitted.signer);
  }

  const Manifest& manifest() const { return package_->manifest(); }
  py::bytes manifest_bytes() const { return py::bytes(package_->manifest_bytes()); }
  const std::string& digest() const { return package_->manifest_digest(); }
  std::optional<std::string> signer() const {
    return signer_.empty() ? std::nullopt : std::optional(signer_);
  }
  bool encrypted() const { return package_->encrypted(); }
  const std::string& file_name() const { return package_->file_name(); }

  py::list files() const {
    py::list out;
    for (const FileNode& f : package_->files()) {
      out.append(py::make_tuple(f.path, f.size, kind_name(f.kind)));
    }
    return out;
  }

  const FileNode& file(const std::string& path) const {
    const FileNode* f = package_->find(path);
    if (f == nullptr)
      throw not_found(package_->file_name(), path + ": no such file in the package");
    return *f;
  }

  size_t read_into(const std::string& path, uint64_t offset, const py::object& buffer) const {
    const FileNode& f = file(path);
    BufferView view(buffer, true);
    const std::span<uint8_t> out = view.bytes();
    py::gil_scoped_release unlocked;
    return package_->read(f, offset, out);
  }

  void verify(bool full) const {
    py::gil_scoped_release unlocked;
    package_->verify(full);
  }

  std::shared_ptr<Source> source(const std::string& path) const {
    return std::make_shared<Source>(package_file_source(package_, file(path)));
  }

 private:
  std::shared_ptr<Package> package_;
  std::string signer_;
};

// torshpkg.Error and one subclass per kind, each also a subclass of the builtin exception that
// says the same (NotFoundError is a FileNotFoundError, IoError an OSError, InvalidArgumentError
// a ValueError), so code that catches those keeps working.
void make_exceptions(py::module_& m) {
  PyObject* base = PyErr_NewExceptionWithDoc(
      "torshpkg.Error", "A torshpkg failure; its subclasses say which kind.", nullptr, nullptr);
  if (base == nullptr) throw py::error_already_set();
  m.add_object("Error", py::reinterpret_borrow<py::object>(base));
  struct Kind {
    ErrorKind kind;
    const char* name;
    PyObject* builtin;
    const char* doc;
  };
  const Kind kinds[] = {
      {ErrorKind::kCorrupt, "CorruptError", nullptr,
       "The package is malformed or a hash does not match: nothing of the damaged part is "
       "returned."},
      {ErrorKind::kBadSignature, "SignatureError", nullptr,
       "A signature is missing, unknown or does not verify."},
      {ErrorKind::kWrongKey, "WrongKeyError", nullptr,
       "A password or key does not open the package, or none was given."},
      {ErrorKind::kNotFound, "NotFoundError", PyExc_FileNotFoundError,
       "A named file, resource or tensor does not exist."},
      {ErrorKind::kIo, "IoError", PyExc_OSError, "The operating system refused a read."},
      {ErrorKind::kInvalidArgument, "InvalidArgumentError", PyExc_ValueError,
       "The caller asked for something that cannot be done."},
      {ErrorKind::kUnsupported, "UnsupportedError", nullptr,
       "Valid input this version (or this build, or this framework) cannot handle."},
      {ErrorKind::kInterrupted, "CancelledError", nullptr, "The operation was cancelled."},
  };
  for (const Kind& k : kinds) {
    PyObject* bases =
        k.builtin == nullptr ? PyTuple_Pack(1, base) : PyTuple_Pack(2, base, k.builtin);
    if (bases == nullptr) throw py::error_already_set();
    const std::string qualified = std::string("torshpkg.") + k.name;
    PyObject* cls = PyErr_NewExceptionWithDoc(qualified.c_str(), k.doc, bases, nullptr);
    Py_DECREF(bases);
    if (cls == nullptr) throw py::error_already_set();
    m.add_object(k.name, py::reinterpret_borrow<py::object>(cls));
    exception_classes()[k.kind] = cls;  // the module holds the reference
  }
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const Error& e) {
      PyErr_SetString(exception_classes().at(e.kind()), e.what());
    }
  });
}

}  // namespace
}  // namespace torshpkg::python

PYBIND11_MODULE(_native, m) {
  using namespace torshpkg;
  using namespace torshpkg::python;
  m.doc() = "The native half of torshpkg: packages, sources and loaded tensors.";
  m.attr("__version__") = TORSHPKG_VERSION;
  make_exceptions(m);

  py::class_<Exported>(m, "Exported", "One tensor, to be taken by a DLPack consumer.")
      .def("__dlpack__", &Exported::dlpack, py::arg("stream") = py::none())
      .def("__dlpack_device__", &Exported::device);

  py::class_<Loaded>(m, "Loaded")
      .def("tensors", &Loaded::tensors)
      .def("metadata", &Loaded::metadata)
      .def_property_readonly("device", &Loaded::device)
      .def("stats", &Loaded::stats)
      .def("exported", &Loaded::exported);

  py::class_<Source, std::shared_ptr<Source>>(m, "Source")
      .def_static("open_file", &Source::open_file, py::call_guard<py::gil_scoped_release>())
      .def_property_readonly("name", &Source::name)
      .def_property_readonly("size", &Source::size)
      .def("header", &Source::header)
      .def("read_into", &Source::read_into)
      .def("read_tensor", &Source::read_tensor)
      .def("load", &Source::load, py::arg("device"), py::arg("threads"));

  py::class_<PyPackage>(m, "Package")
      .def(py::init<const std::string&, const std::optional<std::string>&, bool,
                    const std::optional<std::string>&, const std::optional<std::string>&,
                    const std::optional<std::string>&>(),
           py::arg("path"), py::arg("trusted_keys"), py::arg("allow_unsigned"),
           py::arg("password_file"), py::arg("key_file"), py::arg("require_key"))
      .def_property_readonly("name", [](const PyPackage& p) { return p.manifest().name; })
      .def_property_readonly("version", [](const PyPackage& p) { return p.manifest().version; })
      .def_property_readonly("file_name", &PyPackage::file_name)
      .def_property_readonly("manifest_bytes", &PyPackage::manifest_bytes)
      .def_property_readonly("digest", &PyPackage::digest)
      .def_property_readonly("signer", &PyPackage::signer)
      .def_property_readonly("encrypted", &PyPackage::encrypted)
      .def("files", &PyPackage::files)
      .def("read_into", &PyPackage::read_into)
      .def("verify", &PyPackage::verify)
      .def("source", &PyPackage::source);

  m.def("cuda_built", &cuda_built);
}
