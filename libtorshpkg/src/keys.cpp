#include "torshpkg/keys.h"

#include <dirent.h>
#include <fcntl.h>
#include <gnutls/abstract.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <fstream>
#include <memory>
#include <sstream>
#include <type_traits>
#include <utility>

#include "torshpkg/error.h"
#include "torshpkg/file_io.h"
#include "torshpkg/sha256.h"

namespace torshpkg {
namespace {

constexpr size_t kMaxKeyFile = 64 * 1024;

struct Datum {
  gnutls_datum_t d{nullptr, 0};
  ~Datum() { gnutls_free(d.data); }
  std::string str() const { return std::string(reinterpret_cast<const char*>(d.data), d.size); }
};

// GnuTLS key handles, owned.
struct DeinitPrivkey {
  void operator()(gnutls_privkey_t k) const { gnutls_privkey_deinit(k); }
};
struct DeinitPubkey {
  void operator()(gnutls_pubkey_t k) const { gnutls_pubkey_deinit(k); }
};
struct DeinitX509Privkey {
  void operator()(gnutls_x509_privkey_t k) const { gnutls_x509_privkey_deinit(k); }
};
using Privkey = std::unique_ptr<std::remove_pointer_t<gnutls_privkey_t>, DeinitPrivkey>;
using Pubkey = std::unique_ptr<std::remove_pointer_t<gnutls_pubkey_t>, DeinitPubkey>;
using X509Privkey =
    std::unique_ptr<std::remove_pointer_t<gnutls_x509_privkey_t>, DeinitX509Privkey>;

Privkey new_privkey() {
  gnutls_privkey_t k = nullptr;
  if (gnutls_privkey_init(&k) != 0) throw std::bad_alloc();
  return Privkey(k);
}

Pubkey new_pubkey() {
  gnutls_pubkey_t k = nullptr;
  if (gnutls_pubkey_init(&k) != 0) throw std::bad_alloc();
  return Pubkey(k);
}

gnutls_datum_t view(std::span<const uint8_t> bytes) {
  return {const_cast<unsigned char*>(bytes.data()), static_cast<unsigned>(bytes.size())};
}

gnutls_datum_t view(const std::string& s) {
  return {reinterpret_cast<unsigned char*>(const_cast<char*>(s.data())),
          static_cast<unsigned>(s.size())};
}

std::string read_small_file(const std::string& path) {
  UniqueFd fd = open_read(path);
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) throw io_error(path, "cannot stat", errno);
  if (!S_ISREG(st.st_mode) || static_cast<uint64_t>(st.st_size) > kMaxKeyFile) {
    throw invalid_argument(path + ": not a key file (not a regular file of at most 64 KiB)");
  }
  std::string text(static_cast<size_t>(st.st_size), '\0');
  pread_exact(fd.get(), std::span(reinterpret_cast<uint8_t*>(text.data()), text.size()), 0, path);
  return text;
}

Error key_error(const std::string& source, const std::string& what) {
  return invalid_argument(source + ": " + what);
}

// Builds the PublicKey view of a GnuTLS public key handle.
void fill_public(Pubkey owned, const std::string& source, std::shared_ptr<void>& handle,
                 std::string& key_id, std::string& pem) {
  gnutls_pubkey_t pub = owned.get();
  handle = std::shared_ptr<void>(std::move(owned));
  if (gnutls_pubkey_get_pk_algorithm(pub, nullptr) != GNUTLS_PK_EDDSA_ED25519) {
    throw key_error(source, "not an Ed25519 key (torshpkg signs with Ed25519 only)");
  }
  Datum der, text;
  if (gnutls_pubkey_export2(pub, GNUTLS_X509_FMT_DER, &der.d) != 0 ||
      gnutls_pubkey_export2(pub, GNUTLS_X509_FMT_PEM, &text.d) != 0) {
    throw key_error(source, "cannot export the public key");
  }
  key_id = to_hex(sha256(std::span(der.d.data, der.d.size)));
  pem = text.str();
}

}  // namespace

