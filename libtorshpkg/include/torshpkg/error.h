// The one error type of torshpkg.
//
// Every failure in the library is reported by throwing torshpkg::Error. It carries a kind, which
// callers map to exit codes (the CLI) or errno values (the filesystem), and a one-line message
// that names the file and the reason.
#pragma once

#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

#pragma GCC visibility push(default)  // the public API: what libtorshpkg.so exports

namespace torshpkg {

enum class ErrorKind {
  kCorrupt,          // the package is malformed or a hash does not match
  kBadSignature,     // a signature is missing, unknown or does not verify
  kWrongKey,         // a password or key does not open the package
  kNotFound,         // a named file, resource or entry does not exist
  kIo,               // the operating system refused a read or write
  kInvalidArgument,  // the caller asked for something that cannot be done
  kUnsupported,      // valid input that this version does not implement
  kInterrupted,      // the caller cancelled the operation
};

// A display name ("bad signature").
std::string_view to_string(ErrorKind kind);

// The stable token of a kind, the one name an error's kind has wherever it crosses a process
// boundary (torshpkg mount's report from its filesystem process, torshpkgd's socket replies):
//   corrupt  bad_signature  wrong_key  not_found  io  invalid_argument  unsupported  interrupted
// Tokens are never renamed; a new kind gets a new token. from_token is nullopt for any other.
std::string_view to_token(ErrorKind kind);
std::optional<ErrorKind> from_token(std::string_view token);

class Error : public std::runtime_error {
 public:
  Error(ErrorKind kind, const std::string& message) : std::runtime_error(message), kind_(kind) {}

  ErrorKind kind() const { return kind_; }

 private:
  ErrorKind kind_;
};

// Shorthands that read well at the throw site: throw corrupt(path, "bad EOCD").
Error corrupt(std::string_view file, std::string_view reason);
Error io_error(std::string_view file, std::string_view what, int errno_value);
Error invalid_argument(std::string_view reason);
Error not_found(std::string_view file, std::string_view what);
Error unsupported(std::string_view file, std::string_view reason);

}  // namespace torshpkg

#pragma GCC visibility pop