PublicKey PublicKey::from_pem(const std::string& pem, const std::string& source) {
  Pubkey pub = new_pubkey();
  PublicKey key;
  const gnutls_datum_t data = view(pem);
  if (pem.find("-----BEGIN PUBLIC KEY-----") == std::string::npos ||
      gnutls_pubkey_import(pub.get(), &data, GNUTLS_X509_FMT_PEM) != 0) {
    throw key_error(source,
                    "not a PEM public key (expected \"BEGIN PUBLIC KEY\", SubjectPublicKeyInfo)");
  }
  fill_public(std::move(pub), source, key.handle_, key.key_id_, key.pem_);
  return key;
}

PublicKey PublicKey::load(const std::string& path) {
  return from_pem(read_small_file(path), path);
}

bool PublicKey::verify(std::span<const uint8_t> message, std::span<const uint8_t> signature) const {
  const gnutls_datum_t m = view(message);
  const gnutls_datum_t s = view(signature);
  return gnutls_pubkey_verify_data2(static_cast<gnutls_pubkey_t>(handle_.get()),
                                    GNUTLS_SIGN_EDDSA_ED25519, 0, &m, &s) >= 0;
}

PrivateKey::PrivateKey(void* handle, const std::string& source) {
  Privkey priv(static_cast<gnutls_privkey_t>(handle));
  if (gnutls_privkey_get_pk_algorithm(priv.get(), nullptr) != GNUTLS_PK_EDDSA_ED25519) {
    throw key_error(source, "not an Ed25519 key (torshpkg signs with Ed25519 only)");
  }
  Pubkey pub = new_pubkey();
  if (gnutls_pubkey_import_privkey(pub.get(), priv.get(), 0, 0) != 0) {
    throw key_error(source, "cannot derive the public key");
  }
  fill_public(std::move(pub), source, public_key_.handle_, public_key_.key_id_, public_key_.pem_);
  handle_ = priv.release();
}

PrivateKey::PrivateKey(PrivateKey&& other) noexcept
    : handle_(std::exchange(other.handle_, nullptr)), public_key_(std::move(other.public_key_)) {}

PrivateKey& PrivateKey::operator=(PrivateKey&& other) noexcept {
  std::swap(handle_, other.handle_);
  std::swap(public_key_, other.public_key_);
  return *this;
}

PrivateKey::~PrivateKey() {
  if (handle_ != nullptr) gnutls_privkey_deinit(static_cast<gnutls_privkey_t>(handle_));
}

PrivateKey PrivateKey::from_pem(const std::string& pem, const std::string& source) {
  if (pem.find("-----BEGIN PRIVATE KEY-----") == std::string::npos) {
    throw key_error(source,
                    "not an unencrypted PKCS#8 PEM private key (expected \"BEGIN PRIVATE KEY\")");
  }
  Privkey priv = new_privkey();
  const gnutls_datum_t data = view(pem);
  if (gnutls_privkey_import_x509_raw(priv.get(), &data, GNUTLS_X509_FMT_PEM, nullptr, 0) != 0) {
    throw key_error(source, "cannot parse the private key");
  }
  return PrivateKey(priv.release(), source);
}

PrivateKey PrivateKey::load(const std::string& path) {
  return from_pem(read_small_file(path), path);
}

PrivateKey PrivateKey::from_raw(std::span<const uint8_t, 32> seed,
                                std::span<const uint8_t, 32> pub) {
  Privkey priv = new_privkey();
  const gnutls_datum_t x = view(pub);
  const gnutls_datum_t k = view(seed);
  if (gnutls_privkey_import_ecc_raw(priv.get(), GNUTLS_ECC_CURVE_ED25519, &x, nullptr, &k) != 0) {
    throw invalid_argument("bad raw Ed25519 key");
  }
  return PrivateKey(priv.release(), "raw key");
}

PrivateKey PrivateKey::generate() {
  Privkey priv = new_privkey();
  if (gnutls_privkey_generate2(priv.get(), GNUTLS_PK_EDDSA_ED25519, 256, 0, nullptr, 0) != 0) {
    throw Error(ErrorKind::kIo, "cannot generate an Ed25519 key");
  }
  return PrivateKey(priv.release(), "new key");
}

std::vector<uint8_t> PrivateKey::sign(std::span<const uint8_t> message) const {
  const gnutls_datum_t m = view(message);
  Datum sig;
  if (gnutls_privkey_sign_data2(static_cast<gnutls_privkey_t>(handle_), GNUTLS_SIGN_EDDSA_ED25519,
                                0, &m, &sig.d) != 0) {
    throw Error(ErrorKind::kIo, "Ed25519 signing failed");
  }
  return std::vector<uint8_t>(sig.d.data, sig.d.data + sig.d.size);
}

std::string PrivateKey::pkcs8_pem() const {
  gnutls_x509_privkey_t raw = nullptr;
  if (gnutls_privkey_export_x509(static_cast<gnutls_privkey_t>(handle_), &raw) != 0) {
    throw Error(ErrorKind::kIo, "cannot export the private key");
  }
  const X509Privkey x509(raw);
  Datum out;
  const int rc = gnutls_x509_privkey_export2_pkcs8(x509.get(), GNUTLS_X509_FMT_PEM, nullptr,
                                                   GNUTLS_PKCS_PLAIN, &out.d);
  if (rc != 0) throw Error(ErrorKind::kIo, "cannot export the private key as PKCS#8");
  return out.str();
}

std::string generate_key_files(const std::string& prefix, bool force) {
  const PrivateKey key = PrivateKey::generate();
  const auto write = [&](const std::string& path, const std::string& text, mode_t mode) {
    const std::string temp = path + ".tmp-" + std::to_string(::getpid());
    UniqueFd fd(::open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode));
    if (!fd) throw io_error(temp, "cannot create", errno);
    try {
      ::fchmod(fd.get(), mode);
      write_all(fd.get(), std::span(reinterpret_cast<const uint8_t*>(text.data()), text.size()),
                path);
      if (::fsync(fd.get()) != 0) throw io_error(path, "fsync failed", errno);
      if (!force && ::access(path.c_str(), F_OK) == 0) {
        throw invalid_argument(path + ": already exists (use --force to replace it)");
      }
      if (::rename(temp.c_str(), path.c_str()) != 0)
        throw io_error(path, "cannot rename into place", errno);
    } catch (...) {
      ::unlink(temp.c_str());
      throw;
    }
  };
  for (const std::string& path : {prefix + ".key", prefix + ".pub"}) {
    if (!force && ::access(path.c_str(), F_OK) == 0) {
      throw invalid_argument(path + ": already exists (use --force to replace it)");
    }
  }
  write(prefix + ".key", key.pkcs8_pem(), 0600);
  write(prefix + ".pub", key.public_key().pem(), 0644);
  return key.public_key().key_id();
}

TrustedKeys TrustedKeys::load_dir(const std::string& dir) {
  const auto close_dir = [](DIR* p) { ::closedir(p); };
  std::unique_ptr<DIR, decltype(close_dir)> d(::opendir(dir.c_str()), close_dir);
  if (!d) {
    if (errno == ENOENT) throw not_found(dir, "no such trusted-keys folder");
    throw io_error(dir, "cannot read trusted-keys folder", errno);
  }
  std::vector<std::string> names;
  while (const dirent* e = ::readdir(d.get())) {
    const std::string name = e->d_name;
    if (name.size() > 4 && name.ends_with(".pub") && name[0] != '.') names.push_back(name);
  }
  std::sort(names.begin(), names.end());
  TrustedKeys keys;
  for (const std::string& name : names) {
    PublicKey key = PublicKey::load(dir + "/" + name);
    keys.keys_.emplace(key.key_id(), std::move(key));
  }
  return keys;
}

const PublicKey* TrustedKeys::find(const std::string& key_id) const {
  const auto it = keys_.find(key_id);
  return it == keys_.end() ? nullptr : &it->second;
}

}  // namespace torshpkg
